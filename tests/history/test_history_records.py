"""What a history holds and how it reads back, on both backends: records keyed by full node id,
runs by key (shards meet, retries replace), views of releases/CI/local runs, each test's own
tolerances, and many writers at once, one of them killed mid-write; then the same with merge."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from history_helpers import LAYERS, make_record, make_run, record

from pytest_npu.errors import HistoryError
from pytest_npu.harness import history
from pytest_npu.harness.tolerances import Tolerances


def test_a_run_is_stored_whole_and_queried_back(history_url):
    run_id = record(history_url, release="v1.0", cycles=800, latency_ms=0.0016)
    with history.connect(history_url) as db:
        (run,) = db.runs()
        assert (run.id, run.label, run.host, run.kind, run.complete) == (run_id, "v1.0", "ci-1", "release", True)
        points = db.points(db.trend(), metric="cycles")
        assert {(p.test, p.target, p.value) for p in points} == {
            ("tests/test_m.py::test_port[u55-256]", "u55-256", 800.0),
            ("tests/test_m.py::test_port[edge-3core]", "edge-3core", 800.0)}
        assert db.layers(run_id, target="u55*") == {("tests/test_m.py::test_port[u55-256]", "u55-256"): LAYERS}
        assert db.points(db.trend(), test="test_port[u55*") == db.points(db.trend(), target="u55-256")
        assert db.integrity_problems() == []


def test_tests_of_the_same_name_in_two_modules_are_two_series(history_url):
    run = make_run(release="v1")
    records = [make_record(module="tests/test_one.py", cycles=1000), make_record(module="tests/test_two.py", cycles=3000)]
    history.record_run(history_url, run, records)
    history.record_run(history_url, make_run(release="v2", started="2026-11-26T10:00:00+00:00"), records)
    with history.connect(history_url) as db:
        points = db.points(db.trend())
        steps = history.steps(points)
    assert {p.test for p in points} == {"tests/test_one.py::test_port[u55-256]", "tests/test_two.py::test_port[u55-256]"}
    assert [s.change.status for s in steps if s.change is not None] == ["ok"] * 2    # no 1000 -> 3000 "regression"


def test_labels_refs_and_the_latest_run_of_a_label(history_url):
    record(history_url, release="v1.0", cycles=800, started="2026-11-25T10:00:00+00:00")
    record(history_url, release="v1.1", commit="aaaa" * 10, cycles=900, started="2026-11-25T11:00:00+00:00")
    record(history_url, release="v1.1", commit="bbbb" * 10, cycles=850, started="2026-11-25T12:00:00+00:00")
    record(history_url, commit="0123456789abcdef", key="ci-4", cycles=870, started="2026-11-25T13:00:00+00:00")
    record(history_url, commit="0123456789abcdef", cycles=1, started="2026-11-25T14:00:00+00:00")     # local
    with history.connect(history_url) as db:
        assert db.resolve("v1.1").id == 3
        assert db.resolve("01234567").id == 4                  # the CI run of that commit, not the local one
        assert db.resolve("#1").release == "v1.0"
        assert db.resolve("latest").id == 4 and db.resolve("previous").id == 3
        assert db.resolve("latest-release").id == 3 and db.resolve("previous-release").release == "v1.0"
        assert [p.label for p in db.points(db.trend("ci"), metric="cycles", target="u55-256")] == [
            "v1.0", "v1.1", "0123456789"]
        with pytest.raises(HistoryError, match="no run matches 'v9'.*v1.0"):
            db.resolve("v9")


def test_releases_are_the_trend_and_local_runs_stay_apart(history_url):
    """3 releases among 8 developers' runs and 2 CI runs: the release trend has 3 points."""
    plan = ["local"] * 3 + ["ci v1", "release v1"] + ["local"] * 3 + ["ci v2", "release v2"] + ["local"] * 2 \
        + ["release v3"]
    for hour, step in enumerate(plan, start=10):
        kind, _, name = step.partition(" ")
        started = f"2026-11-25T{hour}:00:00+00:00"
        if kind == "release":
            record(history_url, release=name, cycles=800, started=started)
        elif kind == "ci":
            record(history_url, key=f"ci-{name}", commit=name * 5, cycles=850, started=started)
        else:
            record(history_url, cycles=999, started=started)
    with history.connect(history_url) as db:
        def labels(view: str) -> list[str]:
            return list(dict.fromkeys(p.label for p in db.points(db.trend(view), target="u55-256")))

        assert labels("releases") == ["v1", "v2", "v3"]
        assert labels("ci") == ["v1v1v1v1v1", "v1", "v2v2v2v2v2", "v2", "v3"]
        assert len(labels("all")) == 13 and [run.kind for run in db.runs()].count("local") == 8
        with pytest.raises(HistoryError, match="unknown view"):
            db.trend("everything")


