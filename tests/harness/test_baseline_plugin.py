"""pytester runs of every baseline flag and failure mode.

The figures a test "measures" come from ``figures.json`` in the pytester directory, attributed to the
test through the real ``npu`` runner, so each run can move exactly the numbers a case needs while the
whole path (records, ``pytest_npu_check``, failure table, controller-side writers) is the real one.
"""

from __future__ import annotations

import importlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

CONFTEST = '''
import json, pathlib, pytest
from pytest_npu.harness.session import NpuResult

FIGURES = pathlib.Path(__file__).with_name("figures.json")

@pytest.fixture
def measure(npu, request):
    """Record figures.json[<test function>] on this test's target, as npu.run would."""
    def measure(target=None):
        figures = json.loads(FIGURES.read_text())
        callspec = getattr(request.node, "callspec", None)
        target = target or (callspec.params.get("npu_target", "u55-256") if callspec else "u55-256")
        metrics = dict(figures["metrics"][request.node.originalname])
        provenance = figures.get("provenance", {"compiler_version": "0.1.0", "model_sha256": "ab" * 32})
        layers = [{"layer": "conv", "op": "CONV2D", "cycles": metrics.get("cycles", 0)}]
        result = NpuResult(target, {}, metrics, None, {}, layers, None, None)
        npu._record(target, result, provenance, lambda: ([], ""))
    return measure
'''

TESTS = '''
import pytest

def test_port(measure):
    measure()

@pytest.mark.npu_budget(cycles=5000, compare={"latency_ms": "10%"})
def test_budgeted(measure):
    measure()

class TestGroup:
    @pytest.mark.parametrize("size", [1, 2])
    def test_sized(self, measure, size):
        measure()
'''

FIGURES = {
    "test_port": {"cycles": 1000, "latency_ms": 0.002, "energy_mj": 0.01, "sqnr_db": 30.0},
    "test_budgeted": {"cycles": 4000, "latency_ms": 0.008},
    "test_sized": {"cycles": 10, "latency_ms": 2e-05},
}
QUIET = ("-p", "no:randomly", "--npu-no-history")


def lit(text: str) -> str:
    """``text`` as an fnmatch pattern: brackets of parametrize ids are literal, not character classes."""
    return re.sub(r"([\[\]])", r"[\1]", text)


def set_figures(pytester: pytest.Pytester, provenance: dict | None = None, **changes: dict) -> None:
    figures = json.loads(json.dumps(FIGURES))
    for test, metrics in changes.items():
        figures[test].update(metrics)
    document: dict = {"metrics": figures}
    if provenance is not None:
        document["provenance"] = provenance
    (pytester.path / "figures.json").write_text(json.dumps(document))


@pytest.fixture(scope="module", autouse=True)
def _warm_imports():
    """pytester restores ``sys.modules`` after every in-process run, so whatever an inner run imports
    lazily (hypothesis' terminal summary, tabulate, numpy, the targets) is imported again - and
    assertion-rewritten again - by the next one. Importing them once out here keeps each run fast."""
    for name in ("hypothesis", "hypothesis.strategies", "tabulate", "numpy", "sqlite3", "pytest_npu.targets",
                 "pytest_npu.harness.history", "pytest_npu.harness.exports", "pytest_npu.harness.report",
                 "pytest_npu.harness.session", "pytest_npu.harness.verdict"):
        importlib.import_module(name)


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_port=TESTS)
    set_figures(pytester)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *args)


def baseline_file(pytester: pytest.Pytester) -> Path:
    return pytester.path / "__npu__" / "test_port.json"


def recorded(pytester: pytest.Pytester) -> pytest.RunResult:
    result = run(pytester, "--npu-update-baseline")
    result.assert_outcomes(passed=4)
    return result


def test_missing_baseline_fails_with_the_command_to_record_it(suite):
    result = run(suite)
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([
        "*no baseline for target u55-256 in __npu__/test_port.json; record it with: "
        "pytest test_port.py::test_port --npu-update-baseline=new*",
        "*4 missing against baselines*"])
    assert not baseline_file(suite).exists()


def test_update_records_every_test_then_the_suite_passes(suite):
    result = recorded(suite)
    result.stdout.fnmatch_lines([lit("*recorded: test_port.py::TestGroup::test_sized[1] [u55-256] in __npu__/test_port.json*")])
    document = json.loads(baseline_file(suite).read_text())
    assert sorted(document["tests"]) == ["TestGroup.test_sized[1]", "TestGroup.test_sized[2]", "test_budgeted",
                                         "test_port"]
    assert document["tests"]["test_port"]["u55-256"]["metrics"] == FIGURES["test_port"]
    assert "started" not in baseline_file(suite).read_text() and document["version"] == 1
    run(suite).assert_outcomes(passed=4)
    before = baseline_file(suite).read_bytes()
    recorded(suite)
    assert baseline_file(suite).read_bytes() == before          # re-recording the same figures is a no-op


