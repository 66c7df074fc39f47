"""Run history: every run's figures in one SQLite file, for trends across commits and releases.

Unlike baselines (committed, deterministic, per module), history is volatile and complete: commit,
branch, dirty flag, release label, UTC time, host and plugin version, then every metric and layer
of every test x target. SQLite in WAL mode with a busy timeout and one ``BEGIN IMMEDIATE``
transaction per run means many processes (CI shards, xdist controllers) can append at once and a
killed writer leaves the previous state: a run is recorded entirely or not at all.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import platform
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import BaselineError
from .tolerances import Tolerances, compare_metric

SCHEMA_VERSION = 1
DEFAULT_PATH = Path(".npu") / "history.sqlite"
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_utc TEXT NOT NULL,
    commit_id TEXT NOT NULL DEFAULT '',
    branch TEXT NOT NULL DEFAULT '',
    dirty INTEGER NOT NULL DEFAULT 0,
    release TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    plugin_version TEXT NOT NULL DEFAULT '',
    python TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    nodeid TEXT NOT NULL,
    test TEXT NOT NULL,
    module TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL DEFAULT '',
    provenance TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS metrics (
    record_id INTEGER NOT NULL REFERENCES records(id),
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (record_id, name)
);
CREATE TABLE IF NOT EXISTS layers (
    record_id INTEGER NOT NULL REFERENCES records(id),
    position INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (record_id, position)
);
CREATE INDEX IF NOT EXISTS records_by_run ON records(run_id);
CREATE INDEX IF NOT EXISTS runs_by_release ON runs(release);
CREATE INDEX IF NOT EXISTS runs_by_commit ON runs(commit_id);
"""


# --------------------------------------------------------------------------------------------------
# what a run is


@dataclass
class RunInfo:
    """Facts about one run; everything a baseline file deliberately leaves out."""

    started_utc: str
    commit_id: str = ""
    branch: str = ""
    dirty: bool = False
    release: str = ""
    host: str = ""
    plugin_version: str = ""
    python: str = ""
    extra: dict = field(default_factory=dict)
    id: int | None = None

    @property
    def label(self) -> str:
        """The release label, else the short commit (``+dirty`` when uncommitted), else ``run <id>``."""
        if self.release:
            return self.release
        if self.commit_id:
            return self.commit_id[:10] + ("+dirty" if self.dirty else "")
        return f"run {self.id}"


def _git(args: Sequence[str], cwd: str | os.PathLike[str]) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(cwd: str | os.PathLike[str]) -> dict[str, Any]:
    """Commit, branch and dirty flag of the checkout at ``cwd``; empty values where there is no git.

    Falls back to the CI's variables (``GITHUB_SHA``/``GITHUB_REF_NAME``) on shallow or detached
    checkouts, where ``git`` may report ``HEAD`` as the branch.
    """
    commit = _git(["rev-parse", "HEAD"], cwd) or os.environ.get("GITHUB_SHA", "")
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or ""
    if branch in ("", "HEAD"):
        branch = os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME", "")
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit_id": commit, "branch": branch, "dirty": bool(status)}


def current_run(cwd: str | os.PathLike[str], release: str = "", extra: Mapping[str, Any] | None = None) -> RunInfo:
    from .. import __version__

    return RunInfo(started_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   release=release, host=platform.node(), plugin_version=__version__,
                   python=platform.python_version(), extra=dict(extra or {}), **git_info(cwd))


# --------------------------------------------------------------------------------------------------
# the database


@contextmanager
def connect(path: str | os.PathLike[str], *, create: bool = True) -> Iterator[sqlite3.Connection]:
    """Open (and if needed create) the history database; refuse corrupt or newer files clearly."""
    path = Path(path)
    if not create and not path.exists():
        raise BaselineError(f"no history database at {path}; record runs with "
                            f"`pytest --npu-history {path}` or pass --db PATH")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise BaselineError(f"cannot open history database {path}: {exc}") from exc
    try:
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BaselineError(
                    f"history database {path} has schema version {version}, newer than this pytest-npu "
                    f"reads ({SCHEMA_VERSION}); upgrade pytest-npu - the file was left untouched")
            if create and version < SCHEMA_VERSION:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            elif version < SCHEMA_VERSION:
                raise BaselineError(f"{path} is not a pytest-npu history database (no schema); "
                                    f"record runs with `pytest --npu-history {path}`")
        except sqlite3.DatabaseError as exc:
            raise BaselineError(f"history database {path} is unreadable ({exc}); it was left untouched. "
                                f"Move it away to start a new history") from exc
        yield connection
    finally:
        connection.close()