def test_a_run_key_joins_shards_and_a_retried_shard_replaces_its_records(history_url):
    record(history_url, key="pipeline-7", shard=1, shards=3, targets=("a", "b"), cycles=100)
    record(history_url, key="pipeline-7", shard=3, shards=3, targets=("e",), cycles=100)
    with history.connect(history_url) as db:
        (run,) = db.runs()
        assert (run.complete, run.missing_shards, run.finished) == (False, [2], (1, 3))
        assert run.completeness == "incomplete: 2 of 3 shards recorded (missing shard 2)"
        assert {p.label for p in db.points(db.trend("ci"))} == {"run 1 (incomplete 2/3)"}
    record(history_url, key="pipeline-7", shard=2, shards=3, targets=("c", "d"), cycles=100)
    record(history_url, key="pipeline-7", shard=2, shards=3, targets=("c", "d"), cycles=105)     # retried
    with history.connect(history_url) as db:
        (run,) = db.runs()
        records = db.stored_records(run.id or 0)
        assert run.complete and len(records) == 5
        assert {r.target: dict(r.metrics)["cycles"] for r in records} == {"a": 100, "b": 100, "c": 105, "d": 105,
                                                                           "e": 100}
        assert db.integrity_problems() == []


def test_each_test_is_judged_by_its_own_recorded_tolerances(history_url):
    rules = {"latency_ms": "10%", "cycles": "off"}
    record(history_url, release="v1", rules=rules, targets=("u55-256",), cycles=800, latency_ms=0.0016)
    record(history_url, release="v2", rules=rules, targets=("u55-256",), cycles=1600, latency_ms=0.00168,
           started="2026-11-26T10:00:00+00:00")
    record(history_url, release="v3", targets=("u55-256",), cycles=1600, latency_ms=0.00176,
           started="2026-11-27T10:00:00+00:00")
    with history.connect(history_url) as db:
        points = db.points(db.trend())
    assert {p.rules for p in points if p.label != "v3"} == {(("cycles", "off"), ("latency_ms", "10%"))}
    status = {(s.point.label, s.point.metric): s.change.status for s in history.steps(points) if s.change}
    assert status[("v2", "latency_ms")] == "ok" and status[("v2", "cycles")] == "changed"     # +5 %; off
    assert status[("v3", "latency_ms")] == "regressed"                   # v3 recorded no rules: exact again
    # rules given now sit on top: a 1 % latency rule flags v2's +5 %, '*:off' silences the rest
    loose = Tolerances.parse(["*:off", "latency_ms:1%"], where="--fail")
    status = {(s.point.label, s.point.metric): s.change.status for s in history.steps(points, loose) if s.change}
    assert status[("v2", "latency_ms")] == "regressed" and status[("v3", "latency_ms")] == "regressed"
    assert status[("v2", "cycles")] == "changed" and status[("v3", "cycles")] == "ok"     # 800 -> 1600 -> 1600


# --------------------------------------------------------------------------------------------------
# many writers, killed writers (separate processes, as CI shards are)

