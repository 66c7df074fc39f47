"""Budget arithmetic, stacking rules, breach tables and records, without running pytest or an NPU."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import BudgetUsageError
from pytest_npu.harness import report
from pytest_npu.harness.markers import METRICS, parse_budget_kwargs, suggest
from pytest_npu.harness.session import NpuRecord
from pytest_npu.harness.verdict import Breach, breach_table, check_budgets, costly_layers, failure_message

finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(METRICS)), limit=finite, measured=finite)
def test_a_breach_is_exactly_a_measurement_on_the_wrong_side_of_the_limit(name, limit, measured):
    metric = METRICS[name]
    breaches = check_budgets({name: measured}, {name: limit})
    wrong_side = measured < limit if metric.higher_is_better else measured > limit
    assert bool(breaches) == wrong_side
    if breaches:
        assert breaches[0] == Breach(name, limit, measured)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(METRICS)), a=finite, b=finite)
def test_tighter_and_worse_agree_with_the_direction(name, a, b):
    metric = METRICS[name]
    tight = metric.tighter(a, b)
    # whatever passes the tighter limit passes both
    for value in (a, b, (a + b) / 2):
        if not metric.breaks(value, tight):
            assert not metric.breaks(value, a) and not metric.breaks(value, b)
    worst = metric.worse(a, b)
    better = b if worst == a else a
    assert worst in (a, b)
    assert metric.breaks(worst, better) == (a != b)     # the worse value breaks a limit at the better one


def test_unmeasured_budgeted_metric_is_a_breach_that_says_what_to_pass():
    breaches = check_budgets({"latency_ms": 1.0}, {"mse": 1e-3, "top1": 0.9, "latency_ms": 2.0})
    assert [(b.metric, math.isnan(b.measured)) for b in breaches] == [("mse", True), ("top1", True)]
    assert "reference=" in breaches[0].message and "labels=" in breaches[1].message


def test_parse_rejects_what_would_never_fire():
    assert parse_budget_kwargs({"latency_ms": 5, "sqnr_db": -3}, "t").limits == {"latency_ms": 5.0,
                                                                                  "sqnr_db": -3.0}
    assert parse_budget_kwargs({"compare": {"cycles": "2%"}}, "t").tolerances == {"cycles": "2%"}
    for bad in ({"latency": 1}, {"mse": float("nan")}, {"top1": 2}, {"cycles": None}):
        with pytest.raises(BudgetUsageError, match="^t: npu_budget"):
            parse_budget_kwargs(bad, "t")


def test_suggest_is_case_insensitive_and_silent_for_nonsense():
    assert suggest("SRAM_KIB", METRICS) == " Did you mean 'sram_kib'?"
    assert suggest("zzzz", METRICS) == ""


def test_breach_table_shows_floors_and_baselines():
    table = breach_table([Breach("sqnr_db", 30.0, 25.0), Breach("cycles", None, 120.0, 100.0, 20.0, "slower")])
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "budget", "measured", "margin", "baseline", "delta", "note"]
    assert lines[2].split()[:6] == ["sqnr_db", ">=", "30", "25", "+5", "(+16.7%)"]
    assert lines[3].split() == ["cycles", "-", "120", "-", "100", "20", "slower"]


def _record(**changes) -> NpuRecord:
    layers = [{"layer": "conv1", "op": "conv2d", "where": "npu", "cycles": 300, "sram_peak": 10},
              {"layer": "fc", "op": "fully_connected", "where": "npu", "cycles": 100, "sram_peak": 90},
              {"layer": "softmax", "op": "softmax", "where": "host", "cycles": 600, "sram_peak": 0}]
    record = NpuRecord("t.py::test[u55-256]", "test[u55-256]", "t.py", "u55-256",
                       metrics={"cycles": 1000.0, "sram_kib": 0.1, "sqnr_db": float("inf")},
                       layers=layers, budgets={"cycles": 500.0}, runs=2)
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def test_costly_layers_rank_by_the_column_that_explains_the_metric():
    record = _record()
    by_cycles = costly_layers(record.layers, "latency_ms").splitlines()
    assert [line.split()[0] for line in by_cycles[2:]] == ["softmax", "conv1", "fc"]
    assert by_cycles[2].split()[-1] == "60%"
    by_sram = costly_layers(record.layers, "sram_kib").splitlines()
    assert by_sram[0].split() == ["layer", "op", "where", "sram_peak"] and by_sram[2].split()[0] == "fc"


def test_failure_message_layout():
    record = _record()
    text = failure_message(record, [Breach("cycles", 500.0, 1000.0), Breach("mse", 1e-4, 2e-4)],
                           [{"layer": "conv1", "op": "Conv", "sqnr_db": 12.5, "mse": 1e-3}], "emulator intermediates")
    lines = text.splitlines()
    assert lines[0] == "NPU budget exceeded: t.py::test[u55-256] on target u55-256 (2 checks failed, 2 run(s))"
    assert lines[4].split() == ["cycles", "<=", "500", "1,000", "+500", "(+100.0%)"]
    assert "most expensive layers by cycles (from the compiled program's trace):" in lines
    assert "layers with the lowest SQNR vs the float reference (emulator intermediates):" in lines
    assert lines[-1].split() == ["conv1", "Conv", "12.5", "0.001"]


def test_record_round_trips_through_json_with_inf_and_breaches():
    record = _record(breaches=[Breach("cycles", 500.0, 1000.0)], outcome="failed")
    again = NpuRecord.from_json(record.to_json())
    assert again == record and math.isinf(again.metrics["sqnr_db"])


def test_reports_count_and_mark_breaches(tmp_path):
    ok = _record(nodeid="t.py::ok", breaches=[], outcome="passed")
    bad = _record(breaches=[Breach("cycles", 500.0, 1000.0)], outcome="failed")
    reported = _record(nodeid="t.py::soft", breaches=[Breach("cycles", 500.0, 1000.0)], outcome="passed")
    assert [report.status(r) for r in (ok, bad, reported)] == ["ok", "FAILED", "over budget"]
    table = report.summary_table([bad, ok, reported]).splitlines()
    assert [line.split()[0] for line in table[2:]] == ["t.py::ok", "t.py::soft", "t.py::test[u55-256]"]
    assert table[3].endswith("over budget: cycles")
    document = report.run_document([ok, bad], ["u55-256"], enforce=True)
    assert [t["status"] for t in document["tests"]] == ["ok", "FAILED"]
    json.dumps(document)   # builtins only
    path = tmp_path / "run.json"
    report.write_json(path, [ok, bad], ["u55-256"], enforce=True)
    written = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}"))
    assert written["tests"][0]["metrics"]["sqnr_db"] == "inf"
    text = report.markdown([ok, bad], enforce=False)
    assert "2 test x target record(s), 1 with breaches (budgets not enforced: --npu-no-budgets)." in text
