"""Run history: SQLite records, queries, concurrency, crash safety, and the history/compare CLIs."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_npu import cli
from pytest_npu.errors import BaselineError
from pytest_npu.harness import history
from pytest_npu.harness.session import NpuRecord
from pytest_npu.harness.tolerances import Tolerances

LAYERS = [{"layer": "conv1", "op": "CONV2D", "cycles": 600, "macs": 9000},
          {"layer": "fc", "op": "FULLY_CONNECTED", "cycles": 200, "macs": 640}]


def make_record(test="test_port", target="u55-256", **metrics):
    metrics = metrics or {"cycles": 800, "latency_ms": 0.0016, "sqnr_db": 31.5}
    return NpuRecord(nodeid=f"tests/test_m.py::{test}[{target}]", name=f"{test}[{target}]",
                     module="tests/test_m.py", target=target, metrics=metrics,
                     provenance={"compiler_version": "0.1.0", "model_sha256": "cd" * 32},
                     layers=LAYERS, outcome="passed")


def record(db, release="", commit="", **metrics):
    run = history.RunInfo(started_utc="2026-11-25T10:00:00+00:00", commit_id=commit, release=release,
                          host="ci-1", plugin_version="0.1.0")
    return history.record_run(db, run, [make_record(**metrics), make_record(target="edge-3core", **metrics)])


def test_a_run_is_stored_whole_and_queried_back(tmp_path):
    db = tmp_path / "h.sqlite"
    run_id = record(db, release="v1.0", cycles=800, latency_ms=0.0016)
    with history.connect(db) as connection:
        (run,) = history.runs(connection)
        assert (run.id, run.label, run.host) == (run_id, "v1.0", "ci-1")
        points = history.points(connection, metric="cycles")
        assert {(p.test, p.target, p.value) for p in points} == {
            ("test_port[u55-256]", "u55-256", 800.0), ("test_port[edge-3core]", "edge-3core", 800.0)}
        layers = history.layers_of_run(connection, run_id, target="u55*")
        assert layers == {("test_port[u55-256]", "u55-256"): LAYERS}
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert history.integrity_problems(db) == []


def test_unmeasured_figures_are_not_stored_as_null(tmp_path):
    db = tmp_path / "h.sqlite"
    record(db, cycles=800, sqnr_db=float("nan"), mse=0.0, top1=True)
    with history.connect(db) as connection:
        assert {p.metric for p in history.points(connection)} == {"cycles", "mse"}


def test_labels_refs_and_latest_run_per_label(tmp_path):
    db = tmp_path / "h.sqlite"
    record(db, release="v1.0", cycles=800)
    record(db, release="v1.1", cycles=900)
    record(db, release="v1.1", cycles=850)        # a re-run of v1.1 replaces the first
    record(db, commit="0123456789abcdef", cycles=870)
    with history.connect(db) as connection:
        assert history.resolve_ref(connection, "v1.1").id == 3
        assert history.resolve_ref(connection, "01234567").label == "0123456789"
        assert history.resolve_ref(connection, "#1").release == "v1.0"
        assert history.resolve_ref(connection, "latest").id == 4
        assert history.resolve_ref(connection, "previous").id == 3
        assert history.resolve_ref(connection, "latest-release").id == 3
        assert history.resolve_ref(connection, "previous-release").release == "v1.0"
        labels = [p.label for p in history.points(connection, metric="cycles", target="u55-256")]
        assert labels == ["v1.0", "v1.1", "0123456789"]
        with pytest.raises(BaselineError, match="no run matches 'v9'.*v1.0"):
            history.resolve_ref(connection, "v9")


def test_changes_follow_metric_direction_and_gating():
    def pt(metric, value, run=1):
        return history.Point(run, "x", "", "n", "t", "u55", metric, value)

    before = [pt("cycles", 100), pt("sqnr_db", 30.0), pt("macs", 5), pt("mse", 0.1)]
    after = [pt("cycles", 101, 2), pt("sqnr_db", 31.0, 2), pt("energy_mj", 1.0, 2), pt("mse", 0.2, 2)]
    rows = {r.metric: r.status for r in history.changes(before, after)}
    assert rows == {"cycles": "regressed", "sqnr_db": "improved", "macs": "gone", "energy_mj": "new",
                    "mse": "regressed"}
    only_cycles = Tolerances.parse(["*:off", "cycles:exact"], where="--fail")
    gated = {r.metric: r.status for r in history.changes(before, after, only_cycles)}
    assert gated["mse"] == "changed" and gated["cycles"] == "regressed"


def test_corrupt_and_too_new_databases_are_refused_untouched(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BaselineError, match=str(junk)):
        record(junk)
    assert junk.read_bytes() == b"this is not a database" * 100
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(BaselineError, match="schema version 99"):
        record(newer)
    with pytest.raises(BaselineError, match="no history database"):
        with history.connect(tmp_path / "absent.sqlite", create=False):
            pass


def test_git_info_reads_the_checkout_and_tolerates_no_git(tmp_path, monkeypatch):
    for name in ("GITHUB_SHA", "GITHUB_REF_NAME", "GITHUB_HEAD_REF"):
        monkeypatch.delenv(name, raising=False)
    assert history.git_info(tmp_path) == {"commit_id": "", "branch": "", "dirty": False}
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    info = history.git_info(repo)
    assert len(info["commit_id"]) == 40 and info["branch"] == "main" and info["dirty"] is False
    monkeypatch.setenv("PATH", "")                      # no git binary at all
    assert history.git_info(repo)["commit_id"] == ""


# --------------------------------------------------------------------------------------------------
# many writers, killed writers

WRITER = """
import sys
sys.path.insert(0, {tests!r})
from test_history import make_record
from pytest_npu.harness import history
db, name, runs, per_run = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for index in range(runs):
    run = history.RunInfo(started_utc="2026-11-25T10:00:00+00:00", release=f"{{name}}-{{index}}")
    history.record_run(db, run, [make_record(test=f"test_{{k}}") for k in range(per_run)])
    print("committed", index, flush=True)
