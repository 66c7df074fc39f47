"""Regression gate: today's figures are compared with the committed baseline in __npu__/.

Record or refresh it with ``pytest examples --npu-update-baseline``; review the JSON diff in the pull
request. ``compare`` sets this test's tolerances: cycles must not move at all, energy may drift 1 %.
"""

from __future__ import annotations

import pytest


@pytest.mark.npu_budget(latency_ms=0.05, compare={"cycles": 0, "energy_mj": "1%", "sqnr_db": 0.5})
def test_int8_figures_do_not_regress(npu, npu_target, digits_int8, digits_test):
    npu.run(digits_int8, digits_test, reference="float")
