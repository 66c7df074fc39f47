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
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("COLUMNS", "250")        # one summary line per message (wrapping has its own test)
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
        "pytest test_port.py::test_port --npu-update-baseline-new*",
        "*4 missing against baselines*",
        "4 test x target(s) have no baseline; record every missing one (and nothing else) with: "
        "pytest -p no:randomly --npu-no-history --basetemp=* --npu-update-baseline-new"])
    assert not baseline_file(suite).exists()
    # the one command does what it says
    run(suite, "--npu-update-baseline-new").assert_outcomes(passed=4)
    run(suite).assert_outcomes(passed=4)


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
        "*3 passed, 1 regressed against baselines*",
        "regressed: test_port.py::test_port [[]u55-256[]]",
        "    cycles*1000 -> 1001*+1 (+0.1%)*tolerance exact*regressed",
        "    sqnr_db*30 -> 29*-1 (-3.33%)*tolerance 0.01%*regressed"])


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
    result.stdout.fnmatch_lines([lit("improved: test_port.py::test_port [u55-256]"),
                                 "    cycles*1000 -> 900*-100 (-10%)*tolerance exact*improved"])
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
    result = run(suite, "--npu-update-baseline-new")
    result.assert_outcomes(failed=1, passed=3)             # test_budgeted regressed: new-only does not hide it
    result.stdout.fnmatch_lines([lit("*recorded: test_port.py::test_port [u55-256]*")])
    stored = json.loads(baseline_file(suite).read_text())["tests"]
    assert stored["test_port"]["u55-256"]["metrics"]["cycles"] == 1000
    assert stored["test_budgeted"]["u55-256"]["metrics"]["latency_ms"] == 0.008


def test_bad_update_flags_and_bad_tolerances_are_usage_errors(suite):
    result = run(suite, "--npu-update-baseline", "--npu-update-baseline-new")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--npu-update-baseline records every test that ran, --npu-update-baseline-new "
                                 "only missing entries: give one of them*"])
    result = run(suite, "--npu-compare-fail", "cycles=5%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--npu-compare-fail: 'cycles=5%' is not METRIC:AMOUNT*"])
    result = run(suite, "--npu-compare-fail", "cylces:5%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no figure is called 'cylces'. Did you mean 'cycles'?*"])
    suite.makeini("[pytest]\nnpu_compare_fail = latency_ms:fast\n")
    result = run(suite)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini npu_compare_fail 'latency_ms:fast': cannot read tolerance*"])


def test_the_update_flag_takes_no_value_so_a_path_after_it_is_a_path(suite):
    suite.makepyfile(test_other="def test_other(measure):\n    pass\n")
    result = run(suite, "--npu-update-baseline", "test_port.py")
    result.assert_outcomes(passed=4)
    assert sorted(json.loads(baseline_file(suite).read_text())["tests"]) == [
        "TestGroup.test_sized[1]", "TestGroup.test_sized[2]", "test_budgeted", "test_port"]


def _rename_and_shrink(suite: pytest.Pytester) -> None:
    """test_port becomes test_renamed and test_sized loses its [2]: two entries no test uses."""
    suite.makepyfile(test_port=TESTS.replace("def test_port(", "def test_renamed(").replace('[1, 2]', '[1]'))
    set_figures(suite)
    document = json.loads((suite.path / "figures.json").read_text())
    document["metrics"]["test_renamed"] = document["metrics"]["test_port"]
    (suite.path / "figures.json").write_text(json.dumps(document))


