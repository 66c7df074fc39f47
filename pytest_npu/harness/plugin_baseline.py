"""pytest hooks for committed baselines, run history and benchmark exports.

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

SESSION_KEY: pytest.StashKey[BaselineSession] = pytest.StashKey()
UPDATE_MODES = ("all", "new")
OFF = ("", "off", "false", "no", "0", "none")
HEADLINE_METRICS = ("cycles", "latency_ms", "energy_mj", "mse")


def _update_mode(value: str) -> str:
    import argparse

    if value not in UPDATE_MODES:
        raise argparse.ArgumentTypeError(
            f"expected 'all' or 'new', got {value!r} (write the flag after test paths, or as "
            f"--npu-update-baseline=all / --npu-update-baseline=new)")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("npu", "NPU testing (pytest-npu)")
    group.addoption("--npu-baseline-dir", metavar="DIR", default=None,
                    help="directory for committed baselines, relative to rootdir (default: __npu__/ beside "
                         "each test module); ini: npu_baseline_dir")
    group.addoption("--npu-compare-fail", metavar="METRIC:N%|ABS", action="append", default=[],
                    help="tolerance of a baseline comparison, e.g. latency_ms:2%% or mse:1e-4 (repeatable; "
                         "default exact for integer figures, 1e-9 relative for floats); ini: npu_compare_fail")
    group.addoption("--npu-update-baseline", metavar="all|new", nargs="?", const="all", default=None,
                    type=_update_mode,
                    help="record baselines for every test that ran (all, the default) or only missing ones "
                         "(=new); never records a value that breaks the test's npu_budget")
    group.addoption("--npu-fail-on-improvement", action="store_true", default=None,
                    help="fail tests that improved beyond tolerance until their baseline is refreshed; "
                         "ini: npu_fail_on_improvement")
    group.addoption("--npu-no-baseline", action="store_true", default=False,
                    help="do not compare against (or require) baselines; ini: npu_baseline = false")
    group.addoption("--npu-history", metavar="PATH", default=None,
                    help="SQLite run history (default .npu/history.sqlite under rootdir); ini: npu_history")
    group.addoption("--npu-no-history", action="store_true", default=False,
                    help="do not record this run in the history database; ini: npu_history = off")
    group.addoption("--npu-release", metavar="LABEL", default=None,
                    help="label this run in the history as a release (e.g. v1.2)")
    group.addoption("--npu-benchmark-json", metavar="PATH", default=None,
                    help="write the figures as pytest-benchmark JSON (for github-action-benchmark tool: pytest)")
    group.addoption("--npu-github-benchmark", metavar="PATH", default=None,
                    help="write github-action-benchmark customSmallerIsBetter JSON (costs and errors)")
    group.addoption("--npu-github-benchmark-bigger", metavar="PATH", default=None,
                    help="write github-action-benchmark customBiggerIsBetter JSON (sqnr_db, cosine, top1)")
    parser.addini("npu_baseline_dir", "directory for committed baselines (relative to rootdir)", default="")
    parser.addini("npu_compare_fail", "baseline tolerances METRIC:N% or METRIC:ABS", type="args", default=[])
    parser.addini("npu_fail_on_improvement", "fail on improvements beyond tolerance", type="bool", default=False)
    parser.addini("npu_baseline", "compare against committed baselines", type="bool", default=True)
    parser.addini("npu_history", "SQLite run history path, or 'off'", default=str(Path(".npu", "history.sqlite")))


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
    comparisons: list[bl.Comparison] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)
    missing: bool = False


@dataclass
class BaselineSession:
    """Options read once, baseline files cached per module, and what happened for the summary."""

    rootdir: Path
    baseline_dir: str | None
    tolerances: dict[str, bl.Tolerance]
    update: str | None
    fail_on_improvement: bool
    enabled: bool
    history: Path | None
    release: str
    exports: dict[str, str | None]
    is_worker: bool
    files: dict[str, bl.BaselineFile] = field(default_factory=dict)
    broken: dict[str, BaselineError] = field(default_factory=dict)
    collected: dict[str, set[str]] = field(default_factory=dict)     # module -> test keys
    subset_reasons: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)                   # terminal summary

    @classmethod
    def from_config(cls, config: pytest.Config) -> BaselineSession:
        option = config.option
        cli_tolerances = bl.tolerances_from(option.npu_compare_fail or [], where="--npu-compare-fail")
        ini_tolerances = bl.tolerances_from(config.getini("npu_compare_fail"), where="ini npu_compare_fail")
        history_ini = str(config.getini("npu_history") or "").strip()
        history: Path | None = None
        if option.npu_no_history:
            history = None
        elif option.npu_history:                                  # a command-line path: from the cwd
            history = Path(option.npu_history).absolute()
        elif history_ini.lower() not in OFF:                      # an ini path: from the rootdir
            history = Path(history_ini) if Path(history_ini).is_absolute() else Path(config.rootpath) / history_ini
        fail_on_improvement = option.npu_fail_on_improvement
        return cls(
            rootdir=Path(config.rootpath),
            baseline_dir=option.npu_baseline_dir or config.getini("npu_baseline_dir") or None,
            tolerances={**ini_tolerances, **cli_tolerances},
            update=option.npu_update_baseline,
            fail_on_improvement=bool(config.getini("npu_fail_on_improvement")
                                     if fail_on_improvement is None else fail_on_improvement),
            enabled=not option.npu_no_baseline and bool(config.getini("npu_baseline")),
            history=history,
            release=option.npu_release or "",
            exports={"benchmark_json": option.npu_benchmark_json, "github": option.npu_github_benchmark,
                     "github_bigger": option.npu_github_benchmark_bigger},
            is_worker=hasattr(config, "workerinput"),
        )

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

    def tolerances_for(self, record: Any) -> dict[str, bl.Tolerance]:
        """Global tolerances (ini, then --npu-compare-fail), overridden by the test's npu_budget(compare=...)."""
        tolerances = dict(self.tolerances)
        for metric, value in sorted((getattr(record, "tolerances", None) or {}).items()):
            tolerances[metric] = bl.parse_tolerance(
                value, where=f"{record.nodeid}: npu_budget(compare={{{metric!r}: {value!r}}})")
        return tolerances

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
        outcome.comparisons = bl.compare_metrics(_numbers(record.metrics), stored, self.tolerances_for(record))
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
                f"pytest {shlex.quote(record.nodeid)} --npu-update-baseline=new "
                f"(or gate on budgets only: --npu-no-baseline / ini npu_baseline = false)"))]
        provenance = ("; provenance changed: " + ", ".join(outcome.provenance)) if outcome.provenance else ""
        rows = []
        for row in outcome.comparisons:
            judged = row.measured is not None and row.baseline is not None
            if judged and (row.status == "regressed" or (row.status == "improved" and self.fail_on_improvement)):
                verb = "regressed" if row.status == "regressed" else "improved (refresh with --npu-update-baseline)"
                rows.append(Breach(row.metric, None, float(row.measured or 0), baseline=row.baseline, delta=row.delta,
                                   message=f"{verb} by {row.delta_text}, tolerance {row.tolerance}{provenance}"))
        return rows

    # ---- the end of the session (controller only)

    def finish(self, session: pytest.Session, records: list) -> None:
        if self.is_worker:
            return
        if self.enabled or self.update:
            self._summarise(records)
        if self.update:
            self._update(records)
        if self.update or self.enabled:
            self._check_unused(session, records)
        if self.update:                          # a comparing run never writes, whatever it read
            self._save()
        self._export(records, session.config.invocation_params.args)

    def _summarise(self, records: list) -> None:
        """Counts and one line per regression, improvement, metric change and provenance change."""
        counts = {"passed": 0, "regressed": 0, "improved": 0, "missing": 0}
        for record in records:
            try:
                outcome = self.judge(record)
            except (BaselineError, BudgetUsageError):   # already a failure row of that test
                continue
            statuses = {row.status for row in outcome.comparisons}
            where = f"{record.nodeid} [{record.target}]"
            if outcome.missing:
                counts["missing"] += 1
                continue
            for row in outcome.comparisons:
                if row.status in ("regressed", "improved"):
                    self.lines.append(f"{row.status}: {where} {row.metric} {bl.normalise(row.baseline)} -> "
                                      f"{bl.normalise(row.measured)} ({row.delta_text}, tolerance {row.tolerance})")
                elif row.status == "new-metric":
                    self.lines.append(f"new metric: {where} {row.metric} (not in the baseline yet; "
                                      f"--npu-update-baseline adds it)")
                elif row.status == "missing-metric":
                    self.lines.append(f"not measured: {where} {row.metric} (in the baseline, not in this run)")
            if outcome.provenance:
                self.lines.append(f"provenance changed: {where}: " + ", ".join(outcome.provenance))
            key = "regressed" if "regressed" in statuses else "improved" if "improved" in statuses else "passed"
            counts[key] += 1
        for _module, exc in sorted(self.broken.items()):
            self.lines.append(f"error: {exc}")
        if records:
            self.lines.insert(0, ", ".join(f"{count} {name}" for name, count in counts.items() if count)
                              + " against baselines" + (f" (update mode: {self.update})" if self.update else ""))

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

    def _unused(self) -> list[tuple[bl.BaselineFile, str]]:
        """Entries of collected modules whose test is gone (renamed, deleted, de-parametrised)."""
        stale = []
        for module, keys in sorted(self.collected.items()):
            try:
                baseline = self.file_for(module)
            except BaselineError:
                continue
            stale += [(baseline, key) for key in sorted(baseline.tests) if key not in keys]
        return stale

    def _unused_targets(self, records: list) -> list[str]:
        """Targets stored for a test that passed on other targets only. Reported, never removed:
        ``--npu-target`` picks targets the way ``-k`` picks tests, so absence proves nothing."""
        ran: dict[tuple[str, str], set[str]] = {}
        for record in records:
            if record.outcome in ("", "passed"):
                module, key = bl.split_nodeid(record.nodeid)
                ran.setdefault((record.module or module, key), set()).add(record.target)
        lines = []
        for (module, key), targets in sorted(ran.items()):
            baseline = self.files.get(module)
            if baseline is None:
                continue
            for target in sorted(set(baseline.tests.get(key, {})) - targets):
                lines.append(f"not run: {key} on target {target} (entry kept in {_rel(baseline.path, self.rootdir)}; "
                             f"delete it by hand if the target was dropped)")
        return lines

    def _orphan_files(self) -> list[Path]:
        """Baseline files beside collected modules whose test module no longer exists."""
        directories = {self.path_for(module).parent for module in self.collected}
        orphans = []
        for directory in sorted(directories):
            for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
                if not bl.module_of_baseline(path, self.rootdir, self.baseline_dir).exists():
                    orphans.append(path)
        return orphans

    def _check_unused(self, session: pytest.Session, records: list) -> None:
        """Report entries whose test is gone; remove them only on a full ``--npu-update-baseline`` run.

        On a subset run (-k, -m, node ids, --lf, deselection, collection errors, early stop) the
        collected tests are not the module's tests, so nothing is judged unused at all.
        """
        reasons = self.subset_reasons + _subset_reasons(session)
        if reasons:
            if self.update == "all":
                self.lines.append("unused entries not checked: not a full run (" + "; ".join(reasons) + ")")
            return
        remove = self.update == "all"
        for baseline, key in self._unused():
            if remove:
                baseline.remove(key)
                self.lines.append(f"removed: {key} from {_rel(baseline.path, self.rootdir)} (no such test)")
            else:
                self.lines.append(f"unused: {key} in {_rel(baseline.path, self.rootdir)} (no such test; "
                                  f"a full run with --npu-update-baseline removes it)")
        for line in self._unused_targets(records):
            self.lines.append(line)
        for path in self._orphan_files():
            if remove:
                path.unlink()
                self.lines.append(f"removed file: {_rel(path, self.rootdir)} (its test module is gone)")
            else:
                self.lines.append(f"unused file: {_rel(path, self.rootdir)} (its test module is gone; "
                                  f"a full run with --npu-update-baseline removes it)")

    def _save(self) -> None:
        for baseline in self.files.values():
            if baseline.edits:                   # files only read stay byte-for-byte as they are
                bl.save_baseline(baseline)

    def _export(self, records: list, args: Sequence[str]) -> None:
        from . import exports, history

        if not records:
            return
        run = history.current_run(self.rootdir, self.release, extra={"args": [str(arg) for arg in args]})
        if self.history is not None:
            run_id = history.record_run(self.history, run, records)
            self.lines.append(f"history: run #{run_id} ({run.label}) recorded in {_rel(self.history, self.rootdir)}")
        for kind, path in self.exports.items():
            if path:
                exports.write(kind, path, records, run)
                self.lines.append(f"exported {kind.replace('_', ' ')}: {path}")


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


def _subset_reasons(session: pytest.Session) -> list[str]:
    """Why this run did not select the whole suite (so unused entries must be kept)."""
    option = session.config.option
    reasons = []
    if getattr(option, "keyword", ""):
        reasons.append(f"-k {option.keyword}")
    if getattr(option, "markexpr", ""):
        reasons.append(f"-m {option.markexpr}")
    if any("::" in str(arg) for arg in session.config.args):
        reasons.append("node ids given")
    if getattr(option, "lf", False) or getattr(option, "stepwise", False):
        reasons.append("--lf/--sw")
    if session.shouldstop or session.shouldfail:
        reasons.append("the run stopped early")
    return reasons


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
    terminalreporter.write_sep("-", "npu baselines and history")
    for line in state.lines:
        terminalreporter.write_line(line)


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
