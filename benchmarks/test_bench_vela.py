"""pytest-npu's cycles, weight bytes and SRAM against Arm's Vela 5.2.0, per int8 .tflite model.

Each benchmark compiles one ``fixtures/tflite`` model for an Ethos-U target, runs it, runs Vela on
the same file (``benchmarks/vela_bench.py``: the per-layer tables come from there) and records the
comparison in ``extra_info``; ``benchmarks/summarize.py`` turns it into the README's table.
Aims: whole-network cycles within 15 % of Vela, no conv layer off by more than 1.5x, weight bytes
read off chip within 10 % of Vela's on the model with more than half its weights zero.
Skipped without the [vela] extra or without .tflite fixtures.

Run: ``.venv/bin/pytest benchmarks/test_bench_vela.py -p no:xdist --benchmark-only``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vela_bench  # noqa: E402

if importlib.util.find_spec("ethosu") is None:
    pytest.skip("Vela is not installed (pip install 'pytest-npu[vela]')", allow_module_level=True)
MODELS = vela_bench.default_models()
if not MODELS:
    pytest.skip("no int8 .tflite models under fixtures/tflite/", allow_module_level=True)

SUMMARY = ("cycles", "vela_cycles", "cycles_ratio", "worst_conv_ratio", "worst_conv_layer", "weight_bytes",
           "vela_weight_bytes", "weight_ratio", "zero_weight_fraction", "sram_bytes", "vela_sram_bytes",
           "sram_ratio", "vela_version")


@pytest.mark.parametrize("target", vela_bench.TARGETS)
@pytest.mark.parametrize("model", MODELS, ids=[m.stem for m in MODELS])
def test_vela_agreement(benchmark, model, target):
    row = benchmark.pedantic(vela_bench.compare, args=(model, target), rounds=1, iterations=1)
    benchmark.extra_info.update({"model": row["model"], "target": target, **{k: row[k] for k in SUMMARY}})
    assert row["macs"] > 0 and row["vela_cycles"] > 0
