"""pytest hooks for committed baselines and benchmark exports (the run history: ``plugin_history.py``).

Loaded by ``plugin.py`` through ``pytest_plugins``. Checks run where the test runs (an xdist worker
only reads baseline files); every file is written by the controller alone, in
``pytest_npu_session_finish``, from the records the workers sent, so ``-n 2`` writes the same bytes
as a serial run.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..errors import BaselineError, BudgetUsageError, NpuError
from . import baseline as bl
from .tolerances import Comparison, Tolerances, compare_metrics, option_help

SESSION_KEY: pytest.StashKey[BaselineSession] = pytest.StashKey()
HEADLINE_METRICS = ("cycles", "latency_ms", "energy_mj", "mse")
UPDATE_ALL, UPDATE_NEW = "--npu-update-baseline", "--npu-update-baseline-new"
PRUNE = "--npu-prune-baseline"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("npu", "NPU testing (pytest-npu)")
    group.addoption("--npu-baseline-dir", metavar="DIR", default=None,
                    help="directory for committed baselines, relative to rootdir (default: __npu__/ beside "
                         "each test module); ini: npu_baseline_dir")
    group.addoption("--npu-compare-fail", metavar="METRIC:AMOUNT", action="append", default=[],
                    help=option_help("tolerance of a baseline comparison, e.g. latency_ms:2%, mse:1e-4, cycles:off "
                                     "(beats ini npu_compare_fail; a test's npu_budget(compare=...) beats both)"))
    group.addoption(UPDATE_ALL, action="store_true", default=False,
                    help="record the figures of every test x target that ran and passed; every other entry is "
                         "left as it is. Never records a value that breaks the test's npu_budget")
    group.addoption(UPDATE_NEW, action="store_true", default=False,
                    help="record only test x targets that have no baseline entry yet; the others are compared")
    group.addoption(PRUNE, action="store_true", default=False,
                    help="remove baseline entries, targets and files that no test uses; only on a run of the "
                         "whole suite (no -k, -m, node ids, paths, --deselect or --npu-target subset)")
    group.addoption("--npu-fail-on-improvement", action="store_true", default=None,
                    help="fail tests that improved beyond tolerance until their baseline is refreshed; "
                         "ini: npu_fail_on_improvement")
    group.addoption("--npu-no-baseline", action="store_true", default=False,
                    help="do not compare against (or require) baselines; ini: npu_baseline = false")
    group.addoption("--npu-benchmark-json", metavar="PATH", default=None,
                    help="write the figures as pytest-benchmark JSON (for github-action-benchmark tool: pytest)")
    group.addoption("--npu-github-benchmark", metavar="PATH", default=None,
                    help="write github-action-benchmark customSmallerIsBetter JSON (costs and errors)")
    group.addoption("--npu-github-benchmark-bigger", metavar="PATH", default=None,
                    help="write github-action-benchmark customBiggerIsBetter JSON (sqnr_db, cosine, top1)")
    parser.addini("npu_baseline_dir", "directory for committed baselines (relative to rootdir)", default="")
    parser.addini("npu_compare_fail", "baseline tolerances METRIC:AMOUNT (N%, ABS, exact, off)", type="args",
                  default=[])
    parser.addini("npu_fail_on_improvement", "fail on improvements beyond tolerance", type="bool", default=False)
    parser.addini("npu_baseline", "compare against committed baselines", type="bool", default=True)


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[SESSION_KEY] = BaselineSession.from_config(config)
    except BudgetUsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(_SelectionObserver(config), "npu-baseline-selection")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistCollection(config), "npu-baseline-xdist")


# --------------------------------------------------------------------------------------------------
# the session object


@dataclass
class Outcome:
    """One record's verdict against its baseline, kept for the summary and the writers."""

    nodeid: str
    target: str
    file: Path
    comparisons: list[Comparison] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)
    missing: bool = False