def test_stale_entries_are_reported_kept_by_updates_and_removed_only_by_a_whole_suite_prune(suite):
    recorded(suite)
    _rename_and_shrink(suite)
    hint = "remove with a whole-suite run: pytest --npu-prune-baseline"
    result = run(suite)
    result.stdout.fnmatch_lines([lit(f"stale: TestGroup.test_sized[2] in __npu__/test_port.json (no such test; {hint})"),
                                 lit(f"stale: test_port in __npu__/test_port.json (no such test; {hint})")])
    assert "stale:" not in run(suite, "-k", "budgeted").stdout.str()      # a subset judges nothing stale
    result = run(suite, "--npu-update-baseline")                         # a whole-suite update never removes
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([lit("recorded: test_port.py::test_renamed [u55-256] in __npu__/test_port.json"),
                                 "stale: TestGroup.test_sized[[]2[]] in*", "stale: test_port in*"])
    assert {"test_port", "TestGroup.test_sized[2]"} <= set(json.loads(baseline_file(suite).read_text())["tests"])
    for subset, reason in ((["-k", "renamed or budgeted"], "-k renamed or budgeted"),
                           (["-m", "not slow"], "-m not slow"),
                           (["test_port.py::test_renamed"], "node ids given"),
                           (["test_port.py"], "paths given (test_port.py)"),
                           (["--deselect", "test_port.py::test_budgeted"], "--deselect given"),
                           (["--lf"], "--lf/--sw"),
                           (["--npu-target", "edge-3core"], "--npu-target leaves out u55-256")):
        before = baseline_file(suite).read_bytes()
        result = run(suite, *subset, "--npu-prune-baseline")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, subset
        result.stderr.fnmatch_lines([f"*--npu-prune-baseline removes the baseline entries no test uses, which only "
                                     f"a run of the whole suite can tell; this run selects ({reason})*"])
        assert baseline_file(suite).read_bytes() == before
    result = run(suite, "--npu-prune-baseline")
    result.assert_outcomes(passed=3)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([lit("removed: TestGroup.test_sized[2] from __npu__/test_port.json (no such test)"),
                                 "removed: test_port from __npu__/test_port.json (no such test)"])
    assert sorted(json.loads(baseline_file(suite).read_text())["tests"]) == [
        "TestGroup.test_sized[1]", "test_budgeted", "test_renamed"]


def test_a_prune_that_turns_out_partial_removes_nothing_and_fails(suite):
    """Selection known only after collection (a collection error, an early stop) still blocks a prune."""
    recorded(suite)
    _rename_and_shrink(suite)
    suite.makepyfile(test_broken="import no_such_module_anywhere\n")
    result = run(suite, "--npu-prune-baseline", "--continue-on-collection-errors")
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*error: nothing pruned: --npu-prune-baseline needs a run of the whole suite, and "
                                 "this run was not (collection error in test_broken.py)*"])
    (suite.path / "test_broken.py").unlink()
    set_figures(suite, test_budgeted={"cycles": 4001})               # the first failure stops the run
    result = run(suite, "--npu-prune-baseline", "-x")
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*nothing pruned*the run stopped early*"])
    assert "test_port" in json.loads(baseline_file(suite).read_text())["tests"]


def test_baseline_of_a_deleted_module_is_reported_and_removed_by_a_prune(suite):
    recorded(suite)
    (suite.path / "__npu__" / "test_gone.json").write_text(baseline_file(suite).read_text())
    run(suite).stdout.fnmatch_lines(["*stale file: __npu__/test_gone.json (its test module is gone;*"])
    run(suite, "--npu-update-baseline").stdout.fnmatch_lines(["*stale file: __npu__/test_gone.json*"])
    assert (suite.path / "__npu__" / "test_gone.json").exists()
    run(suite, "--npu-prune-baseline").stdout.fnmatch_lines(["*removed file: __npu__/test_gone.json*"])
    assert not (suite.path / "__npu__" / "test_gone.json").exists()


TARGETED = """
def test_port(measure, npu_target):
    measure()

def test_other(measure, npu_target):
    measure()
"""


@pytest.fixture
def targeted(suite: pytest.Pytester) -> pytest.Pytester:
    """Two tests parametrised over the configured targets (ini npu_targets), recorded on both."""
    suite.makepyfile(test_port=TARGETED)
    document = json.loads((suite.path / "figures.json").read_text())
    document["metrics"]["test_other"] = {"cycles": 7, "latency_ms": 1.4e-05}
    (suite.path / "figures.json").write_text(json.dumps(document))
    suite.makeini("[pytest]\nnpu_targets = u55-256 edge-3core\n")
    run(suite, "--npu-update-baseline").assert_outcomes(passed=4)
    return suite