def record_run(path: str | os.PathLike[str], run: RunInfo, records: Iterable[Any]) -> int:
    """Append one run and all its records in a single transaction; return the run id.

    ``records`` are :class:`~pytest_npu.harness.session.NpuRecord` objects (or anything with the same
    attributes). Metrics that are not numbers are skipped: history stores figures, not text.
    """
    records = list(records)
    with connect(path) as connection:
        try:
            connection.execute("BEGIN IMMEDIATE")
            cursor = connection.execute(
                "INSERT INTO runs (started_utc, commit_id, branch, dirty, release, host, plugin_version,"
                " python, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.started_utc, run.commit_id, run.branch, int(run.dirty), run.release, run.host,
                 run.plugin_version, run.python, json.dumps(run.extra, sort_keys=True, default=str)))
            run_id = int(cursor.lastrowid or 0)
            for record in records:
                record_id = connection.execute(
                    "INSERT INTO records (run_id, nodeid, test, module, target, outcome, provenance)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, record.nodeid, _test_name(record), record.module, record.target,
                     getattr(record, "outcome", "") or "",
                     json.dumps(record.provenance, sort_keys=True, default=str))).lastrowid
                connection.executemany(
                    "INSERT INTO metrics (record_id, name, value) VALUES (?, ?, ?)",
                    [(record_id, name, float(value)) for name, value in sorted(record.metrics.items())
                     if _is_number(value)])
                connection.executemany(
                    "INSERT INTO layers (record_id, position, data) VALUES (?, ?, ?)",
                    [(record_id, position, json.dumps(layer, sort_keys=True, default=str))
                     for position, layer in enumerate(record.layers or [])])
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
    run.id = run_id
    return run_id


def _test_name(record: Any) -> str:
    from .baseline import split_nodeid

    return split_nodeid(record.nodeid)[1] if "::" in record.nodeid else record.name


def _is_number(value: Any) -> bool:
    """A figure worth storing: numeric and not NaN (SQLite would turn NaN into NULL)."""
    if isinstance(value, (str, bytes, bool)):
        return False
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------------
# queries


@dataclass(frozen=True)
class Point:
    """One figure of one run: the row behind every table, chart and comparison."""

    run_id: int
    label: str
    started_utc: str
    nodeid: str
    test: str
    target: str
    metric: str
    value: float


def runs(connection: sqlite3.Connection) -> list[RunInfo]:
    rows = connection.execute(
        "SELECT id, started_utc, commit_id, branch, dirty, release, host, plugin_version, python, extra "
        "FROM runs ORDER BY id").fetchall()
    return [RunInfo(id=row[0], started_utc=row[1], commit_id=row[2], branch=row[3], dirty=bool(row[4]),
                    release=row[5], host=row[6], plugin_version=row[7], python=row[8],
                    extra=json.loads(row[9] or "{}")) for row in rows]


def resolve_ref(connection: sqlite3.Connection, ref: str, *, path: str | os.PathLike[str] = "") -> RunInfo:
    """A run named by release label, commit (prefix, >= 4 hex digits), ``#ID``, ``latest``, ``previous``,
    ``latest-release`` or ``previous-release`` (the last two skip unlabelled runs).

    A label or commit recorded several times means its latest run (a re-run replaces, it does not average).
    """
    all_runs = runs(connection)
    if not all_runs:
        raise BaselineError(f"history database {path} holds no runs yet; record one with pytest --npu-history")
    if ref in ("latest", "previous", "latest-release", "previous-release"):
        labels = _latest_per_label(all_runs)
        if ref.endswith("-release"):
            labels = [run for run in labels if run.release]
        wanted = 1 if ref.startswith("latest") else 2
        if len(labels) < wanted:
            kind = "releases (--npu-release)" if ref.endswith("-release") else "releases/commits"
            raise BaselineError(f"{ref!r} needs {wanted} recorded {kind} in {path}; there are {len(labels)}")
        return labels[-wanted]
    if ref.startswith("#") and ref[1:].isdigit():
        matches = [run for run in all_runs if run.id == int(ref[1:])]
    else:
        matches = [run for run in all_runs if run.release == ref]
        if not matches and len(ref) >= 4:
            matches = [run for run in all_runs if run.commit_id.startswith(ref)]
    if not matches:
        known = ", ".join(sorted({run.label for run in all_runs})[-12:])
        raise BaselineError(f"no run matches {ref!r} in {path}; known releases/commits: {known} "
                            f"(or use #ID, latest, previous, latest-release, previous-release)")
    return matches[-1]


def _latest_per_label(all_runs: Sequence[RunInfo]) -> list[RunInfo]:
    """The latest run of each label, ordered by that run's position in time."""
    latest: dict[str, RunInfo] = {}
    for run in all_runs:
        latest[run.label] = run
    return sorted(latest.values(), key=lambda run: run.id or 0)


