"""Unit tests of the baseline file format, tolerances and comparisons (no pytest run inside)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import BaselineError, BudgetUsageError
from pytest_npu.harness import baseline as bl


@pytest.mark.parametrize(("text", "expected"), [
    ("latency_ms:2%", ("latency_ms", bl.Tolerance(relative=0.02))),
    ("mse:1e-4", ("mse", bl.Tolerance(absolute=1e-4))),
    ("cycles:0", ("cycles", bl.Tolerance())),
    ("energy_mj: 0.5 %", ("energy_mj", bl.Tolerance(relative=0.005))),
])
def test_compare_fail_grammar(text, expected):
    assert bl.parse_compare_fail(text) == expected


@pytest.mark.parametrize("text", ["latency_ms", "latency_ms:", ":2%", "latency_ms:two%", "latency_ms:-1",
                                  "9lat:2%"])
def test_bad_compare_fail_names_the_option(text):
    with pytest.raises(BudgetUsageError, match="--npu-compare-fail"):
        bl.parse_compare_fail(text)


def test_marker_tolerances_accept_numbers_and_percent_strings():
    assert bl.parse_tolerance(1e-3, where="m") == bl.Tolerance(absolute=1e-3)
    assert bl.parse_tolerance("5%", where="m") == bl.Tolerance(relative=0.05)
    for bad in (True, -1, float("nan"), "5 percent"):
        with pytest.raises(BudgetUsageError, match="m"):
            bl.parse_tolerance(bad, where="m")


def test_direction_decides_what_a_regression_is():
    two_percent = bl.Tolerance(relative=0.02)
    assert bl.compare_metric("latency_ms", 1.03, 1.0, two_percent).status == "regressed"
    assert bl.compare_metric("latency_ms", 0.97, 1.0, two_percent).status == "improved"
    assert bl.compare_metric("latency_ms", 1.01, 1.0, two_percent).status == "ok"
    assert bl.compare_metric("sqnr_db", 29.0, 30.0, two_percent).status == "regressed"
    assert bl.compare_metric("sqnr_db", 31.0, 30.0, two_percent).status == "improved"
    assert bl.compare_metric("top1", 0.95, 0.97, bl.Tolerance(absolute=0.01)).status == "regressed"
    assert bl.compare_metric("cosine", 0.999, 0.999, bl.Tolerance()).status == "ok"


def test_nan_means_not_measured_and_losing_a_figure_regresses():
    exact = bl.Tolerance()
    assert bl.compare_metric("sqnr_db", math.nan, 30.0, exact).status == "regressed"
    assert bl.compare_metric("mse", 0.1, math.nan, exact).status == "improved"
    assert bl.compare_metric("mse", math.nan, math.nan, exact).status == "ok"
    assert bl.compare_metric("sqnr_db", math.inf, math.inf, exact).status == "ok"   # exact outputs stay exact


def test_default_tolerances_exact_for_integers_tight_for_floats():
    assert bl.default_tolerance("cycles", 1000) == bl.Tolerance()
    assert bl.default_tolerance("latency_ms", 1.5) == bl.Tolerance(relative=bl.FLOAT_DEFAULT_RELATIVE)
    assert bl.default_tolerance("mse", 1e-3) == bl.Tolerance(relative=bl.ACCURACY_DEFAULT_RELATIVE)
    rows = bl.compare_metrics({"cycles": 1001, "latency_ms": 1.0 + 1e-12}, {"cycles": 1000, "latency_ms": 1.0})
    assert [(r.metric, r.status) for r in rows] == [("cycles", "regressed"), ("latency_ms", "ok")]


def test_metrics_on_one_side_only_are_reported_not_judged():
    rows = bl.compare_metrics({"cycles": 5, "macs": 9}, {"cycles": 5, "energy_mj": 0.1})
    assert {r.metric: r.status for r in rows} == {"cycles": "ok", "energy_mj": "missing-metric",
                                                  "macs": "new-metric"}


@settings(max_examples=50, deadline=None)
@given(measured=st.floats(-1e6, 1e6), base=st.floats(-1e6, 1e6), rel=st.floats(0, 0.5), ab=st.floats(0, 10))
def test_higher_is_better_mirrors_lower_is_better(measured, base, rel, ab):
    """Negating both values turns a cost into a score: the verdict must swap regress/improve exactly."""
    tolerance = bl.Tolerance(relative=rel, absolute=ab)
    cost = bl.compare_metric("latency_ms", measured, base, tolerance).status
    score = bl.compare_metric("sqnr_db", -measured, -base, tolerance).status
    assert score == cost
    if measured == base:
        assert cost == "ok"


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_normalised_floats_are_stable_and_close(value):
    once = bl.normalise(value)
    assert bl.normalise(once) == once                    # idempotent: a re-record changes nothing
    assert json.loads(json.dumps(once)) == once          # survives the file
    assert math.isclose(once, value, rel_tol=1e-11, abs_tol=0)


def test_normalise_numpy_scalars_and_non_finite():
    assert bl.normalise({"a": np.int64(3), "b": np.float32(0.1), "c": float("inf")}) == \
        {"a": 3, "b": 0.100000001490, "c": "inf"}
    assert type(bl.normalise(np.int32(7))) is int


def _sample_file(tmp_path):
    baseline = bl.BaselineFile(tmp_path / "__npu__" / "test_m.json", "tests/test_m.py")
    baseline.set_entry("test_b[u55-256]", "u55-256", {"cycles": 1200, "latency_ms": 0.0024, "mse": 1.25e-05},
                       {"compiler_version": "0.1.0", "model_sha256": "ab" * 32})
    baseline.set_entry("TestA.test_a", "edge-3core", {"energy_mj": 0.01 + 0.02}, {"compiler_version": "0.1.0"})
    return baseline


def test_counts_are_stored_as_integers():
    baseline = bl.BaselineFile(bl.Path("x.json"), "m.py")
    baseline.set_entry("t", "u55", {"cycles": 8599.0, "dram_read_bytes": 12.0, "latency_ms": 2.0}, {})
    assert baseline.tests["t"]["u55"]["metrics"] == {"cycles": 8599, "dram_read_bytes": 12, "latency_ms": 2.0}
    assert '"cycles": 8599,' in baseline.dumps()


def test_file_format_sorted_versioned_and_round_trips(tmp_path):
    baseline = _sample_file(tmp_path)
    assert bl.save_baseline(baseline) is True
    text = baseline.path.read_text()
    assert text.endswith("}\n") and '"version": 1' in text and '"format": "pytest-npu-baseline"' in text
    assert text.index('"TestA.test_a"') < text.index('"test_b[u55-256]"')       # sorted keys
    assert '"energy_mj": 0.03' in text                                         # 0.030000000000000002 rounded
    again = bl.load_baseline(baseline.path)
    assert again.tests == baseline.tests and again.module == "tests/test_m.py"
    assert bl.save_baseline(again) is False                                    # nothing moved: no write
    assert baseline.path.read_text() == text


def test_one_moved_number_is_a_one_line_diff(tmp_path):
    baseline = _sample_file(tmp_path)
    bl.save_baseline(baseline)
    before = baseline.path.read_text().splitlines()
    baseline.set_entry("test_b[u55-256]", "u55-256", {"cycles": 1300, "latency_ms": 0.0024, "mse": 1.25e-05},
                       {"compiler_version": "0.1.0", "model_sha256": "ab" * 32})
    bl.save_baseline(baseline)
    after = baseline.path.read_text().splitlines()
    assert len(before) == len(after)
    assert [(a, b) for a, b in zip(before, after) if a != b] == [('          "cycles": 1200,', '          "cycles": 1300,')]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "unreadable"),
    ('{"format": "something-else", "version": 1, "tests": {}}', "not a pytest-npu baseline"),
    ('{"format": "pytest-npu-baseline", "version": 99, "tests": {}}', "version 99"),
    ('{"format": "pytest-npu-baseline", "version": 1, "tests": {"t": {"u55": 3}}}', "malformed"),
    ('[1, 2]', "not a pytest-npu baseline"),
    ('{"format": "pytest-npu-baseline", "version": 1, "tests": {"t": {"u55": {"metrics": {"cycles": "many"}}}}}',
     "t on u55 has non-numeric metric"),
])
def test_corrupt_or_too_new_file_is_named_and_left_untouched(tmp_path, content, message):
    path = tmp_path / "test_x.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message) as caught:
        bl.load_baseline(path)
    assert str(path) in str(caught.value)
    assert path.read_text() == content


def test_missing_file_is_an_empty_baseline_and_empty_file_is_deleted(tmp_path):
    baseline = bl.load_baseline(tmp_path / "nope.json", "tests/nope.py")
    assert baseline.tests == {} and bl.save_baseline(baseline) is False
    full = _sample_file(tmp_path)
    bl.save_baseline(full)
    full.remove("test_b[u55-256]")
    full.remove("TestA.test_a", "edge-3core")
    assert bl.save_baseline(full) is True and not full.path.exists()


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "deep" / "dir" / "f.json"
    bl.atomic_write_text(path, "one\n")
    bl.atomic_write_text(path, "two\n")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]


def test_atomic_write_failure_is_a_baseline_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BaselineError, match="cannot write"):
        bl.atomic_write_text(blocker / "sub" / "f.json", "{}")


def test_node_ids_become_syrupy_style_keys():
    assert bl.split_nodeid("tests/t.py::test_a") == ("tests/t.py", "test_a")
    assert bl.split_nodeid("tests/t.py::TestA::test_b[x::y-u55]") == ("tests/t.py", "TestA.test_b[x::y-u55]")
    with pytest.raises(BaselineError, match="no test part"):
        bl.split_nodeid("tests/t.py")


def test_paths_default_beside_module_or_mirrored_under_a_directory(tmp_path):
    default = bl.baseline_path("tests/sub/test_m.py", tmp_path)
    assert default == tmp_path / "tests/sub/__npu__/test_m.json"
    assert bl.module_of_baseline(default, tmp_path) == tmp_path / "tests/sub/test_m.py"
    custom = bl.baseline_path("tests/sub/test_m.py", tmp_path, "baselines")
    assert custom == tmp_path / "baselines/tests/sub/test_m.json"
    assert bl.module_of_baseline(custom, tmp_path, "baselines") == tmp_path / "tests/sub/test_m.py"


def test_provenance_changes_name_the_key():
    lines = bl.provenance_changes({"compiler_version": "0.2.0", "model_sha256": "aa"},
                                  {"compiler_version": "0.1.0", "model_sha256": "aa", "gone": 1})
    assert lines == ["compiler_version: 0.1.0 -> 0.2.0", "gone: 1 -> null"]


def test_delta_text_is_signed_with_percent():
    row = bl.compare_metric("latency_ms", 1.1, 1.0, bl.Tolerance(relative=0.02))
    assert row.delta_text.startswith("+0.1") and "+10%" in row.delta_text
    assert str(row.tolerance) == "2%" and str(bl.Tolerance()) == "exact"