def _entries(suite: pytest.Pytester, name: str = "test_port.json") -> dict:
    return json.loads((suite.path / "__npu__" / name).read_text())["tests"]


def test_adding_a_target_keeps_every_other_targets_entries(targeted):
    """The reported loss: `--npu-target=acme-nano.toml --npu-update-baseline` removed every entry of the
    configured targets. Now it records the new target's entries and touches nothing else."""
    import pytest_npu.targets

    builtin = Path(pytest_npu.targets.__file__).with_name("builtin") / "u65-512.toml"
    (targeted.path / "acme-nano.toml").write_text(builtin.read_text().replace('name = "u65-512"',
                                                                              'name = "acme-nano"'))
    before = _entries(targeted)
    result = run(targeted, "--npu-target=acme-nano.toml", "--npu-update-baseline")
    result.assert_outcomes(passed=2)
    assert "stale" not in result.stdout.str() and "removed" not in result.stdout.str()
    after = _entries(targeted)
    assert {key: value for key, value in after.items() if "acme-nano" not in key} == before
    assert sorted(after) == ["test_other[acme-nano]", "test_other[edge-3core]", "test_other[u55-256]",
                             "test_port[acme-nano]", "test_port[edge-3core]", "test_port[u55-256]"]
    run(targeted).assert_outcomes(passed=4)                  # the configured targets still compare clean


def test_updating_with_k_or_one_file_touches_only_what_ran(targeted):
    targeted.makepyfile(test_b="def test_b(measure):\n    measure()\n")
    document = json.loads((targeted.path / "figures.json").read_text())
    document["metrics"]["test_b"] = {"cycles": 3}
    document["metrics"]["test_port"]["cycles"] = 1111                # moved: only test_port may be rewritten
    document["metrics"]["test_other"]["cycles"] = 8
    (targeted.path / "figures.json").write_text(json.dumps(document))
    before = _entries(targeted)
    run(targeted, "-k", "not test_other and not test_b", "--npu-update-baseline").assert_outcomes(passed=2)
    after = _entries(targeted)
    assert after["test_port[u55-256]"]["u55-256"]["metrics"]["cycles"] == 1111
    assert {k: v for k, v in after.items() if k.startswith("test_other")} == \
        {k: v for k, v in before.items() if k.startswith("test_other")}
    port_bytes = (targeted.path / "__npu__" / "test_port.json").read_bytes()
    run(targeted, "test_b.py", "--npu-update-baseline").assert_outcomes(passed=1)
    assert (targeted.path / "__npu__" / "test_port.json").read_bytes() == port_bytes
    assert sorted(_entries(targeted, "test_b.json")) == ["test_b"]


def test_under_xdist_a_target_subset_and_k_keep_every_other_entry(targeted):
    before = _entries(targeted)
    result = targeted.runpytest_subprocess(*QUIET, "-n", "2", "--npu-target=u65-512", "--npu-update-baseline")
    result.assert_outcomes(passed=2)
    after = _entries(targeted)
    assert {key: value for key, value in after.items() if "u65-512" not in key} == before
    document = json.loads((targeted.path / "figures.json").read_text())
    document["metrics"]["test_other"]["cycles"] = 9
    (targeted.path / "figures.json").write_text(json.dumps(document))
    result = targeted.runpytest_subprocess(*QUIET, "-n", "2", "-k", "test_other and u55", "--npu-update-baseline")
    result.assert_outcomes(passed=1)
    final = _entries(targeted)
    assert final["test_other[u55-256]"]["u55-256"]["metrics"]["cycles"] == 9
    assert {k: v for k, v in final.items() if k != "test_other[u55-256]"} == \
        {k: v for k, v in after.items() if k != "test_other[u55-256]"}