@dataclass
class BaselineSession:
    """Options read once, baseline files cached per module, and what happened for the summary."""

    rootdir: Path
    baseline_dir: str | None
    tolerances: Tolerances                                           # ini, then --npu-compare-fail
    update: str | None                                               # "all" | "new" | None
    prune: bool
    fail_on_improvement: bool
    enabled: bool
    release: str                                                     # for the exports' run facts
    exports: dict[str, str | None]
    is_worker: bool
    invocation: list[str] = field(default_factory=list)              # the command-line arguments
    files: dict[str, bl.BaselineFile] = field(default_factory=dict)
    broken: dict[str, BaselineError] = field(default_factory=dict)
    collected: dict[str, set[str]] = field(default_factory=dict)     # module -> test keys
    subset_reasons: list[str] = field(default_factory=list)          # why this run is not the whole suite
    lines: list[str] = field(default_factory=list)                   # terminal summary

    @classmethod
    def from_config(cls, config: pytest.Config) -> BaselineSession:
        option = config.option
        if option.npu_update_baseline and option.npu_update_baseline_new:
            raise BudgetUsageError(f"{UPDATE_ALL} records every test that ran, {UPDATE_NEW} only missing "
                                   f"entries: give one of them")
        tolerances = Tolerances.parse(option.npu_compare_fail or [], where="--npu-compare-fail").over(
            Tolerances.parse(config.getini("npu_compare_fail"), where="ini npu_compare_fail"))
        fail_on_improvement = option.npu_fail_on_improvement
        session = cls(
            rootdir=Path(config.rootpath),
            baseline_dir=option.npu_baseline_dir or config.getini("npu_baseline_dir") or None,
            tolerances=tolerances,
            update="all" if option.npu_update_baseline else "new" if option.npu_update_baseline_new else None,
            prune=bool(option.npu_prune_baseline),
            fail_on_improvement=bool(config.getini("npu_fail_on_improvement")
                                     if fail_on_improvement is None else fail_on_improvement),
            enabled=not option.npu_no_baseline and bool(config.getini("npu_baseline")),
            release=option.npu_release or "",  # registered by plugin_history
            exports={"benchmark_json": option.npu_benchmark_json, "github": option.npu_github_benchmark,
                     "github_bigger": option.npu_github_benchmark_bigger},
            is_worker=hasattr(config, "workerinput"),
            invocation=[str(arg) for arg in config.invocation_params.args],
            subset_reasons=selection_reasons(config),
        )
        if session.prune and session.subset_reasons and not session.is_worker:
            raise BudgetUsageError(
                f"{PRUNE} removes the baseline entries no test uses, which only a run of the whole suite can "
                f"tell; this run selects ({'; '.join(session.subset_reasons)}). Run `pytest {PRUNE}` without "
                f"selecting tests, paths or targets")
        return session

    # ---- files

    def path_for(self, module: str) -> Path:
        return bl.baseline_path(module, self.rootdir, self.baseline_dir)

    def file_for(self, module: str) -> bl.BaselineFile:
        """The module's baseline, read once per session; a broken file raises every time it is asked for."""
        if module in self.broken:
            raise self.broken[module]
        if module not in self.files:
            try:
                self.files[module] = bl.load_baseline(self.path_for(module), module)
            except BaselineError as exc:
                self.broken[module] = exc
                raise
        return self.files[module]

    # ---- checking one record

    def tolerances_for(self, record: Any) -> Tolerances:
        """The test's npu_budget(compare=...) over --npu-compare-fail over ini npu_compare_fail."""
        own = getattr(record, "tolerances", None) or {}
        return Tolerances.from_mapping(own, where=f"{record.nodeid}: npu_budget(compare=...)").over(self.tolerances)

    def judge(self, record: Any) -> Outcome:
        """Compare one record with its stored entry (raises BaselineError for a broken file)."""
        module, key = bl.split_nodeid(record.nodeid)
        baseline = self.file_for(record.module or module)
        outcome = Outcome(record.nodeid, record.target, baseline.path)
        entry = baseline.entry(key, record.target)
        if entry is None:
            outcome.missing = True
            return outcome
        stored = {name: bl.metric_value(value) for name, value in entry["metrics"].items()}
        outcome.comparisons = compare_metrics(_numbers(record.metrics), stored, self.tolerances_for(record))
        outcome.provenance = bl.provenance_changes(record.provenance, entry.get("provenance", {}))
        return outcome

    def breaches(self, item: pytest.Item, record: Any) -> list:
        """Rows for the failure table: missing entry, broken file, regressions (and opted-in improvements)."""
        from .verdict import Breach

        if not self.enabled and not self.update:
            return []
        try:
            outcome = self.judge(record)
        except (BaselineError, BudgetUsageError) as exc:   # also when updating: a broken file takes no entry
            return [Breach("baseline", None, math.nan, message=str(exc))]
        if self.update == "all" or not self.enabled:
            return []
        if outcome.missing:
            if self.update == "new":
                return []
            metric, value = _headline(record.metrics)
            return [Breach(metric, None, value, message=(
                f"no baseline for target {record.target} in {_rel(outcome.file, self.rootdir)}; record it with: "
                f"pytest {shlex.quote(record.nodeid)} {UPDATE_NEW} "
                f"(or gate on budgets only: --npu-no-baseline / ini npu_baseline = false)"))]
        context = ("provenance changed since the baseline: " + ", ".join(outcome.provenance)) \
            if outcome.provenance else ""
        rows = []
        for row in outcome.comparisons:
            judged = row.measured is not None and row.baseline is not None
            if judged and (row.status == "regressed" or (row.status == "improved" and self.fail_on_improvement)):
                verb = "regressed" if row.status == "regressed" else f"improved (refresh with {UPDATE_ALL})"
                rows.append(Breach(row.metric, None, float(row.measured or 0), baseline=row.baseline, delta=row.delta,
                                   message=f"{verb} by {row.delta_text}, tolerance {row.tolerance}", context=context))
        return rows

    # ---- the end of the session (controller only)

    def finish(self, session: pytest.Session, records: list) -> None:
        if self.is_worker:
            return
        if self.enabled or self.update:
            self._summarise(records)
        if self.update:
            self._update(records)
        if self.update or self.enabled or self.prune:
            self._check_stale(session, records)
        if self.update or self.prune:            # a comparing run never writes, whatever it read
            self._save()
        self._export(records, self.invocation)

    def _summarise(self, records: list) -> None:
        """Counts, one block per test x target whose figures moved, provenance changes stated once."""
        counts = {"passed": 0, "regressed": 0, "improved": 0, "missing": 0}
        moved: list[tuple[str, str, list[Comparison]]] = []
        provenance: list[tuple[str, list[str]]] = []
        for record in records:
            try:
                outcome = self.judge(record)
            except (BaselineError, BudgetUsageError):   # already a failure row of that test
                continue
            if outcome.missing:
                counts["missing"] += 1
                continue
            statuses = {row.status for row in outcome.comparisons}
            key = "regressed" if "regressed" in statuses else "improved" if "improved" in statuses else "passed"
            counts[key] += 1
            shown = [row for row in outcome.comparisons if row.status != "ok"]
            if shown:
                moved.append((key if key != "passed" else "changed", f"{record.nodeid} [{record.target}]", shown))
            if outcome.provenance:
                provenance.append((f"{record.nodeid} [{record.target}]", outcome.provenance))
        if records:
            self.lines.append(", ".join(f"{count} {name}" for name, count in counts.items() if count)
                              + " against baselines" + (f" (update mode: {self.update})" if self.update else ""))
        for verdict, where, rows in sorted(moved, key=lambda item: (item[0] != "regressed", item[1])):
            self.lines.append(f"{verdict}: {where}")
            self.lines += ["    " + line for line in _comparison_table(rows).splitlines()]
        self.lines += _shared_provenance(provenance, judged=sum(counts.values()) - counts["missing"])
        for _module, exc in sorted(self.broken.items()):
            self.lines.append(f"error: {exc}")
        if counts["missing"] and not self.update:
            command = shlex.join(["pytest", *[arg for arg in self.invocation if arg != PRUNE], UPDATE_NEW])
            self.lines.append(f"{counts['missing']} test x target(s) have no baseline; record every missing one "
                              f"(and nothing else) with: {command}")

    def _update(self, records: list) -> None:
        from .verdict import check_budgets

        for record in records:
            module, key = bl.split_nodeid(record.nodeid)
            where = f"{record.nodeid} [{record.target}]"
            try:
                baseline = self.file_for(record.module or module)
            except BaselineError:
                continue                       # reported in the summary; a broken file is never rewritten
            old = baseline.entry(key, record.target)
            if self.update == "new" and old is not None:
                continue
            broken = check_budgets(_numbers(record.metrics), dict(record.budgets or {}))
            if broken:
                self.lines.append(f"refused: {where}: breaks its npu_budget ("
                                  + ", ".join(f"{b.metric}={b.measured:.6g} vs {b.limit:g}" for b in broken)
                                  + "); an update never loosens a budget")
                continue
            if record.outcome and record.outcome != "passed":
                self.lines.append(f"refused: {where}: the test {record.outcome}; only passing tests are recorded")
                continue
            baseline.set_entry(key, record.target, _numbers(record.metrics), record.provenance)
            if baseline.entry(key, record.target) != old:
                self.lines.append(f"{'recorded' if old is None else 'updated'}: {where} in "
                                  f"{_rel(baseline.path, self.rootdir)}")

    def _stale_tests(self) -> list[tuple[bl.BaselineFile, str]]:
        """Entries of collected modules whose test is gone (renamed, deleted, de-parametrised)."""
        stale = []
        for module, keys in sorted(self.collected.items()):
            try:
                baseline = self.file_for(module)
            except BaselineError:
                continue
            stale += [(baseline, key) for key in sorted(baseline.tests) if key not in keys]
        return stale

    def _stale_targets(self, records: list) -> list[tuple[bl.BaselineFile, str, str]]:
        """Targets stored for a test that passed, on a whole-suite run, on other targets only."""
        ran: dict[tuple[str, str], set[str]] = {}
        for record in records:
            if record.outcome in ("", "passed"):
                module, key = bl.split_nodeid(record.nodeid)
                ran.setdefault((record.module or module, key), set()).add(record.target)
        stale = []
        for (module, key), targets in sorted(ran.items()):
            baseline = self.files.get(module)
            if baseline is not None:
                stale += [(baseline, key, target) for target in sorted(set(baseline.tests.get(key, {})) - targets)]
        return stale

    def _orphan_files(self) -> list[Path]:
        """Baseline files beside collected modules whose test module no longer exists."""
        directories = {self.path_for(module).parent for module in self.collected}
        orphans = []
        for directory in sorted(directories):
            for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
                if not bl.module_of_baseline(path, self.rootdir, self.baseline_dir).exists():
                    orphans.append(path)
        return orphans

    def _check_stale(self, session: pytest.Session, records: list) -> None:
        """Report entries no test uses on a whole-suite run; remove them only with --npu-prune-baseline.

        On any other run (-k, -m, node ids, paths, a target subset, --lf, deselection, collection
        errors, an early stop) the tests that ran are not the suite, so nothing is judged stale.
        """
        reasons = self.subset_reasons + _run_reasons(session)
        if reasons:
            if self.prune:
                self.lines.append(f"error: nothing pruned: {PRUNE} needs a run of the whole suite, and this run "
                                  f"was not ({'; '.join(reasons)})")
                if session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.USAGE_ERROR
            return
        remove = self.prune
        hint = f"remove with a whole-suite run: pytest {PRUNE}"
        for baseline, key in self._stale_tests():
            where = _rel(baseline.path, self.rootdir)
            if remove:
                baseline.remove(key)
                self.lines.append(f"removed: {key} from {where} (no such test)")
            else:
                self.lines.append(f"stale: {key} in {where} (no such test; {hint})")
        for baseline, key, target in self._stale_targets(records):
            where = _rel(baseline.path, self.rootdir)
            if remove:
                baseline.remove(key, target)
                self.lines.append(f"removed: {key} on target {target} from {where} (the test no longer runs there)")
            else:
                self.lines.append(f"stale: {key} on target {target} in {where} (the test passed without running "
                                  f"there; {hint})")
        for path in self._orphan_files():
            if remove:
                path.unlink()
                self.lines.append(f"removed file: {_rel(path, self.rootdir)} (its test module is gone)")
            else:
                self.lines.append(f"stale file: {_rel(path, self.rootdir)} (its test module is gone; {hint})")

    def _save(self) -> None:
        for baseline in self.files.values():
            if baseline.edits:                   # files only read stay byte-for-byte as they are
                bl.save_baseline(baseline)

    def _export(self, records: list, args: Sequence[str]) -> None:
        from . import exports, history

        if not records or not any(self.exports.values()):
            return
        run = history.current_run(self.rootdir, self.release, extra={"args": [str(arg) for arg in args]})
        for kind, path in self.exports.items():
            if path:
                exports.write(kind, path, records, run)
                self.lines.append(f"exported {kind.replace('_', ' ')}: {path}")


