"""The tolerance language (``pytest_npu.harness.tolerances``): grammar, defaults, stacking, verdicts.

The same rules drive ``--npu-compare-fail``, ``npu_budget(compare=...)`` and ``pytest-npu compare
--fail``; the pytester runs in test_baseline_plugin.py and the CLI runs in tests/history/test_history_cli.py use them
end to end.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import BudgetUsageError
from pytest_npu.harness import tolerances as tol
from pytest_npu.harness.markers import METRICS
from pytest_npu.harness.tolerances import EXACT, OFF, Tolerance, Tolerances, compare_metric, compare_metrics


@pytest.mark.parametrize(("text", "expected"), [
    ("latency_ms:2%", ("latency_ms", Tolerance(relative=0.02))),
    ("mse:1e-4", ("mse", Tolerance(absolute=1e-4))),
    ("cycles:0", ("cycles", EXACT)),
    ("cycles:exact", ("cycles", EXACT)),
    ("energy_mj: 0.5 %", ("energy_mj", Tolerance(relative=0.005))),
    ("sqnr_db:OFF", ("sqnr_db", OFF)),
    ("*:off", ("*", OFF)),
])
def test_rule_grammar(text, expected):
    assert tol.parse_rule(text, where="--x") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("latency_ms", "is not METRIC:AMOUNT"), ("latency_ms:", "is not METRIC:AMOUNT"), (":2%", "is not METRIC:AMOUNT"),
    ("latency_ms:two%", "cannot read tolerance"), ("latency_ms:-1", "cannot read tolerance"),
    ("9lat:2%", "is not METRIC:AMOUNT"), ("latncy_ms:2%", "no figure is called 'latncy_ms'. Did you mean 'latency_ms'"),
    ("mse:inf", "cannot read tolerance"), ("mse:nan", "cannot read tolerance"),
])
def test_bad_rules_name_the_option_and_the_fix(text, message):
    with pytest.raises(BudgetUsageError, match="--npu-compare-fail") as caught:
        tol.parse_rule(text, where="--npu-compare-fail")
    assert message in str(caught.value)


def test_marker_amounts_are_numbers_or_words():
    assert tol.parse_tolerance(1e-3, where="m") == Tolerance(absolute=1e-3)
    assert tol.parse_tolerance("5%", where="m") == Tolerance(relative=0.05)
    assert tol.parse_tolerance("off", where="m") == OFF
    for bad in (True, -1, float("nan"), float("inf"), "5 percent"):
        with pytest.raises(BudgetUsageError, match="m"):
            tol.parse_tolerance(bad, where="m")


def test_defaults_exact_except_figures_against_a_float_reference():
    floats = {"mse", "max_abs_err", "sqnr_db", "cosine"}
    for metric in METRICS:
        expected_loose = metric in floats
        assert (tol.default_tolerance(metric) != EXACT) == expected_loose, metric
    assert tol.default_tolerance("mse") == Tolerance(relative=1e-4)
    assert tol.default_tolerance("cosine") == Tolerance(relative=1e-5)
    assert tol.default_tolerance("top1_drop") == EXACT        # moves in whole samples; never moved
    assert "mse, max_abs_err, sqnr_db 0.01%" in tol.defaults_text() and "cosine 0.001%" in tol.defaults_text()
    assert "%%" in tol.option_help("x") and "%%%" not in tol.option_help("x")    # argparse-escaped


def test_sources_stack_named_beats_wildcard_and_specific_beats_general():
    ini = Tolerances.parse(["latency_ms:1%", "mse:1e-3"], where="ini")
    cli = Tolerances.parse(["*:5%", "cycles:off"], where="cli")
    marker = Tolerances.from_mapping({"latency_ms": "10%"}, where="marker")
    rules = marker.over(cli.over(ini))
    assert rules.for_metric("latency_ms") == Tolerance(relative=0.1)        # the marker
    assert rules.for_metric("cycles") == OFF                                # the cli's named rule
    assert rules.for_metric("mse") == Tolerance(relative=0.05)              # the cli's * beats the ini's mse
    assert Tolerances().for_metric("cosine") == tol.default_tolerance("cosine")
    assert ini.for_metric("cycles") == EXACT and ini.get("cycles") is None
    assert not Tolerances() and Tolerances.parse([], where="x") == Tolerances()


def test_one_rule_overrides_its_figure_and_leaves_the_others_at_their_default():
    """The meaning every source shares: `latency_ms:2%` does not stop cycles from gating."""
    rows = compare_metrics({"cycles": 1001, "latency_ms": 1.015}, {"cycles": 1000, "latency_ms": 1.0},
                           Tolerances.parse(["latency_ms:2%"], where="x"))
    assert [(r.metric, r.status) for r in rows] == [("cycles", "regressed"), ("latency_ms", "ok")]
    only_named = Tolerances.parse(["*:off", "latency_ms:2%"], where="x")
    rows = compare_metrics({"cycles": 1001, "latency_ms": 1.03}, {"cycles": 1000, "latency_ms": 1.0}, only_named)
    assert [(r.metric, r.status, str(r.tolerance)) for r in rows] == [
        ("cycles", "changed", "off"), ("latency_ms", "regressed", "2%")]


def test_direction_decides_what_a_regression_is():
    two_percent = Tolerance(relative=0.02)
    assert compare_metric("latency_ms", 1.03, 1.0, two_percent).status == "regressed"
    assert compare_metric("latency_ms", 0.97, 1.0, two_percent).status == "improved"
    assert compare_metric("latency_ms", 1.01, 1.0, two_percent).status == "ok"
    assert compare_metric("sqnr_db", 29.0, 30.0, two_percent).status == "regressed"
    assert compare_metric("sqnr_db", 31.0, 30.0, two_percent).status == "improved"
    assert compare_metric("top1", 0.95, 0.97, Tolerance(absolute=0.01)).status == "regressed"
    assert compare_metric("cosine", 0.999, 0.999, EXACT).status == "ok"


def test_exact_means_equal_at_the_twelve_digits_a_baseline_keeps():
    assert compare_metric("latency_ms", 0.015406000000000001, 0.015406, EXACT).status == "ok"
    assert compare_metric("latency_ms", 0.0154060000001, 0.015406, EXACT).status == "regressed"
    rows = compare_metrics({"cycles": 1001, "latency_ms": 1.0 + 1e-13}, {"cycles": 1000, "latency_ms": 1.0})
    assert [(r.metric, r.status) for r in rows] == [("cycles", "regressed"), ("latency_ms", "ok")]


def test_default_float_tolerance_absorbs_cpu_drift_and_catches_a_rounding_change():
    """The measured figures of benchmarks/float_drift.py: 2.6e-5 relative drift passes, the 8.7e-4 move
    of mse from single to double requantisation rounding regresses."""
    mse = 0.001442
    assert compare_metric("mse", mse * (1 + 2.6e-5), mse, tol.default_tolerance("mse")).status == "ok"
    assert compare_metric("mse", mse * (1 + 8.7e-4), mse, tol.default_tolerance("mse")).status == "regressed"
    assert compare_metric("sqnr_db", 39.7251409854 * (1 - 2.6e-5), 39.7251409854,
                          tol.default_tolerance("sqnr_db")).status == "ok"


def test_nan_means_not_measured_and_losing_a_figure_regresses():
    assert compare_metric("sqnr_db", math.nan, 30.0, EXACT).status == "regressed"
    assert compare_metric("mse", 0.1, math.nan, EXACT).status == "improved"
    assert compare_metric("mse", math.nan, math.nan, EXACT).status == "ok"
    assert compare_metric("sqnr_db", math.inf, math.inf, EXACT).status == "ok"   # exact outputs stay exact


def test_leaving_an_infinite_figure_is_never_within_tolerance():
    """sqnr_db = inf (an exact match) dropping to 40 dB is a regression whatever the tolerance."""
    loose = Tolerance(relative=0.5, absolute=100)
    assert compare_metric("sqnr_db", 40.0, math.inf, loose).status == "regressed"
    assert compare_metric("sqnr_db", math.inf, 40.0, loose).status == "improved"
    assert compare_metric("sqnr_db", 40.0, math.inf, tol.default_tolerance("sqnr_db")).status == "regressed"


def test_metrics_on_one_side_only_are_reported_not_judged():
    rows = compare_metrics({"cycles": 5, "macs": 9}, {"cycles": 5, "energy_mj": 0.1})
    assert {r.metric: r.status for r in rows} == {"cycles": "ok", "energy_mj": "missing-metric",
                                                  "macs": "new-metric"}


def test_delta_text_is_signed_with_percent():
    row = compare_metric("latency_ms", 1.1, 1.0, Tolerance(relative=0.02))
    assert row.delta_text.startswith("+0.1") and "+10%" in row.delta_text
    assert str(row.tolerance) == "2%" and str(EXACT) == "exact" and str(OFF) == "off"
    assert compare_metric("sqnr_db", 40.0, math.inf, EXACT).delta_text == "-inf"


@settings(max_examples=50, deadline=None)
@given(measured=st.floats(-1e6, 1e6), base=st.floats(-1e6, 1e6), rel=st.floats(0, 0.5), ab=st.floats(0, 10))
def test_higher_is_better_mirrors_lower_is_better(measured, base, rel, ab):
    """Negating both values turns a cost into a score: the verdict must swap regress/improve exactly."""
    tolerance = Tolerance(relative=rel, absolute=ab)
    cost = compare_metric("latency_ms", measured, base, tolerance).status
    score = compare_metric("sqnr_db", -measured, -base, tolerance).status
    assert score == cost
    if measured == base:
        assert cost == "ok"


@settings(max_examples=50, deadline=None)
@given(measured=st.floats(-1e6, 1e6), base=st.floats(-1e6, 1e6))
def test_off_never_fails_and_says_whether_the_figure_moved(measured, base):
    status = compare_metric("cycles", measured, base, OFF).status
    assert status == ("ok" if tol.rounded(measured) == tol.rounded(base) else "changed")