def test_a_comparing_run_never_writes(suite):
    recorded(suite)
    hand_formatted = json.dumps(json.loads(baseline_file(suite).read_text()), indent=4)
    baseline_file(suite).write_text(hand_formatted)
    run(suite).assert_outcomes(passed=4)
    assert baseline_file(suite).read_text() == hand_formatted


def test_regression_fails_with_baseline_and_delta_in_the_table(suite):
    recorded(suite)
    set_figures(suite, test_port={"cycles": 1001, "sqnr_db": 29.0})
    result = run(suite)
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines([
        "*metric*budget*measured*margin*baseline*delta*note*",
        "cycles*1,001*1,000*1*regressed by +1 (+0.1%), tolerance exact*",
        "sqnr_db*29*30*-1*regressed by -1 (-3.33%)*",
        "*3 passed, 1 regressed against baselines*"])


def test_tolerance_from_option_ini_and_marker(suite):
    recorded(suite)
    set_figures(suite, test_port={"cycles": 1040}, test_budgeted={"latency_ms": 0.0085})
    run(suite).assert_outcomes(failed=1, passed=3)       # test_budgeted: +6.25% is inside its compare=10%
    run(suite, "--npu-compare-fail", "cycles:5%").assert_outcomes(passed=4)
    run(suite, "--npu-compare-fail", "cycles:39").assert_outcomes(failed=1, passed=3)
    suite.makeini("[pytest]\nnpu_compare_fail = cycles:4% latency_ms:1%\n")
    run(suite).assert_outcomes(passed=4)                 # the marker's 10% beats the ini's 1% for latency
    run(suite, "--npu-compare-fail", "cycles:1%").assert_outcomes(failed=1, passed=3)   # option beats ini


def test_improvement_is_reported_and_fails_only_when_asked(suite):
    recorded(suite)
    set_figures(suite, test_port={"cycles": 900, "sqnr_db": 31.0})
    result = run(suite)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([lit("*improved: test_port.py::test_port [u55-256] cycles 1000 -> 900 (-100 (-10%)*")])
    failed = run(suite, "--npu-fail-on-improvement")
    failed.assert_outcomes(failed=1, passed=3)
    failed.stdout.fnmatch_lines(["*improved (refresh with --npu-update-baseline) by -100*"])
    suite.makeini("[pytest]\nnpu_fail_on_improvement = true\n")
    run(suite).assert_outcomes(failed=1, passed=3)


def test_update_never_records_a_value_that_breaks_the_budget(suite):
    recorded(suite)
    before = baseline_file(suite).read_text()
    set_figures(suite, test_budgeted={"cycles": 6000})
    result = run(suite, "--npu-update-baseline")
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines([lit("*refused: test_port.py::test_budgeted [u55-256]: breaks its npu_budget "
                                 "(cycles=6000 vs 5000); an update never loosens a budget*")])
    assert json.loads(baseline_file(suite).read_text())["tests"]["test_budgeted"] == \
        json.loads(before)["tests"]["test_budgeted"]
    # and with --npu-no-budgets the test passes, but the value is still not recorded
    result = run(suite, "--npu-update-baseline", "--npu-no-budgets")
    result.stdout.fnmatch_lines(["*refused: test_port.py::test_budgeted*"])
    assert baseline_file(suite).read_text() == before


def test_update_new_only_adds_missing_entries_and_still_gates_the_rest(suite):
    recorded(suite)
    document = json.loads(baseline_file(suite).read_text())
    del document["tests"]["test_port"]
    baseline_file(suite).write_text(json.dumps(document))
    set_figures(suite, test_budgeted={"latency_ms": 0.01})
    result = run(suite, "--npu-update-baseline=new")
    result.assert_outcomes(failed=1, passed=3)             # test_budgeted regressed: new-only does not hide it
    result.stdout.fnmatch_lines([lit("*recorded: test_port.py::test_port [u55-256]*")])
    stored = json.loads(baseline_file(suite).read_text())["tests"]
    assert stored["test_port"]["u55-256"]["metrics"]["cycles"] == 1000
    assert stored["test_budgeted"]["u55-256"]["metrics"]["latency_ms"] == 0.008