def _comparison_table(rows: list[Comparison]) -> str:
    """metric | baseline -> measured | change | tolerance | verdict, figures as the file holds them."""
    from tabulate import tabulate

    table = [[row.metric, f"{bl.figure_text(row.metric, row.baseline)} -> {bl.figure_text(row.metric, row.measured)}",
              row.delta_text, f"tolerance {row.tolerance}", _STATUS_TEXT.get(row.status, row.status)]
             for row in rows]
    return tabulate(table, tablefmt="plain", disable_numparse=True)


_STATUS_TEXT = {"new-metric": f"new metric ({UPDATE_ALL} adds it)",
                "missing-metric": "not measured (in the baseline, not in this run)",
                "changed": "changed (not gated)"}


def _shared_provenance(changes: list[tuple[str, list[str]]], judged: int) -> list[str]:
    """Provenance changes stated once: one line per set of entries sharing the changed keys; a key's
    ``old -> new`` shown when every entry shares it (target hashes differ per target: counted)."""
    by_key: dict[str, dict[str, list[str]]] = {}
    for where, lines in changes:
        for line in lines:
            key, _, change = line.partition(": ")
            by_key.setdefault(key, {}).setdefault(change, []).append(where)
    by_scope: dict[tuple[str, ...], list[str]] = {}
    for key, variants in sorted(by_key.items()):
        scope = tuple(sorted({where for wheres in variants.values() for where in wheres}))
        text = f"{key}: {next(iter(variants))}" if len(variants) == 1 else f"{key} ({len(variants)} different changes)"
        by_scope.setdefault(scope, []).append(text)
    out = []
    for scope, texts in by_scope.items():
        if judged == 1:
            out.append(f"provenance changed: {', '.join(texts)}")
            continue
        named = f" ({', '.join(scope)})" if len(scope) <= 3 else ""
        entries = f"all {len(scope)} test x targets" if len(scope) == judged else \
            f"{len(scope)} of {judged} test x targets{named}"
        out.append(f"provenance changed for {entries}: {', '.join(texts)}")
    return out


