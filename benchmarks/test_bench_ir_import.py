"""ONNX import speed (``ir.from_onnx``) on the MLPerf-Tiny-shaped QDQ models of the compile benchmark.

Import runs once per compile cache miss, so it must stay small next to compile time.
Run: ``.venv/bin/pytest benchmarks/test_bench_ir_import.py -p no:xdist --benchmark-only``.
Aim: <= 150 ms per model (the largest, MobileNet-V1 0.25, has ~30 quantised layers).
"""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import pytest

pytest.importorskip("pytest_benchmark")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_bench_compile import MODELS, qdq  # noqa: E402

from pytest_npu.ir import from_onnx  # noqa: E402


@pytest.mark.parametrize("name", MODELS)
def test_import(benchmark, name):
    model = qdq(name)
    graph = benchmark(from_onnx, model)
    benchmark.extra_info["ir_nodes"] = len(graph.nodes)
    benchmark.extra_info["onnx_nodes"] = len(onnx.load_from_string(model).graph.node)
    assert all(graph.tensors[o].quant is not None for o in graph.outputs)