"""


def _writer(db: Path, name: str, runs: int, per_run: int) -> subprocess.Popen:
    script = WRITER.format(tests=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-c", script, str(db), name, str(runs), str(per_run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records_per_run(db: Path) -> dict[str, int]:
    with history.connect(db, create=False) as connection:
        return dict(connection.execute(
            "SELECT runs.release, COUNT(records.id) FROM runs LEFT JOIN records ON records.run_id = runs.id "
            "GROUP BY runs.id").fetchall())


def test_concurrent_writers_lose_no_record(tmp_path):
    db = tmp_path / "shared.sqlite"
    writers = [_writer(db, f"w{i}", runs=6, per_run=4) for i in range(4)]
    for process in writers:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    counts = _records_per_run(db)
    assert len(counts) == 24 and set(counts.values()) == {4}
    assert history.integrity_problems(db) == []


def test_a_writer_killed_mid_run_leaves_a_consistent_database(tmp_path):
    db = tmp_path / "killed.sqlite"
    process = _writer(db, "k", runs=10_000, per_run=200)
    assert process.stdout is not None
    assert process.stdout.readline().startswith("committed")     # at least one run is in
    time.sleep(0.3)                                             # now it is inside a later transaction
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    counts = _records_per_run(db)
    assert counts and set(counts.values()) == {200}             # every run whole, none half-written
    assert history.integrity_problems(db) == []
    record(db, release="after-crash")                           # and the file stays writable
    assert _records_per_run(db)["after-crash"] == 2


# --------------------------------------------------------------------------------------------------
# CLIs


@pytest.fixture
def releases(tmp_path):
    db = tmp_path / "h.sqlite"
    record(db, release="v1.0", cycles=800, latency_ms=0.0016, sqnr_db=31.5)
    record(db, release="v1.1", cycles=760, latency_ms=0.00152, sqnr_db=31.5)
    record(db, release="v1.2", cycles=820, latency_ms=0.00164, sqnr_db=30.0)
    return db


def test_history_table_flags_regressions(releases, capsys):
    assert cli.main(["history", "--db", str(releases), "--target", "u55-256"]) == 0
    out = capsys.readouterr().out
    assert "REGRESSED vs v1.1" in out and "improved" in out
    assert "3 releases/commits, 3 regressions between consecutive ones" in out   # cycles, latency, sqnr
    lines = [line for line in out.splitlines() if "cycles" in line]
    assert [line.split()[3] for line in lines] == ["v1.0", "v1.1", "v1.2"]


def test_history_html_is_self_contained_with_charts_and_layers(releases, tmp_path, capsys):
    pytest.importorskip("plotly")
    out_file = tmp_path / "report.html"
    assert cli.main(["history", "--db", str(releases), "--metric", "cycles", "--html", str(out_file)]) == 0
    page = out_file.read_text()
    assert page.count("Plotly.newPlot(") == 2                                    # cycles x 2 targets
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=", page)         # no external assets
    assert "regressed" in page and "Per-layer figures of the latest run (v1.2)" in page
    assert "conv1" in page and "75.0" in page                                    # 600 of 800 cycles


def test_history_filters_that_match_nothing(releases, capsys):
    assert cli.main(["history", "--db", str(releases), "--test", "test_nothing*"]) == 0
    assert "no recorded figures" in capsys.readouterr().out


def test_compare_exits_non_zero_on_regression_only(releases, capsys):
    assert cli.main(["compare", "v1.0", "v1.1", "--db", str(releases)]) == 0
    assert cli.main(["compare", "v1.1", "v1.2", "--db", str(releases)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out and "FAILED" in out
    # --fail overrides its figure only, as --npu-compare-fail does: latency and sqnr_db still gate exactly
    assert cli.main(["compare", "v1.1", "v1.2", "--db", str(releases), "--fail", "cycles:10%"]) == 1
    capsys.readouterr()
    # '*:off' first: 8% more cycles passes a 10% gate on cycles; the rest is shown but not gated
    assert cli.main(["compare", "v1.1", "v1.2", "--db", str(releases), "--fail", "*:off", "--fail", "cycles:10%"]) == 0
    assert "changed" in capsys.readouterr().out
    assert cli.main(["compare", "v1.1", "v1.2", "--db", str(releases), "--fail", "*:off", "--fail", "cycles:5%"]) == 1


def test_compare_bad_input_is_exit_2_with_the_reason(releases, tmp_path, capsys):
    assert cli.main(["compare", "v1.0", "v7", "--db", str(releases)]) == 2
    assert "no run matches 'v7'" in capsys.readouterr().err
    assert cli.main(["compare", "a", "b", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no history database" in capsys.readouterr().err
    assert cli.main(["compare", "v1.0", "v1.1", "--db", str(releases), "--fail", "cycles"]) == 2
    assert "is not METRIC:AMOUNT" in capsys.readouterr().err


def test_run_info_label_falls_back_to_commit_then_id():
    assert history.RunInfo("t", commit_id="abcdef0123456789", dirty=True).label == "abcdef0123+dirty"
    assert history.RunInfo("t", id=7).label == "run 7"
    assert json.loads(json.dumps(history.RunInfo("t").extra)) == {}