WRITER = """
import sys, time
sys.path.insert(0, {here!r})
from history_helpers import make_record, make_run
from pytest_npu.harness import history
from pytest_npu.harness.history import write
url, key, shard, shards, count, stall = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
if stall:                                   # stop inside the transaction, `stall` records written
    real = write.write_records
    def stalling(store, run_id, rows):
        real(store, run_id, rows[:stall])
        print("inside the transaction", flush=True)
        time.sleep(600)
    write.write_records = stalling
records = [make_record(test=f"test_{{shard}}_{{k}}") for k in range(count)]
history.record_run(url, make_run(key=key, shards=shards), records, shard=shard)
print("committed", flush=True)
"""


def writer(url: str, key: str, shard: int, shards: int, count: int, stall: int = 0) -> subprocess.Popen:
    script = WRITER.format(here=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-c", script, url, key, str(shard), str(shards), str(count), str(stall)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def counts(url: str) -> dict[str, tuple[str, int]]:
    """run key -> (completeness, records)."""
    with history.connect(url) as db:
        assert db.integrity_problems() == []
        return {run.key: (run.completeness, len(db.stored_records(run.id or 0))) for run in db.runs()}


def test_concurrent_shards_of_one_run_lose_and_double_nothing(history_url):
    shards = [writer(history_url, "run-a", shard, 4, 25) for shard in range(1, 5)]
    for process in shards:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert counts(history_url) == {"id:run-a": ("complete", 100)}
    rerun = writer(history_url, "run-a", 3, 4, 25)
    assert rerun.communicate(timeout=60)[0].strip() == "committed"
    assert counts(history_url) == {"id:run-a": ("complete", 100)}


def test_a_shard_killed_mid_write_leaves_the_run_consistent_and_incomplete(history_url):
    assert writer(history_url, "run-k", 1, 2, 20).communicate(timeout=60)[0].strip() == "committed"
    killed = writer(history_url, "run-k", 2, 2, 20, stall=10)
    assert killed.stdout is not None and killed.stdout.readline().strip() == "inside the transaction"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert counts(history_url) == {"id:run-k": ("incomplete: 1 of 2 shards recorded (missing shard 2)", 20)}
    assert writer(history_url, "run-k", 2, 2, 20).communicate(timeout=60)[0].strip() == "committed"
    assert counts(history_url) == {"id:run-k": ("complete", 40)}


# --------------------------------------------------------------------------------------------------
# merge


def test_merging_shard_files_makes_one_run_and_adds_nothing_twice(history_url, tmp_path):
    files = [str(tmp_path / f"shard{shard}.sqlite") for shard in (1, 2, 3)]
    for shard, path in enumerate(files, start=1):
        record(path, key="run-m", shard=shard, shards=4, targets=(f"t{shard}a", f"t{shard}b"), cycles=100)
    report = history.merge(files, history_url)
    assert (report.runs_created, report.records_added, report.shards_added) == (1, 6, 3)
    assert counts(history_url) == {"id:run-m": ("incomplete: 3 of 4 shards recorded (missing shard 4)", 6)}
    again = history.merge(files, history_url)
    assert (again.runs_created, again.records_added, again.records_unchanged) == (0, 0, 6)
    last = str(tmp_path / "shard4.sqlite")
    record(last, key="run-m", shard=4, shards=4, targets=("t4a", "t4b"), cycles=100)
    record(files[0], key="run-m", shard=1, shards=4, targets=("t1a", "t1b"), cycles=90)     # shard 1 retried
    report = history.merge([*files, last], history_url)
    assert (report.records_added, report.records_replaced, report.records_unchanged) == (2, 2, 4)
    assert counts(history_url) == {"id:run-m": ("complete", 8)}
    with history.connect(history_url) as db:
        assert {p.value for p in db.points(db.trend("ci"), test="*t1a*", metric="cycles")} == {90.0}
    with pytest.raises(HistoryError, match="into itself"):
        history.merge([files[0]], files[0])
