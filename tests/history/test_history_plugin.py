"""The history from pytest runs: where it is written, which run and shard a session records as, and
sharded suites (pytest-split, ``-n 2`` in each shard) meeting in one run, in PostgreSQL or by merge.

The figures a test "measures" come from ``figures.json`` through the real ``npu`` runner, so the whole
path (records, xdist, the controller-side writer) is the real one, without compiling a model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pytest_npu import cli
from pytest_npu.harness import history
from pytest_npu.harness.history import store

CONFTEST = '''
import json, pathlib, pytest
from pytest_npu.harness.session import NpuResult

FIGURES = pathlib.Path(__file__).with_name("figures.json")

@pytest.fixture
def measure(npu, request):
    """Record this module's figures (figures.json) on u55-256, as npu.run would."""
    def measure():
        figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
        metrics = dict(figures.get(request.node.module.__name__, {"cycles": 1000, "latency_ms": 0.002}))
        layers = [{"layer": "conv", "op": "CONV2D", "cycles": metrics["cycles"]}]
        result = NpuResult("u55-256", {}, metrics, None, {}, layers, None, None)
        npu._record("u55-256", result, {"compiler_version": "0.1.0"}, lambda: ([], ""))
    return measure
'''

SAME_NAME = '''
import pytest

@pytest.mark.npu_budget(cycles=5000, compare={"latency_ms": "10%"})
def test_port(measure):
    measure()
'''

MANY = '''
import pytest

@pytest.mark.parametrize("case", range(12))
def test_case(measure, case):
    measure()