def test_provenance_change_is_named_in_summary_and_failure(suite):
    recorded(suite)
    set_figures(suite, provenance={"compiler_version": "0.2.0", "model_sha256": "ab" * 32})
    result = run(suite)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["4 passed against baselines",
                                 "provenance changed for all 4 test x targets: compiler_version: 0.1.0 -> 0.2.0"])
    assert result.stdout.str().count("provenance changed") == 1            # stated once, not per test
    set_figures(suite, provenance={"compiler_version": "0.2.0", "model_sha256": "cd" * 32},
                test_port={"cycles": 1200, "latency_ms": 0.0024})
    result = run(suite)
    result.assert_outcomes(failed=1, passed=3)
    result.stdout.fnmatch_lines(["cycles * regressed by +200 (+20%), tolerance exact",
                                 "latency_ms * regressed by +0.0004 (+20%), tolerance exact",
                                 "provenance changed since the baseline: compiler_version: 0.1.0 -> 0.2.0, "
                                 "model_sha256: abababababab…ababab -> cdcdcdcdcdcd…cdcdcd"])
    # once, under the table (pytest's short summary repeats the whole message when CI is set)
    report = result.stdout.str().split("short test summary info")[0]
    assert report.count("provenance changed since the baseline") == 1


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


def test_a_target_a_test_no_longer_runs_on_is_reported_kept_and_pruned_on_request(suite):
    suite.makepyfile(test_port="""
def test_port(measure):
    measure("u55-256")
    measure("edge-3core")
""")
    run(suite, "--npu-update-baseline").assert_outcomes(passed=1)
    suite.makepyfile(test_port="def test_port(measure):\n    measure('u55-256')\n")
    result = run(suite, "--npu-update-baseline")
    result.stdout.fnmatch_lines(["*stale: test_port on target edge-3core in __npu__/test_port.json (the test passed "
                                 "without running there; remove with a whole-suite run: pytest --npu-prune-baseline)*"])
    assert sorted(json.loads(baseline_file(suite).read_text())["tests"]["test_port"]) == ["edge-3core", "u55-256"]
    result = run(suite, "--npu-prune-baseline")
    result.stdout.fnmatch_lines(["*removed: test_port on target edge-3core from __npu__/test_port.json*"])
    assert sorted(json.loads(baseline_file(suite).read_text())["tests"]["test_port"]) == ["u55-256"]


def test_unreadable_marker_tolerance_is_a_collection_error_naming_the_test(suite):
    recorded(suite)
    suite.makepyfile(test_port=TESTS.replace('compare={"latency_ms": "10%"}', 'compare={"latency_ms": "ten %"}'))
    result = run(suite)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_port.py::test_budgeted: npu_budget(compare=...): {'latency_ms': 'ten %'}: "
                                 "cannot read tolerance*"])
    suite.makepyfile(test_port=TESTS.replace('compare={"latency_ms": "10%"}', 'compare={"latncy_ms": "off"}'))
    run(suite).stdout.fnmatch_lines(["*no figure is called 'latncy_ms'. Did you mean 'latency_ms'?*"])


def test_marker_off_and_wildcard_share_the_language(suite):
    recorded(suite)
    suite.makepyfile(test_port=TESTS.replace('compare={"latency_ms": "10%"}', 'compare={"*": "off"}'))
    set_figures(suite, test_budgeted={"cycles": 4400, "latency_ms": 0.01})
    result = run(suite)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["changed: test_port.py::test_budgeted [[]u55-256[]]",
                                 "    cycles*4000 -> 4400*+400 (+10%)*tolerance off*changed (not gated)"])


def test_help_states_the_tolerance_language_and_its_defaults(suite):
    text = " ".join(run(suite, "--help").stdout.str().split())
    assert "--npu-compare-fail=METRIC:AMOUNT" in text and "--npu-update-baseline-new" in text
    assert "METRIC:AMOUNT with AMOUNT N% (relative), a number (absolute), exact or off" in text
    assert "defaults: every figure exact, except mse, max_abs_err, sqnr_db 0.01%; cosine 0.001%" in text
    assert "--npu-prune-baseline" in text


