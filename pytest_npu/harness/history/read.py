"""Reading a history: runs, trends, named runs, and the figures behind every table, chart and comparison.

A figure is keyed by the test's full node id (module path, name, parameters) and the target, so two
modules' ``test_port`` stay two series. Runs are ordered by start time (a merged database holds
runs in merge order, not in time order), and three views choose which runs make a trend:

* ``releases`` (the default): the latest run of each release label;
* ``ci``: releases and runs recorded by CI (a run key), the latest run of each release or commit;
* ``all``: every run, developers' local runs included.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ...errors import HistoryError
from .runs import LOCAL, RELEASE, RunInfo
from .schema import integrity_problems, open_store
from .store import Location, Store
from .write import StoredRecord, stored_figure

VIEWS = ("releases", "ci", "all")
_IN_CHUNK = 500            # run ids per IN (...) list: far below every backend's parameter limit


@dataclass(frozen=True)
class Point:
    """One figure of one test x target in one run: the row behind every table, chart and comparison.

    ``test`` is the full node id; ``rules`` the test's own ``npu_budget(compare=...)`` as recorded.
    """

    run_id: int
    label: str
    started_utc: str
    test: str
    target: str
    metric: str
    value: float
    rules: tuple[tuple[str, Any], ...] = ()

    @property
    def order(self) -> tuple[str, int]:
        """Sort key of the point's run in time (start, then id)."""
        return (self.started_utc, self.run_id)


def matches_test(pattern: str | None, nodeid: str) -> bool:
    """``--test``: a glob of the node id or of the test's name, or a substring of the node id."""
    if not pattern:
        return True
    name = nodeid.rpartition("::")[2]
    return fnmatch.fnmatchcase(nodeid, pattern) or fnmatch.fnmatchcase(name, pattern) or pattern in nodeid


def _matches(pattern: str | None, text: str) -> bool:
    return not pattern or fnmatch.fnmatchcase(text, pattern)


def latest_per_label(runs: Sequence[RunInfo]) -> list[RunInfo]:
    """The latest run of each label, in time order (a label recorded again shows its latest run)."""
    latest: dict[str, RunInfo] = {}
    for run in runs:
        latest[run.label] = run
    return sorted(latest.values(), key=_run_order)


def _run_order(run: RunInfo) -> tuple[str, int]:
    return (run.started_utc, run.id or 0)