def test_bad_update_mode_and_bad_tolerance_are_usage_errors(suite):
    result = run(suite, "--npu-update-baseline=some")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected 'all' or 'new', got 'some'*"])
    result = run(suite, "--npu-compare-fail", "cycles=5%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--npu-compare-fail: 'cycles=5%' is not METRIC:N% or METRIC:ABS*"])


def test_unused_entries_reported_kept_on_subsets_removed_on_full_update(suite):
    recorded(suite)
    suite.makepyfile(test_port=TESTS.replace("def test_port(", "def test_renamed(")
                     .replace('[1, 2]', '[1]'))
    set_figures(suite)
    document = json.loads((suite.path / "figures.json").read_text())
    document["metrics"]["test_renamed"] = document["metrics"]["test_port"]
    (suite.path / "figures.json").write_text(json.dumps(document))
    result = run(suite)
    result.stdout.fnmatch_lines([lit("*unused: TestGroup.test_sized[2] in __npu__/test_port.json*")])
    assert "unused:" not in run(suite, "-k", "budgeted").stdout.str()    # a subset judges nothing unused
    for subset, reason in ((["-k", "renamed or budgeted"], "1 deselected; -k renamed or budgeted"),
                           (["test_port.py::test_renamed"], "node ids given"), (["--lf"], "--lf/--sw")):
        result = run(suite, *subset, "--npu-update-baseline")       # paths before the optional value
        result.stdout.fnmatch_lines([f"*unused entries not checked: not a full run ({reason})*"])
        assert "test_port" in json.loads(baseline_file(suite).read_text())["tests"]
    result = run(suite, "--npu-update-baseline")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([lit("*removed: TestGroup.test_sized[2] from __npu__/test_port.json (no such test)*"),
                                 "*removed: test_port from __npu__/test_port.json (no such test)*"])
    assert sorted(json.loads(baseline_file(suite).read_text())["tests"]) == [
        "TestGroup.test_sized[1]", "test_budgeted", "test_renamed"]


def test_collection_error_keeps_unused_entries(suite):
    recorded(suite)
    suite.makepyfile(test_broken="import no_such_module_anywhere\n")
    suite.makepyfile(test_port=TESTS.replace("def test_port(", "def test_other("))
    result = run(suite, "--npu-update-baseline", "--continue-on-collection-errors")
    result.stdout.fnmatch_lines(["*unused entries not checked: not a full run (collection error in test_broken.py)*"])
    assert "test_port" in json.loads(baseline_file(suite).read_text())["tests"]


def test_baseline_of_a_deleted_module_is_reported_and_removed_on_full_update(suite):
    recorded(suite)
    (suite.path / "__npu__" / "test_gone.json").write_text(baseline_file(suite).read_text())
    run(suite).stdout.fnmatch_lines(["*unused file: __npu__/test_gone.json (its test module is gone;*"])
    run(suite, "--npu-update-baseline").stdout.fnmatch_lines(["*removed file: __npu__/test_gone.json*"])
    assert not (suite.path / "__npu__" / "test_gone.json").exists()


def test_provenance_change_is_named_in_summary_and_failure(suite):
    recorded(suite)
    set_figures(suite, provenance={"compiler_version": "0.2.0", "model_sha256": "ab" * 32})
    result = run(suite)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([lit("*provenance changed: test_port.py::test_port [u55-256]: "
                                 "compiler_version: 0.1.0 -> 0.2.0*")])
    set_figures(suite, provenance={"compiler_version": "0.2.0", "model_sha256": "cd" * 32},
                test_port={"cycles": 1200})
    result = run(suite)
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines(["*regressed by +200 (+20%), tolerance exact; provenance changed: "
                                 "compiler_version: 0.1.0 -> 0.2.0, model_sha256: abababababab…ababab -> "
                                 "cdcdcdcdcdcd…cdcdcd*"])


@pytest.mark.parametrize(("content", "message"), [
    ("{ half a file", "is unreadable"),
    ('{"format": "pytest-npu-baseline", "version": 2, "tests": {}}', "has format version 2"),
])
def test_corrupt_or_too_new_file_fails_clearly_and_is_never_rewritten(suite, content, message):
    baseline_file(suite).parent.mkdir()
    baseline_file(suite).write_text(content)
    for extra in ([], ["--npu-update-baseline"]):
        result = run(suite, *extra)
        result.assert_outcomes(failed=4)
        result.stdout.fnmatch_lines([f"*baseline file {baseline_file(suite)} {message}*left untouched*"])
        assert baseline_file(suite).read_text() == content