def test_markdown_summaries_are_appended_so_two_runs_leave_both(suite):
    recorded(suite)
    summary = suite.path / "step_summary.md"
    summary.write_text("# build\n")
    run(suite, "--npu-markdown", str(summary)).assert_outcomes(passed=4)
    set_figures(suite, test_port={"cycles": 1001})
    run(suite, "--npu-markdown", str(summary)).assert_outcomes(passed=3, failed=1)
    text = summary.read_text()
    assert text.startswith("# build\n\n## pytest-npu\n") and text.count("## pytest-npu") == 2
    assert "0 with breaches" in text and "1 with breaches" in text


def test_the_summary_fits_a_narrow_terminal_and_states_provenance_once(suite, monkeypatch):
    recorded(suite)
    monkeypatch.setenv("COLUMNS", "80")
    set_figures(suite, provenance={"compiler_version": "0.2.0+" + "f" * 40, "model_sha256": "cd" * 32},
                test_port={"cycles": 1200}, test_sized={"cycles": 11})
    result = run(suite)
    result.assert_outcomes(failed=3, passed=1)
    lines = result.stdout.str().splitlines()
    section = lines[next(i for i, line in enumerate(lines) if "npu baselines" in line) + 1:]
    section = section[:next(i for i, line in enumerate(section) if line.startswith("=="))]
    assert section and all(len(line) <= 80 or " " not in line.strip() for line in section), section
    assert sum("provenance changed for all 4 test x targets" in line for line in section) == 1
    assert sum(line.strip().startswith("compiler_version") for line in section) <= 1


# --------------------------------------------------------------------------------------------------
# exports from a pytest run (the history's own tests: tests/history/)


def test_exports_from_a_run(suite):
    recorded(suite)
    result = run(suite, "--npu-benchmark-json", "out/bench.json", "--npu-github-benchmark", "out/small.json",
                 "--npu-github-benchmark-bigger", "out/big.json")
    result.assert_outcomes(passed=4)
    bench = json.loads((suite.path / "out" / "bench.json").read_text())
    assert len(bench["benchmarks"]) == 4
    small = json.loads((suite.path / "out" / "small.json").read_text())
    big = json.loads((suite.path / "out" / "big.json").read_text())
    assert {e["name"] for e in big} == {"test_port.py::test_port [u55-256] sqnr_db"}
    assert "test_port.py::test_port [u55-256] cycles" in {e["name"] for e in small}


# --------------------------------------------------------------------------------------------------
# xdist: workers measure, the controller alone writes


def test_xdist_writes_the_same_bytes_as_a_serial_run(suite):
    """One -n 2 update + prune run must equal a serial one byte for byte, including removing a stale entry
    (which needs the collected ids that only the workers see)."""
    recorded(suite)
    before_bytes = baseline_file(suite).read_bytes()
    suite.makepyfile(test_port=TESTS.replace("[1, 2]", "[1]"))
    set_figures(suite, test_port={"cycles": 999})
    serial = run(suite, "--npu-update-baseline", "--npu-prune-baseline")
    serial.assert_outcomes(passed=3)
    serial.stdout.fnmatch_lines([lit("*removed: TestGroup.test_sized[2]*")])
    serial_bytes = baseline_file(suite).read_bytes()
    baseline_file(suite).write_bytes(before_bytes)
    parallel = suite.runpytest_subprocess("-p", "no:randomly", "-n", "2", "--npu-update-baseline",
                                          "--npu-prune-baseline", "--npu-history", "h.sqlite")
    parallel.assert_outcomes(passed=3)
    parallel.stdout.fnmatch_lines([lit("*removed: TestGroup.test_sized[2]*")])
    assert baseline_file(suite).read_bytes() == serial_bytes != before_bytes
    assert sorted(p.name for p in baseline_file(suite).parent.iterdir()) == ["test_port.json"]   # no temp files
    with sqlite3.connect(suite.path / "h.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM npu_runs").fetchone()[0] == 1      # controller only
        assert connection.execute("SELECT COUNT(*) FROM npu_records").fetchone()[0] == 3


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
        releases = connection.execute("SELECT release FROM npu_runs ORDER BY id").fetchall()
        layers = connection.execute("SELECT COUNT(*) FROM npu_layers").fetchone()[0]
    assert releases == [("v1",), ("v2",)] and layers > 0
