"""Emulator speed on a conv-heavy program vs onnxruntime running the equivalent QDQ model.

The program is the hand-built conv network of tests/npu/conv_program.py (32x32x16 input, 3x3 conv to 32 channels, 3x3 depthwise, max
pool, FC to 10: 5.1 M MACs per inference) on u55-256. The ratio emulator / onnxruntime (best of
several runs each, same inputs, outputs checked to agree within 1 LSB) goes to ``extra_info``.
Run: ``.venv/bin/pytest benchmarks/test_bench_emulator.py -p no:xdist --benchmark-only``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pytest_npu import targets
from pytest_npu.npu import Emulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "npu"))
from conv_program import build_conv_program, conv_qdq_model, make_conv_net  # noqa: E402

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def setup():
    target = targets.load("u55-256")
    net = make_conv_net(size=32, cin=16, cmid=32, classes=10)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1          # a fair match for single-threaded numpy
    session = ort.InferenceSession(conv_qdq_model(net).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return target, net, build_conv_program(target, net), session


def _best_of(fn, repeats: int = 7) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("batch", [1, 32])
def test_emulator_vs_onnxruntime(benchmark, setup, batch):
    target, net, program, session = setup
    emulator = Emulator(target)
    x = net.random_input(batch, seed=batch)
    nchw = {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    emulator.run(program, {"x": x})                       # plan + buffers, as in a test session
    result = benchmark(emulator.run, program, {"x": x})
    ort_out = session.run(None, nchw)[0]
    assert np.abs(result.outputs["logits"][:, 0].astype(int) - ort_out.astype(int)).max() <= 1
    ort_s = _best_of(lambda: session.run(None, nchw))
    emu_s = benchmark.stats.stats.min
    benchmark.extra_info.update({
        "batch": batch, "macs_per_inference": result.summary.macs, "emulator_ms": emu_s * 1e3,
        "onnxruntime_ms": ort_s * 1e3, "ratio_emulator_over_ort": emu_s / ort_s,
        "emulator_gmac_per_s": result.summary.macs * batch / emu_s / 1e9})
    print(f"\nbatch {batch}: emulator {emu_s * 1e3:.2f} ms, onnxruntime {ort_s * 1e3:.2f} ms, "
          f"ratio {emu_s / ort_s:.1f}x")


def test_plan_overhead(benchmark, setup):
    """Checking and timing a program (done once per program, then cached)."""
    target, _, program, _ = setup
    benchmark(lambda: Emulator(target).plan(program))


def test_per_instruction_overhead(benchmark):
    """Many tiny instructions: what the emulator costs per instruction beyond the kernels."""
    from pytest_npu.npu.isa import DmaIn, DmaOut, Elementwise, Requant
    from pytest_npu.npu.program import ProgramBuilder

    target = targets.load("u55-256")
    b = ProgramBuilder(target.name)
    x, y = b.input("x", (16,)), b.output("y", (16,))
    a, c = b.sram("a", (16,)), b.sram("c", (16,))
    last = b.emit(DmaIn(x, a))
    rq = Requant((1 << 30,), (30,), 0, -128, 127)
    for i in range(200):
        src, dst = (a, c) if i % 2 == 0 else (c, a)
        last = b.emit(Elementwise(src, src, dst, op="max", requant=rq, deps=(last,)))
    b.emit(DmaOut(a, y, deps=(last,)))
    program = b.build()
    emulator = Emulator(target)
    inputs = {"x": np.arange(16, dtype=np.int8)[None]}
    emulator.run(program, inputs)
    benchmark(emulator.run, program, inputs)
    per_instruction_us = benchmark.stats.stats.min / len(program.instructions) * 1e6
    benchmark.extra_info["us_per_instruction"] = per_instruction_us
    print(f"\n{per_instruction_us:.1f} us per instruction ({len(program.instructions)} instructions)")