def points(connection: sqlite3.Connection, *, run_ids: Iterable[int] | None = None,
           test: str | None = None, metric: str | None = None, target: str | None = None,
           latest_per_label: bool = True) -> list[Point]:
    """Figures filtered by glob patterns (``--test 'test_port*'``, ``--metric latency_ms``)."""
    all_runs = runs(connection)
    if run_ids is not None:
        ids = set(run_ids)
        chosen = [run for run in all_runs if run.id in ids]
    else:
        chosen = _latest_per_label(all_runs) if latest_per_label else all_runs
    wanted = {run.id: run for run in chosen}
    if not wanted:
        return []
    marks = ",".join("?" * len(wanted))
    rows = connection.execute(
        "SELECT r.run_id, r.nodeid, r.test, r.target, m.name, m.value FROM records r "
        f"JOIN metrics m ON m.record_id = r.id WHERE r.run_id IN ({marks}) "
        "ORDER BY r.run_id, r.test, r.target, m.name", list(wanted)).fetchall()
    found = []
    for run_id, nodeid, test_name, target_name, name, value in rows:
        if test and not (fnmatch.fnmatchcase(test_name, test) or fnmatch.fnmatchcase(nodeid, test)
                         or test in nodeid):
            continue
        if metric and not fnmatch.fnmatchcase(name, metric):
            continue
        if target and not fnmatch.fnmatchcase(target_name, target):
            continue
        run = wanted[run_id]
        found.append(Point(run_id, run.label, run.started_utc, nodeid, test_name, target_name, name, value))
    return found


def layers_of_run(connection: sqlite3.Connection, run_id: int, *, test: str | None = None,
                  target: str | None = None) -> dict[tuple[str, str], list[dict]]:
    """Per-layer rows of one run, keyed by (test, target)."""
    rows = connection.execute(
        "SELECT r.test, r.nodeid, r.target, l.data FROM records r JOIN layers l ON l.record_id = r.id "
        "WHERE r.run_id = ? ORDER BY r.test, r.target, l.position", (run_id,)).fetchall()
    grouped: dict[tuple[str, str], list[dict]] = {}
    for test_name, nodeid, target_name, data in rows:
        if test and not (fnmatch.fnmatchcase(test_name, test) or test in nodeid):
            continue
        if target and not fnmatch.fnmatchcase(target_name, target):
            continue
        grouped.setdefault((test_name, target_name), []).append(json.loads(data))
    return grouped


def integrity_problems(path: str | os.PathLike[str]) -> list[str]:
    """``PRAGMA integrity_check`` plus the invariant that no record or metric is orphaned."""
    with connect(path, create=False) as connection:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check") if row[0] != "ok"]
        orphans = connection.execute(
            "SELECT COUNT(*) FROM records WHERE run_id NOT IN (SELECT id FROM runs)").fetchone()[0]
        orphans += connection.execute(
            "SELECT COUNT(*) FROM metrics WHERE record_id NOT IN (SELECT id FROM records)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} orphaned rows")
        return problems


# --------------------------------------------------------------------------------------------------
# change between runs (shared by `pytest-npu history` and `pytest-npu compare`)


@dataclass(frozen=True)
class Change:
    """One figure of one test x target in two runs, classified by the metric's direction."""

    test: str
    target: str
    metric: str
    before: float | None
    after: float | None
    status: str          # "ok" | "regressed" | "improved" | "changed" (not gated) | "new" | "gone"
    tolerance: str

    @property
    def delta_text(self) -> str:
        if self.before is None or self.after is None:
            return "-"
        delta = self.after - self.before
        return f"{delta:+.4g} ({delta / abs(self.before):+.2%})" if self.before else f"{delta:+.4g}"


def changes(before: Iterable[Point], after: Iterable[Point], tolerances: Tolerances | None = None) -> list[Change]:
    """Pair figures by (test, target, metric) and classify each pair.

    ``tolerances`` are the rules of ``tolerances.py``: a figure whose rule is ``off`` reports
    "changed" (or "ok"), never "regressed"/"improved".
    """
    tolerances = tolerances or Tolerances()
    old = {(p.test, p.target, p.metric): p.value for p in before}
    new = {(p.test, p.target, p.metric): p.value for p in after}
    rows = []
    for key in sorted(set(old) | set(new)):
        test_name, target_name, metric = key
        then, now = old.get(key), new.get(key)
        tolerance = tolerances.for_metric(metric)
        if then is None or now is None:
            rows.append(Change(test_name, target_name, metric, then, now, "new" if then is None else "gone",
                               str(tolerance)))
            continue
        status = compare_metric(metric, now, then, tolerance).status
        rows.append(Change(test_name, target_name, metric, then, now, status, str(tolerance)))
    return rows