def _numbers(metrics: dict) -> dict[str, float]:
    return {name: value for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _headline(metrics: dict) -> tuple[str, float]:
    for name in HEADLINE_METRICS:
        if name in metrics:
            return name, metrics[name]
    name = sorted(metrics)[0] if metrics else "baseline"
    return name, metrics.get(name, math.nan)


def _rel(path: Path, rootdir: Path) -> str:
    try:
        return str(Path(path).relative_to(rootdir))
    except ValueError:
        return str(path)


def selection_reasons(config: pytest.Config) -> list[str]:
    """Why the command line asks for less than the whole suite (known before collection).

    Options that come from the ini's ``addopts`` define the suite; only ``-k``/``-m`` select
    from wherever they come, since they pick tests inside a module.
    """
    option = config.option
    reasons = []
    if getattr(option, "keyword", ""):
        reasons.append(f"-k {option.keyword}")
    if getattr(option, "markexpr", ""):
        reasons.append(f"-m {option.markexpr}")
    if any("::" in str(arg) for arg in config.args):
        reasons.append("node ids given")
    elif _paths_leave_out(config):
        reasons.append(f"paths given ({' '.join(map(str, config.args))})")
    if getattr(option, "lf", False) or getattr(option, "stepwise", False):
        reasons.append("--lf/--sw")
    given = [str(arg) for arg in config.invocation_params.args]
    for flag in ("--deselect", "--ignore", "--ignore-glob"):
        if any(arg == flag or arg.startswith(flag + "=") for arg in given):
            reasons.append(f"{flag} given")
    left_out = _targets_left_out(config)
    if left_out:
        reasons.append(f"--npu-target leaves out {', '.join(left_out)}")
    return reasons


def _paths_leave_out(config: pytest.Config) -> bool:
    """True when paths on the command line do not cover the suite (testpaths, else the rootdir)."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return False
    here = Path(config.invocation_params.dir)
    given = [(here / str(arg).split("::")[0]).resolve() for arg in config.args]
    root = Path(config.rootpath)
    suite = [path.resolve() for pattern in config.getini("testpaths") for path in sorted(root.glob(pattern))] \
        or [root.resolve()]
    return not all(any(path == part or path in part.parents for path in given) for part in suite)


def _targets_left_out(config: pytest.Config) -> list[str]:
    """Configured targets (ini npu_targets, else the default) that --npu-target did not name."""
    from .plugin import DEFAULT_TARGET

    chosen = config.getoption("npu_target", None) or []
    if not chosen:
        return []
    return [target for target in config.getini("npu_targets") or [DEFAULT_TARGET] if target not in chosen]


def _run_reasons(session: pytest.Session) -> list[str]:
    """Why the run, once over, did not run what it selected."""
    return ["the run stopped early"] if session.shouldstop or session.shouldfail else []


# --------------------------------------------------------------------------------------------------
# hooks


def pytest_npu_check(item: pytest.Item, record: Any) -> list:
    return item.config.stash[SESSION_KEY].breaches(item, record)


def pytest_npu_session_finish(session: pytest.Session, records: list) -> None:
    state = session.config.stash[SESSION_KEY]
    try:
        state.finish(session, records)
    except NpuError as exc:
        state.lines.append(f"error: {exc}")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_finish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        _note_collected(session.config.stash[SESSION_KEY], [item.nodeid for item in session.items])


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.is_worker or not state.lines:
        return
    terminalreporter.write_sep("-", "npu baselines")
    width = getattr(getattr(terminalreporter, "_tw", None), "fullwidth", 80)
    for line in state.lines:
        for part in _wrapped(line, width):
            terminalreporter.write_line(part)


def _wrapped(line: str, width: int) -> list[str]:
    """``line`` folded to the terminal width at spaces (node ids and paths are never split)."""
    import textwrap

    indent = line[:len(line) - len(line.lstrip())]
    return textwrap.wrap(line, width=max(width, 40), initial_indent="", subsequent_indent=indent + "    ",
                         break_long_words=False, break_on_hyphens=False) or [line]


def _note_collected(state: BaselineSession, nodeids: list[str]) -> None:
    for nodeid in nodeids:
        if "::" in nodeid:
            module, key = bl.split_nodeid(nodeid)
            state.collected.setdefault(module, set()).add(key)


class _SelectionObserver:
    """Notes what makes a run a subset (deselection, collection errors): those hooks get no config."""

    def __init__(self, config: pytest.Config):
        self.state = config.stash[SESSION_KEY]

    def pytest_deselected(self, items: list) -> None:
        if items:
            self.state.subset_reasons.append(f"{len(items)} deselected")
            _note_collected(self.state, [item.nodeid for item in items])

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.state.subset_reasons.append(f"collection error in {report.nodeid or 'rootdir'}")


class _XdistCollection:
    """Registered only when xdist is installed: the controller learns the collected ids from workers."""

    def __init__(self, config: pytest.Config):
        self.config = config

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        _note_collected(self.config.stash[SESSION_KEY], list(ids))
