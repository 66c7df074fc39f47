"""Compile time (cold and cached) and the schedule's modelled cycles against the roofline.

Models have MLPerf-Tiny shapes (built with onnx.helper, QDQ-quantised by onnxruntime): DS-CNN
(keyword spotting), ResNet-8 (image classification), MobileNet-V1 0.25 (visual wake words, at
48x48 to keep the emulated run short) and the FC autoencoder (anomaly detection). ``extra_info``
carries cycles, roofline cycles, network efficiency and the efficiency of the conv-heavy layers
(standard convolutions, where the MAC array should be the bound).

Run: ``.venv/bin/pytest benchmarks/test_bench_compile.py -p no:xdist --benchmark-only``.
Aims: cold compile <= 1 s, cached <= 20 ms, conv-heavy layers within 1.25x of their roofline.
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compiler"))
logging.getLogger().setLevel(logging.ERROR)

from models import Builder, quantize  # noqa: E402

import pytest_npu.compiler as compiler  # noqa: E402

TARGETS = ("u55-128", "u55-256", "u65-512", "edge-3core")


def _ds_cnn():
    b = Builder((1, 1, 49, 10), seed=1).conv(64, k=5, stride=2, pad=2)
    for _ in range(4):
        b.depthwise().conv(64, k=1, pad=0)
    return b.global_pool().flatten().fc(12)


def _resnet8():
    b = Builder((1, 3, 32, 32), seed=2).conv(16).residual()
    b.conv(32, stride=2).residual()
    b.conv(64, stride=2).residual()
    return b.global_pool().flatten().fc(10)


def _mobilenet():
    b = Builder((1, 3, 48, 48), seed=3).conv(8, stride=2)
    for cout, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2)):
        b.depthwise(stride=stride).conv(cout, k=1, pad=0)
    return b.global_pool().flatten().fc(2)


def _autoencoder():
    b = Builder((1, 640), seed=4)
    for width in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        b.fc(width, relu=True)
    return b.fc(640)


MODELS = {"ds_cnn": _ds_cnn, "resnet8": _resnet8, "mobilenet_v1_025": _mobilenet, "fc_autoencoder": _autoencoder}


@cache
def qdq(name: str):
    b = MODELS[name]()
    return quantize(b.model(), b.input_shape).SerializeToString()


@pytest.mark.parametrize("name", MODELS)
def test_compile_cold(benchmark, name):
    model = qdq(name)

    def cold():
        compiler.clear_cache()
        return compiler.compile(model, "u55-256")

    cm = benchmark.pedantic(cold, rounds=3, iterations=1)
    benchmark.extra_info.update(instructions=len(cm.program.instructions), layers=len(cm.steps),
                                aim_s=1.0)


@pytest.mark.parametrize("name", MODELS)
def test_compile_cached(benchmark, name):
    model = qdq(name)
    first = compiler.compile(model, "u55-256")
    cm = benchmark(compiler.compile, model, "u55-256")
    assert cm is first
    benchmark.extra_info.update(aim_ms=20.0)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", MODELS)
def test_cycles_vs_roofline(benchmark, name, target):
    cm = compiler.compile(qdq(name), target)
    ints = {n: np.zeros((1, *cm.graph.boundary(n).shape), cm.program.tensors[n].dtype)   # model layout
            for n in cm.program.inputs}
    started = time.perf_counter()
    ex = benchmark.pedantic(cm.run_quantized, args=(ints,), rounds=1, iterations=1)
    rows = cm.layers(ex)
    conv = [r for r in rows if r["op"] == "conv2d" and r["efficiency"] is not None and r["macs"] > 0]
    ratios = [r["cycles"] / r["roofline_cycles"] for r in conv if r["roofline_cycles"]]
    peak = cm.target.mac.macs_per_cycle * cm.options["cores"]
    mac_ratios = [r["compute_cycles"] / max(1.0, r["macs"] / peak) for r in conv]
    benchmark.extra_info.update(
        cycles=ex.summary.cycles, roofline_cycles=ex.summary.roofline_cycles,
        efficiency=round(ex.summary.efficiency, 3), macs=ex.summary.macs,
        latency_ms=round(ex.summary.latency_ms, 4), energy_mj=round(ex.summary.energy_mj, 5),
        conv_layers=len(conv),
        conv_cycles_over_roofline_median=round(statistics.median(ratios), 3) if ratios else None,
        conv_cycles_over_roofline_worst=round(max(ratios), 3) if ratios else None,
        conv_mac_cycles_over_mac_bound_median=round(statistics.median(mac_ratios), 3) if mac_ratios else None,
        run_s=round(time.perf_counter() - started, 3))
    assert ex.summary.cycles >= ex.summary.roofline_cycles
