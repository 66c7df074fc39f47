"""Vela's estimate in the npu record: when it runs, that it is cached, and what it refuses."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from pytest_npu import targets
from pytest_npu.errors import PeerError
from pytest_npu.harness import session
from pytest_npu.harness.markers import METRICS, parse_budget_kwargs
from pytest_npu.harness.session import NpuRunner, RunnerOptions, _Model

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "vela" / "conv_pool_fc.tflite"
needs_vela = pytest.mark.skipif(importlib.util.find_spec("ethosu") is None,
                                reason="Vela is not installed (pip install 'pytest-npu[vela]')")


def _model(blob: bytes) -> _Model:
    return _Model(blob, hashlib.sha256(blob).hexdigest(), "model")


def _runner(vela: bool, **budget) -> NpuRunner:
    runner = NpuRunner(RunnerOptions(targets=["u55-256"], vela=vela))
    runner.context = session.TestContext(item=None, target=None, budget=parse_budget_kwargs(budget, "test"),
                                 enforce_per_run=False)
    return runner


def test_vela_metrics_are_budget_metrics():
    assert {"vela_cycles", "vela_latency_ms", "vela_sram_kib", "vela_dram_kib"} <= set(METRICS)
    assert parse_budget_kwargs({"vela_cycles": 1000}, "test").limits == {"vela_cycles": 1000}


def test_without_the_option_or_a_vela_budget_vela_does_not_run():
    assert _runner(False)._vela_estimate(_model(FIXTURE.read_bytes()), targets.load("u55-256")) is None


def test_a_vela_budget_on_an_onnx_model_is_refused_by_name():
    runner = _runner(False, vela_cycles=1000)
    with pytest.raises(PeerError, match="needs a .tflite model"):
        runner._vela_estimate(_model(b"\x08\x07onnx-ish"), targets.load("u55-256"))


@needs_vela
def test_a_vela_budget_runs_vela_once_per_model_and_target():
    runner = _runner(False, vela_cycles=1000)
    model, target = _model(FIXTURE.read_bytes()), targets.load("u55-256")
    first = runner._vela_estimate(model, target)
    assert first.cycles > 0 and first.metrics()["vela_cycles"] == first.cycles
    assert runner._vela_estimate(model, target) is first
    assert runner._vela_estimate(model, targets.load("u55-128")) is not first