class History:
    """An open history database (any backend) and the queries the commands and pages are built on."""

    def __init__(self, store: Store):
        self.store = store
        self.location = store.location

    # ---- runs

    def runs(self) -> list[RunInfo]:
        """Every run, in time order, with the shards recorded so far."""
        finished: dict[int, list[int]] = {}
        declared: dict[int, int] = {}
        for run_id, shard, shards in self.store.rows("SELECT run_id, shard, shards FROM npu_shards"):
            finished.setdefault(run_id, []).append(int(shard))
            declared[run_id] = max(declared.get(run_id, 1), int(shards))
        found = []
        for row in self.store.rows("SELECT id, run_key, kind, started_utc, commit_id, branch, dirty, release, host, "
                                   "plugin_version, python, extra, shards FROM npu_runs"):
            (run_id, key, kind, started, commit, branch, dirty, release, host, version, python, extra, shards) = row
            found.append(RunInfo(
                id=int(run_id), key=key, kind=kind, started_utc=started, commit_id=commit, branch=branch,
                dirty=bool(dirty), release=release, host=host, plugin_version=version, python=python,
                extra=self._json(extra, f"run #{run_id}"), shards=max(int(shards), declared.get(run_id, 1)),
                finished=tuple(sorted(finished.get(run_id, [])))))
        return sorted(found, key=_run_order)

    def trend(self, view: str = "releases") -> list[RunInfo]:
        """The runs a trend shows, in time order (see the module docstring for the views)."""
        if view not in VIEWS:
            raise HistoryError(f"unknown view {view!r}; use one of {', '.join(VIEWS)}")
        runs = self.runs()
        if view == "all":
            return runs
        if view == "ci":
            return latest_per_label([run for run in runs if run.kind != LOCAL])
        return latest_per_label([run for run in runs if run.kind == RELEASE])

    def resolve(self, ref: str) -> RunInfo:
        """A run named by release label, commit (prefix, >= 4 hex digits), ``#ID``, ``latest``, ``previous``
        (releases and CI runs), ``latest-release`` or ``previous-release``.

        A label or commit recorded several times means its latest run; a commit prefers the runs of CI
        and releases over developers' local runs.
        """
        runs = self.runs()
        if not runs:
            raise HistoryError(f"history database {self.location} holds no runs yet; record one with "
                               f"pytest --npu-history")
        if ref in ("latest", "previous", "latest-release", "previous-release"):
            releases = ref.endswith("-release")
            pool = self.trend("releases" if releases else "ci")
            wanted = 1 if ref.startswith("latest") else 2
            if len(pool) < wanted:
                kind = "releases (--npu-release)" if releases else "releases or CI runs"
                local = sum(run.kind == LOCAL for run in runs)
                hint = (f"; its {local} local run(s) do not count: name one by #ID (pytest-npu history --runs all "
                        f"lists them)") if local else ""
                raise HistoryError(f"{ref!r} needs {wanted} recorded {kind} in {self.location}; there are "
                                   f"{len(pool)}{hint}")
            return pool[-wanted]
        if ref.startswith("#") and ref[1:].isdigit():
            matches = [run for run in runs if run.id == int(ref[1:])]
        else:
            matches = [run for run in runs if run.release == ref]
            if not matches and len(ref) >= 4:
                by_commit = [run for run in runs if run.commit_id.startswith(ref)]
                matches = [run for run in by_commit if run.kind != LOCAL] or by_commit
        if not matches:
            known = ", ".join(sorted({run.label for run in runs})[-12:])
            raise HistoryError(f"no run matches {ref!r} in {self.location}; known releases/commits: {known} "
                               f"(or use #ID, latest, previous, latest-release, previous-release)")
        return matches[-1]

    # ---- figures

    def points(self, runs: Sequence[RunInfo], *, test: str | None = None, metric: str | None = None,
               target: str | None = None) -> list[Point]:
        """The figures of ``runs`` (e.g. a :meth:`trend`), filtered by ``--test``/``--metric``/``--target``.

        Each point is labelled as its run is shown: the run's label, ``#ID`` added where a view shows a
        label twice, and ``(incomplete 3/4)`` for a run whose shards are not all in.
        """
        labels = trend_labels(runs)
        by_id = {run.id: run for run in runs}
        found = []
        ids = [run_id for run_id in by_id if run_id is not None]
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = self.store.rows(
                "SELECT r.run_id, r.nodeid, r.target, r.tolerances, m.name, m.value FROM npu_records r "
                f"JOIN npu_metrics m ON m.record_id = r.id WHERE r.run_id IN ({marks}) "
                "ORDER BY r.run_id, r.nodeid, r.target, m.name", chunk)
            for run_id, nodeid, target_name, rules, name, value in rows:
                if not (matches_test(test, nodeid) and _matches(metric, name) and _matches(target, target_name)):
                    continue
                run = by_id[run_id]
                where = f"history database {self.location}, run #{run_id} ({run.label}), {nodeid} [{target_name}]"
                number = _figure(name, value, where)
                own = tuple(sorted(self._json(rules, where).items()))
                found.append(Point(run_id, labels[run_id], run.started_utc, nodeid, target_name, name, number, own))
        return sorted(found, key=lambda p: (p.order, p.test, p.target, p.metric))

    def layers(self, run_id: int, *, test: str | None = None, target: str | None = None
               ) -> dict[tuple[str, str], list[dict]]:
        """Per-layer rows of one run, keyed by (node id, target)."""
        rows = self.store.rows(
            "SELECT r.nodeid, r.target, l.data FROM npu_records r JOIN npu_layers l ON l.record_id = r.id "
            "WHERE r.run_id = ? ORDER BY r.nodeid, r.target, l.position", (run_id,))
        grouped: dict[tuple[str, str], list[dict]] = {}
        for nodeid, target_name, data in rows:
            if matches_test(test, nodeid) and _matches(target, target_name):
                grouped.setdefault((nodeid, target_name), []).append(
                    self._json(data, f"run #{run_id}, {nodeid} [{target_name}] layers"))
        return grouped

    # ---- whole records (merge)

    def stored_records(self, run_id: int) -> list[StoredRecord]:
        """Every record of a run as stored, figures checked, for copying into another database."""
        metrics: dict[int, list[tuple[str, float]]] = {}
        layers: dict[int, list[tuple[int, str]]] = {}
        for record_id, name, value in self.store.rows(
                "SELECT m.record_id, m.name, m.value FROM npu_metrics m JOIN npu_records r ON r.id = m.record_id "
                "WHERE r.run_id = ? ORDER BY m.record_id, m.name", (run_id,)):
            where = f"history database {self.location}, run #{run_id}, record #{record_id}"
            metrics.setdefault(record_id, []).append((name, _figure(name, value, where)))
        for record_id, position, data in self.store.rows(
                "SELECT l.record_id, l.position, l.data FROM npu_layers l JOIN npu_records r ON r.id = l.record_id "
                "WHERE r.run_id = ? ORDER BY l.record_id, l.position", (run_id,)):
            layers.setdefault(record_id, []).append((int(position), data))
        return [StoredRecord(nodeid, target, module, outcome, provenance, tolerances, int(shard), recorded,
                             tuple(metrics.get(record_id, ())), tuple(layers.get(record_id, ())))
                for record_id, nodeid, target, module, outcome, provenance, tolerances, shard, recorded
                in self.store.rows("SELECT id, nodeid, target, module, outcome, provenance, tolerances, shard, "
                                   "recorded_utc FROM npu_records WHERE run_id = ? ORDER BY nodeid, target",
                                   (run_id,))]

    def shards(self, run_id: int) -> list[tuple[int, int, str, str, int]]:
        """(shard, shards, finished_utc, host, records) of each recorded shard of a run."""
        return [(int(a), int(b), c, d, int(e)) for a, b, c, d, e in self.store.rows(
            "SELECT shard, shards, finished_utc, host, records FROM npu_shards WHERE run_id = ? ORDER BY shard",
            (run_id,))]

    def integrity_problems(self) -> list[str]:
        return integrity_problems(self.store)

    def _json(self, text: Any, where: str) -> Any:
        try:
            return json.loads(text or "{}")
        except (TypeError, ValueError) as exc:
            raise HistoryError(f"history database {self.location}, {where}: unreadable JSON ({exc}); the database "
                               f"was left untouched") from exc


def _figure(name: str, value: Any, where: str) -> float:
    number = stored_figure(name, value, where, strict=True)
    assert number is not None            # strict: anything else raised
    return number


def trend_labels(runs: Sequence[RunInfo]) -> dict[int | None, str]:
    """How each run is labelled on a trend: unique, and saying when the run is incomplete."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    labels = {}
    for run in runs:
        label = run.label if counts[run.label] == 1 or run.label == f"run {run.id}" else f"{run.label} #{run.id}"
        if not run.complete:
            label += f" (incomplete {len(set(run.finished))}/{run.expected_shards})"
        labels[run.id] = label
    return labels


@contextmanager
def connect(location: str | os.PathLike[str] | Location, *, create: bool = False) -> Iterator[History]:
    """Open a history for reading (``create``: make it when absent). Older schemas are migrated first."""
    with open_store(location, create=create) as store:
        yield History(store)

