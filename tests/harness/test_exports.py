"""Exports in the formats existing chart tools read (pytest-benchmark, github-action-benchmark)."""

from __future__ import annotations

import json

import pytest

from pytest_npu.errors import BaselineError
from pytest_npu.harness import exports, history
from pytest_npu.harness.session import NpuRecord

RUN = history.RunInfo(started_utc="2026-11-25T10:00:00+00:00", commit_id="f" * 40, branch="main",
                      host="ci", plugin_version="0.1.0", python="3.11.9")


def _records():
    return [NpuRecord(nodeid="tests/test_m.py::TestP::test_port[u55-256]", name="test_port[u55-256]",
                      module="tests/test_m.py", target="u55-256", runs=3,
                      metrics={"latency_ms": 2.0, "cycles": 1000, "energy_mj": 0.05, "sqnr_db": 30.0,
                               "top1": 0.97}, provenance={"compiler_version": "0.1.0"})]


def test_benchmark_json_has_pytest_benchmark_fields():
    document = exports.benchmark_json(_records(), RUN)
    assert set(document) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    (bench,) = document["benchmarks"]
    assert bench["fullname"] == "tests/test_m.py::TestP::test_port[u55-256]" and bench["group"] == "u55-256"
    stats = bench["stats"]
    assert stats["mean"] == stats["min"] == stats["median"] == 0.002 and stats["stddev"] == 0.0
    assert stats["ops"] == pytest.approx(500.0) and stats["rounds"] == 3
    assert bench["extra_info"]["cycles"] == 1000 and document["commit_info"]["id"] == "f" * 40


def test_github_benchmark_splits_by_direction_with_units():
    smaller = exports.github_benchmark(_records(), bigger=False)
    bigger = exports.github_benchmark(_records(), bigger=True)
    assert {e["name"].rsplit(" ", 1)[1] for e in smaller} == {"latency_ms", "cycles", "energy_mj"}
    assert {e["name"].rsplit(" ", 1)[1] for e in bigger} == {"sqnr_db", "top1"}
    by_name = {e["name"]: e for e in smaller + bigger}
    assert by_name["tests/test_m.py::TestP::test_port [u55-256] latency_ms"]["unit"] == "ms"
    assert by_name["tests/test_m.py::TestP::test_port [u55-256] sqnr_db"]["unit"] == "dB"
    assert all(set(e) == {"name", "unit", "value", "extra"} for e in smaller + bigger)


def test_same_named_tests_of_two_modules_are_two_series_in_every_export():
    twin = NpuRecord(nodeid="tests/test_n.py::TestP::test_port[u55-256]", name="test_port[u55-256]",
                     module="tests/test_n.py", target="u55-256", metrics={"cycles": 3000})
    records = [*_records(), twin]
    names = [e["name"] for e in exports.github_benchmark(records, bigger=False) if e["name"].endswith(" cycles")]
    assert sorted(names) == ["tests/test_m.py::TestP::test_port [u55-256] cycles",
                             "tests/test_n.py::TestP::test_port [u55-256] cycles"]
    benchmarks = exports.benchmark_json(records, RUN)["benchmarks"]
    assert len({b["fullname"] for b in benchmarks}) == 2 and {b["name"] for b in benchmarks} == {
        "TestP.test_port[u55-256]"}                 # pytest-benchmark's short name; fullname tells them apart


def test_write_is_json_with_trailing_newline_and_rejects_unknown_kinds(tmp_path):
    path = tmp_path / "out" / "bench.json"
    exports.write("github", path, _records(), RUN)
    text = path.read_text()
    assert text.endswith("]\n") and len(json.loads(text)) == 3
    with pytest.raises(BaselineError, match="unknown export kind 'csv'"):
        exports.write("csv", path, _records(), RUN)