def test_baseline_dir_option_and_ini(suite):
    run(suite, "--npu-update-baseline", "--npu-baseline-dir", "ci/baselines").assert_outcomes(passed=4)
    assert (suite.path / "ci" / "baselines" / "test_port.json").is_file()
    run(suite, "--npu-baseline-dir", "ci/baselines").assert_outcomes(passed=4)
    run(suite).assert_outcomes(failed=4)                  # the default location has nothing
    suite.makeini("[pytest]\nnpu_baseline_dir = ci/baselines\n")
    run(suite).assert_outcomes(passed=4)


def test_baselines_can_be_switched_off(suite):
    run(suite, "--npu-no-baseline").assert_outcomes(passed=4)
    suite.makeini("[pytest]\nnpu_baseline = false\n")
    run(suite).assert_outcomes(passed=4)
    assert not baseline_file(suite).exists()


def test_per_target_entries(suite):
    suite.makepyfile(test_port="""
import pytest

@pytest.mark.npu_target("u55-256", "edge-3core")
def test_port(measure, npu_target):
    measure()
""")
    run(suite, "--npu-update-baseline").assert_outcomes(passed=2)
    stored = json.loads(baseline_file(suite).read_text())["tests"]
    assert sorted(stored) == ["test_port[edge-3core]", "test_port[u55-256]"]
    assert list(stored["test_port[u55-256]"]) == ["u55-256"]


def test_a_target_no_longer_run_is_reported_but_kept(suite):
    suite.makepyfile(test_port="""
def test_port(measure):
    measure("u55-256")
    measure("edge-3core")
""")
    run(suite, "--npu-update-baseline").assert_outcomes(passed=1)
    suite.makepyfile(test_port="def test_port(measure):\n    measure('u55-256')\n")
    result = run(suite, "--npu-update-baseline")
    result.stdout.fnmatch_lines(["*not run: test_port on target edge-3core (entry kept in __npu__/test_port.json;*"])
    assert sorted(json.loads(baseline_file(suite).read_text())["tests"]["test_port"]) == ["edge-3core", "u55-256"]


def test_unreadable_marker_tolerance_fails_the_test_with_its_name(suite):
    recorded(suite)
    suite.makepyfile(test_port=TESTS.replace('compare={"latency_ms": "10%"}', 'compare={"latency_ms": "ten %"}'))
    result = run(suite)
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines(["*test_port.py::test_budgeted: npu_budget(compare={'latency_ms': 'ten %'})*"
                                 "cannot read tolerance*"])


# --------------------------------------------------------------------------------------------------
# history and exports from a pytest run


def test_history_records_every_run_with_release_labels(suite):
    recorded(suite)
    db = suite.path / ".npu" / "history.sqlite"
    assert not db.exists()                                # --npu-no-history in QUIET
    suite.runpytest("-p", "no:randomly", "--npu-release", "v1.0").assert_outcomes(passed=4)
    set_figures(suite, test_port={"cycles": 1100})
    suite.runpytest("-p", "no:randomly", "--npu-release", "v1.1").assert_outcomes(failed=1, passed=3)
    with sqlite3.connect(db) as connection:
        runs = connection.execute("SELECT release, host FROM runs ORDER BY id").fetchall()
        args = json.loads(connection.execute("SELECT extra FROM runs ORDER BY id").fetchone()[0])["args"]
        cycles = connection.execute(
            "SELECT runs.release, metrics.value FROM metrics JOIN records ON records.id = metrics.record_id "
            "JOIN runs ON runs.id = records.run_id WHERE records.test = 'test_port' AND metrics.name = 'cycles'"
        ).fetchall()
        layers = connection.execute("SELECT COUNT(*) FROM layers").fetchone()[0]
    assert [release for release, _ in runs] == ["v1.0", "v1.1"] and all(host for _, host in runs)
    assert args[:4] == ["-p", "no:randomly", "--npu-release", "v1.0"]     # pytester adds --basetemp
    assert cycles == [("v1.0", 1000.0), ("v1.1", 1100.0)] and layers == 8
    custom = suite.path / "elsewhere.sqlite"
    suite.runpytest("-p", "no:randomly", "--npu-history", str(custom), "--npu-no-baseline")
    assert custom.is_file()
    suite.makeini("[pytest]\nnpu_history = off\n")
    db.unlink()
    suite.runpytest("-p", "no:randomly").assert_outcomes(passed=3, failed=1)
    assert not db.exists()
    suite.makeini("[pytest]\nnpu_history = runs/h.sqlite\n")
    suite.runpytest("-p", "no:randomly").assert_outcomes(passed=3, failed=1)
    assert (suite.path / "runs" / "h.sqlite").is_file()


