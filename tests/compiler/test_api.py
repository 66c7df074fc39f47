"""compile() API: cache, options, errors, per-layer rows, CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import onnx
import pytest
from models import inputs_for, qdq_model

import pytest_npu
import pytest_npu.compiler as compiler
from pytest_npu import targets
from pytest_npu.cli import main
from pytest_npu.errors import CompileError, NpuError


def test_pytest_npu_compile_is_lazy_and_is_the_compiler():
    code = "import sys, pytest_npu; assert 'onnx' not in sys.modules; f = pytest_npu.compile; " \
           "assert 'onnx' in sys.modules; print(f.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pytest_npu.compiler.api"
    assert pytest_npu.compile is compiler.compile


def test_cache_returns_the_same_compile_and_keys_follow_inputs():
    q, _ = qdq_model("slice")
    a = compiler.compile(q, "u55-256")
    assert compiler.compile(q.SerializeToString(), "u55-256") is a          # same bytes, same key
    assert compiler.compile(q, targets.load("u55-256")) is a
    assert compiler.compile(q, "u55-256", cores=1).cache_key == a.cache_key  # u55 has one core anyway
    assert compiler.compile(q, "u55-256", double_buffer=False).cache_key != a.cache_key
    assert compiler.compile(q, "u55-128").cache_key != a.cache_key
    changed = dataclasses.replace(targets.load("u55-256"), dram_bytes_per_cycle=7.0)
    assert compiler.compile(q, changed).cache_key != a.cache_key
    assert len(a.cache_key) == 64 and int(a.cache_key, 16) >= 0


def test_compile_accepts_path_and_graph(tmp_path):
    from pytest_npu.ir import from_onnx
    q, shape = qdq_model("slice")
    path = tmp_path / "m.onnx"
    onnx.save(q, path)
    from_path = compiler.compile(path, "u65-512")
    from_graph = compiler.compile(from_onnx(q), "u65-512")
    x = inputs_for(shape, 2)
    ints = {"input": from_path.graph.input_quant["input"].quantize(x)}
    np.testing.assert_array_equal(from_path.run_quantized(ints).outputs["fc_7_out"],
                                  from_graph.run_quantized(ints).outputs["fc_7_out"])


@pytest.mark.parametrize("options, words", [
    ({"cores": 4}, ["cores=4", "1..3"]),
    ({"sram_limit_bytes": 10**9}, ["sram_limit_bytes", "dataclasses.replace"]),
    ({"fallback": "cpu"}, ["fallback", "'host' or 'error'"]),
    ({"tile_rows": 2}, ["unknown compile option", "tile_rows", "double_buffer"]),
])
def test_bad_options_name_the_option(options, words):
    q, _ = qdq_model("slice")
    with pytest.raises(CompileError) as info:
        compiler.compile(q, "edge-3core", **options)
    for word in words:
        assert word in str(info.value)


def test_bad_models_and_inputs_raise_npu_errors(tmp_path):
    with pytest.raises(CompileError, match="no such model file"):
        compiler.compile(tmp_path / "missing.onnx", "u55-256")
    with pytest.raises(CompileError, match="got a int"):
        compiler.compile(42, "u55-256")
    with pytest.raises(NpuError):
        compiler.compile(b"not an onnx model", "u55-256")
    q, _ = qdq_model("slice")
    cm = compiler.compile(q, "u55-256")
    with pytest.raises(CompileError, match=r"input 'input' has shape \(2, 5\)"):
        cm.run(np.zeros((2, 5), np.float32))
    with pytest.raises(CompileError, match="missing input"):
        cm.run({"other": np.zeros((1, 3, 12, 12), np.float32)})


def test_layers_are_computed_from_the_trace():
    q, shape = qdq_model("cnn")
    cm = compiler.compile(q, "u55-256")
    ex = cm.run(inputs_for(shape, 1))
    rows = cm.layers(ex)
    assert rows == ex.extra["layers"]
    npu = [r for r in rows if r["instructions"]]
    assert sum(r["macs"] for r in rows) == ex.summary.macs
    assert sum(r["dram_bytes"] for r in rows) == ex.summary.dram_read_bytes + ex.summary.dram_write_bytes
    assert abs(sum(r["energy_mj"] for r in rows) + ex.summary.energy_breakdown_mj["static"]
               - ex.summary.energy_mj) < 1e-12
    conv = next(r for r in rows if r["op"] == "conv2d")
    assert conv["in_shapes"] == [(16, 16, 3)] and conv["out_shapes"] == [(16, 16, 16)]
    assert conv["macs"] == 16 * 16 * 16 * 3 * 9
    assert 0 < conv["efficiency"] <= 1 and conv["sram_peak"] > 0
    assert all(r["where"] == "npu" for r in npu)
    assert [r["op"] for r in rows if r["cycles"] == 0] == ["reshape"]       # the free flatten
    assert cm.layers() == cm.layers()                                       # zero-input run, cached


def test_saved_program_runs_the_same(tmp_path):
    from pytest_npu.npu.emulator import Emulator
    from pytest_npu.npu.program import Program
    q, shape = qdq_model("cnn")
    cm = compiler.compile(q, "edge-3core")
    path = cm.program.save(tmp_path / "cnn.npuprog")
    x = inputs_for(shape, 2)
    ints = {"input": cm.graph.input_quant["input"].quantize(x)}          # the model's NCHW layout
    again = Emulator(cm.target).run(Program.load(path), {"input": ints["input"].transpose(0, 2, 3, 1)})
    np.testing.assert_array_equal(again.outputs[cm.program.outputs[0]],
                                  cm.run_quantized(ints).outputs[cm.program.outputs[0]])


def test_cli_inspect_and_asm(tmp_path, capsys, monkeypatch):
    q, _ = qdq_model("host_softmax")
    path = tmp_path / "softmax.onnx"
    onnx.save(q, path)
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["inspect", str(path), "--target", "u55-128", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "run on the host (and what would move each to the NPU):" in out and "softmax" in out
    assert "u55-128's SOFTMAX normalises the last" in out and "to move it: a softmax over the channel" in out
    for column in ("layer", "MACs", "cycles", "DRAM B", "SRAM peak B", "energy nJ", "roofline %"):
        assert column in out
    assert "roofline" in out and "efficiency" in out
    prog = tmp_path / "softmax.npuprog"
    assert main(["asm", str(path), "--target", "u55-128", "-o", str(prog)]) == 0
    out = capsys.readouterr().out
    assert "CONV2D" in out and "HOST" in out and prog.exists()
    assert main(["inspect", str(path), "--target", "no-such-target"]) == 2
    assert "no-such-target" in capsys.readouterr().err
