"""The digits CNN ported to three NPU targets: speed, energy, memory and accuracy budgets.

Each test runs once per target (the npu_target marker), on the 360 held-out images, against the
float model in onnxruntime. The module-level budget applies to every test; a class or a test may
only tighten it (the tightest limit wins).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.npu_budget(sram_kib=64, model_kib=16, latency_ms=0.05)


@pytest.mark.npu_budget(top1_drop=0.01)
class TestAccuracy:
    @pytest.mark.npu_target("u55-128", "u55-256", "edge-3core")
    @pytest.mark.npu_budget(energy_mj=0.002, sqnr_db=30.0)
    def test_int8_port(self, npu, npu_target, digits_int8, digits_test):
        result = npu.run(digits_int8, digits_test, reference="float")
        # the NPU's answers are the port's answers: check them like any other output
        assert result.output.shape == (360, 10)

    @pytest.mark.npu_target("u65-512", "edge-3core")
    @pytest.mark.npu_budget(sqnr_db=40.0, top1_drop=0.005)
    def test_int16_activations_buy_accuracy(self, npu, npu_target, digits_int16, digits_test):
        """16-bit activations (a16w8) are worth their extra cycles only if they lift SQNR past 40 dB."""
        npu.run(digits_int16, digits_test, reference="float")


def test_more_cores_are_faster(npu, digits_int8, digits_test):
    """A plain assertion on figures the runner measured: edge-3core beats a single-core u55."""
    images, _ = digits_test
    one_core = npu.run(digits_int8, images[:8], target="u55-256")
    three_cores = npu.run(digits_int8, images[:8], target="edge-3core")
    assert three_cores.metrics["cycles"] < one_core.metrics["cycles"]