def test_a_corrupt_history_database_fails_the_run_and_is_left_alone(suite):
    recorded(suite)
    junk = suite.path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 64)
    result = suite.runpytest("-p", "no:randomly", "--npu-history", str(junk))
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*error: history database {junk} is unreadable*left untouched*"])
    assert junk.read_bytes() == b"not sqlite at all" * 64


def test_exports_from_a_run(suite):
    recorded(suite)
    result = run(suite, "--npu-benchmark-json", "out/bench.json", "--npu-github-benchmark", "out/small.json",
                 "--npu-github-benchmark-bigger", "out/big.json")
    result.assert_outcomes(passed=4)
    bench = json.loads((suite.path / "out" / "bench.json").read_text())
    assert len(bench["benchmarks"]) == 4
    small = json.loads((suite.path / "out" / "small.json").read_text())
    big = json.loads((suite.path / "out" / "big.json").read_text())
    assert {e["name"] for e in big} == {"test_port [u55-256] sqnr_db"}
    assert "test_port [u55-256] cycles" in {e["name"] for e in small}


# --------------------------------------------------------------------------------------------------
# xdist: workers measure, the controller alone writes


def test_xdist_writes_the_same_bytes_as_a_serial_run(suite):
    """One -n 2 update run must equal a serial one byte for byte, including removing an unused entry
    (which needs the collected ids that only the workers see)."""
    recorded(suite)
    before_bytes = baseline_file(suite).read_bytes()
    suite.makepyfile(test_port=TESTS.replace("[1, 2]", "[1]"))
    serial = run(suite, "--npu-update-baseline")
    serial.assert_outcomes(passed=3)
    serial.stdout.fnmatch_lines([lit("*removed: TestGroup.test_sized[2]*")])
    serial_bytes = baseline_file(suite).read_bytes()
    baseline_file(suite).write_bytes(before_bytes)
    parallel = suite.runpytest_subprocess("-p", "no:randomly", "-n", "2", "--npu-update-baseline",
                                          "--npu-history", "h.sqlite")
    parallel.assert_outcomes(passed=3)
    parallel.stdout.fnmatch_lines([lit("*removed: TestGroup.test_sized[2]*")])
    assert baseline_file(suite).read_bytes() == serial_bytes != before_bytes
    assert sorted(p.name for p in baseline_file(suite).parent.iterdir()) == ["test_port.json"]   # no temp files
    with sqlite3.connect(suite.path / "h.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1          # controller only
        assert connection.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 3


# --------------------------------------------------------------------------------------------------
# the real pipeline: a tiny QDQ model compiled and emulated (fixtures from tests/harness/conftest.py)

REAL = '''
import pytest

@pytest.mark.npu_budget(latency_ms=10, compare={"mse": "50%"})
def test_tiny(npu, pair, x):
    npu.run(pair, x, reference="float")
'''


def test_real_figures_are_recorded_reproduced_and_gated(npu_dir):
    npu_dir.makeini("[pytest]\nnpu_host_runs = 0\n")
    npu_dir.makepyfile(test_real=REAL)
    path = npu_dir.path / "__npu__" / "test_real.json"
    npu_dir.runpytest("-p", "no:randomly", "--npu-update-baseline", "--npu-release", "v1").assert_outcomes(passed=1)
    document = json.loads(path.read_text())
    entry = document["tests"]["test_tiny"]["u55-256"]
    assert entry["metrics"]["cycles"] > 0 and entry["metrics"]["mse"] >= 0
    assert {"model_sha256", "target_hash", "compiler_version"} <= set(entry["provenance"])
    recorded_bytes = path.read_bytes()
    npu_dir.runpytest("-p", "no:randomly", "--npu-release", "v2").assert_outcomes(passed=1)   # deterministic
    assert path.read_bytes() == recorded_bytes
    entry["metrics"]["cycles"] -= 1                       # pretend the last release was one cycle faster
    path.write_text(json.dumps(document))
    result = npu_dir.runpytest("-p", "no:randomly", "--npu-no-history")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["cycles*regressed by +1 (*), tolerance exact*"])
    with sqlite3.connect(npu_dir.path / ".npu" / "history.sqlite") as connection:
        releases = connection.execute("SELECT release FROM runs ORDER BY id").fetchall()
        layers = connection.execute("SELECT COUNT(*) FROM layers").fetchone()[0]
    assert releases == [("v1",), ("v2",)] and layers > 0