'''


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """test_a.py::test_port and test_b.py::test_port: same name, two modules, different figures."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=SAME_NAME, test_b=SAME_NAME.replace(', compare={"latency_ms": "10%"}', ""))
    pytester.makeini("[pytest]\nnpu_baseline = false\n")
    figures(pytester, a=1000, b=3000)
    return pytester


def figures(pytester: pytest.Pytester, a: float, b: float, latency_a: float = 0.002) -> None:
    (pytester.path / "figures.json").write_text(json.dumps({
        "test_a": {"cycles": a, "latency_ms": latency_a}, "test_b": {"cycles": b, "latency_ms": 0.006}}))


def runs_of(url: str | Path) -> list[tuple[str, str, str, int]]:
    """(label, kind, completeness, records) of every run."""
    with history.connect(url) as db:
        assert db.integrity_problems() == []
        return [(run.label, run.kind, run.completeness, len(db.stored_records(run.id or 0))) for run in db.runs()]


def test_runs_are_recorded_where_the_options_say(suite):
    db = suite.path / ".npu" / "history.sqlite"
    suite.runpytest("--npu-no-history").assert_outcomes(passed=2)
    assert not db.exists()
    result = suite.runpytest("--npu-release", "v1.0")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*npu history*", "history: run #1 (v1.0) recorded in .npu/history.sqlite: "
                                                  "2 test x target record(s)"])
    suite.runpytest().assert_outcomes(passed=2)                           # a developer's run
    assert runs_of(db) == [("v1.0", "release", "complete", 2), ("run 2", "local", "complete", 2)]
    suite.runpytest("--npu-history", "sqlite:///runs/a.sqlite")
    assert runs_of(suite.path / "runs" / "a.sqlite") == [("run 1", "local", "complete", 2)]
    suite.makeini("[pytest]\nnpu_baseline = false\nnpu_history = off\n")
    suite.runpytest().assert_outcomes(passed=2)
    suite.makeini("[pytest]\nnpu_baseline = false\nnpu_history = sqlite:///runs/ini.sqlite\n")
    suite.runpytest().assert_outcomes(passed=2)
    assert len(runs_of(db)) == 2 and len(runs_of(suite.path / "runs" / "ini.sqlite")) == 1


def test_a_pytest_run_records_into_either_backend_by_url(suite, history_url, capsys):
    url = history_url.replace("postgresql://npu@", "postgresql://npu:s3cret@")    # trust auth ignores it
    suite.runpytest(f"--npu-history={url}", "--npu-release", "v1").assert_outcomes(passed=2)
    figures(suite, a=1100, b=3000, latency_a=0.0021)
    suite.runpytest(f"--npu-history={url}", "--npu-release", "v2").assert_outcomes(passed=2)
    with history.connect(url) as db:
        (first, _) = db.runs()
        assert "s3cret" not in json.dumps(first.extra)
        assert first.extra["args"][0] == f"--npu-history={history.parse_location(url)}"
    assert cli.main(["history", "--db", url, "--metric", "*", "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    # two modules' test_port: two series; test_a's +5 % latency is inside its own compare= 10 %
    assert "test_a.py::test_port" in out and "test_b.py::test_port" in out and out.count("REGRESSED") == 1
    assert "FAILED: v2 regressed 1 figure against the release before it" in out
    figures(suite, a=1100, b=3000, latency_a=0.0021)
    suite.runpytest(f"--npu-history={url}", "--npu-release", "v3").assert_outcomes(passed=2)
    assert cli.main(["history", "--db", url, "--fail-on-regression"]) == 0
    assert "ok: v3 did not regress" in capsys.readouterr().out
    assert cli.main(["compare", "v1", "v2", "--db", url, "--metric", "cycles"]) == 1
    rows = [line for line in capsys.readouterr().out.splitlines() if "::test_port" in line]
    assert [row.split()[0] for row in rows] == ["test_a.py::test_port"]             # test_b did not move


@pytest.mark.parametrize("content, message", [
    (b"not sqlite at all" * 64, "is unreadable*left untouched*"),
    (b"", "is an empty file, not a pytest-npu history*"),
])
def test_a_broken_history_fails_the_run_and_is_left_alone(suite, content, message):
    junk = suite.path / "junk.sqlite"
    junk.write_bytes(content)
    result = suite.runpytest(f"--npu-history={junk}", "--npu-json", "run.json")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*error: this run's history was not written: history database {junk} {message}"])
    assert junk.read_bytes() == content and len(json.loads((suite.path / "run.json").read_text())["tests"]) == 2


def test_a_locked_history_costs_the_run_nothing_but_its_history(suite, history_url, monkeypatch):
    """Locked beyond the busy timeout (60 s; 0.3 s here): the run ends normally, says the history was not
    written and why, and writes every report and export."""
    suite.runpytest(f"--npu-history={history_url}").assert_outcomes(passed=2)
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.3)
    with history.open_store(history_url) as holder:
        with holder.transaction():
            if holder.backend == history.POSTGRESQL:
                holder.execute("LOCK TABLE npu_runs IN ACCESS EXCLUSIVE MODE")
            result = suite.runpytest(f"--npu-history={history_url}", "--npu-json", "run.json",
                                     "--npu-markdown", "summary.md", "--npu-benchmark-json", "bench.json")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*npu summary*", "*npu history*",
                                 "error: this run's history was not written: history database * stayed locked by "
                                 "another writer for over 0.3 s*nothing of this run was written*",
                                 "*2 passed*"])
    for name in ("run.json", "summary.md", "bench.json"):
        assert (suite.path / name).stat().st_size > 0
    assert len(runs_of(history_url)) == 1


@pytest.mark.parametrize("args, message", [
    (["--npu-shards", "2", "--npu-shard", "1"], "--npu-shards 2 needs a run key that every shard shares"),
    (["--npu-shard", "1"], "--npu-shard 1 needs --npu-shards N"),
    (["--npu-shards", "3", "--npu-run-id", "r"], "--npu-shards 3 needs --npu-shard K"),
    (["--npu-shards", "3", "--npu-shard", "4", "--npu-run-id", "r"], "shard 4 is not between 1 and 3"),
    (["--npu-run-id", " "], "--npu-run-id is empty"),
    (["--npu-history", "mysql://db/x"], "unknown scheme 'mysql'"),
])
def test_bad_shard_and_history_options_are_usage_errors(suite, args, message):
    result = suite.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_github_actions_shards_meet_in_one_run_and_a_retry_adds_nothing(suite, monkeypatch):
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "1")
    monkeypatch.setenv("GITHUB_REPOSITORY", "team/port")
    db = suite.path / ".npu" / "history.sqlite"
    shard = ("--npu-shards", "3", "--npu-shard")
    suite.runpytest(*shard, "1", "test_a.py").assert_outcomes(passed=1)
    assert runs_of(db) == [("run 1", "ci", "incomplete: 1 of 3 shards recorded (missing shards 2, 3)", 1)]
    suite.runpytest(*shard, "2", "test_b.py").assert_outcomes(passed=1)
    suite.runpytest(*shard, "3", "-k", "no_such_test")                # a shard that measured nothing still counts
    suite.runpytest(*shard, "2", "test_b.py").assert_outcomes(passed=1)               # retried
    assert runs_of(db) == [("run 1", "ci", "complete", 2)]
    with history.connect(db) as opened:
        assert opened.runs()[0].key == "github:team/port:4242.1"


# --------------------------------------------------------------------------------------------------
# a sharded suite: pytest-split picks each shard's tests, xdist runs them on 2 workers


def _shard(directory: Path, group: int, url: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)        # let the children cache bytecode (see tests/harness)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / f"pytest-npu-pycache-{os.getuid()}")
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "2",
         "--splits", "2", "--group", str(group), "--npu-run-id", "pipeline-9", "--npu-history", url],
        cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite-and-merge"])
def test_shards_with_pytest_split_and_xdist_make_one_complete_run(pytester, request, backend):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_many=MANY)
    pytester.makeini("[pytest]\nnpu_baseline = false\n")
    shared = request.getfixturevalue("postgres").database() if backend == "postgresql" else None
    urls = [shared or str(pytester.path / f"shard-{group}.sqlite") for group in (1, 2)]
    shards = [_shard(pytester.path, group, url) for group, url in zip((1, 2), urls)]
    for process in shards:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0 and "6 passed" in out, out
    merged = shared or str(pytester.path / "all.sqlite")
    if shared is None:
        assert cli.main(["history", "merge", *urls, "--into", merged]) == 0
        assert runs_of(urls[0]) == [("run 1", "ci", "incomplete: 1 of 2 shards recorded (missing shard 2)", 6)]
    assert runs_of(merged) == [("run 1", "ci", "complete", 12)]
    # shard 1 again, in this process and without xdist: the same records, replaced, none added
    pytester.runpytest("-p", "no:randomly", "--splits", "2", "--group", "1", "--npu-run-id", "pipeline-9",
                       "--npu-history", urls[0]).assert_outcomes(passed=6)
    if shared is None:
        assert cli.main(["history", "merge", *urls, "--into", merged]) == 0
    assert runs_of(merged) == [("run 1", "ci", "complete", 12)]
