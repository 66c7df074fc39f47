"""``pytest-npu history merge A.sqlite B.sqlite ... --into all.sqlite``: shards' histories made one.

For teams without a shared database: each CI shard records into a SQLite file of its own (same run
key), uploads it as an artifact, and a last job merges them. The rules are the recording rules: runs
meet by run key, records by test x target x run (the newer recording wins, an equal one is left as
it is), shards by number; each source run is copied in one transaction. So merging a file twice, or
a retried shard's file next to its first attempt, adds nothing twice, and the merged run is complete
exactly when every shard's file is in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import HistoryError
from .read import History, connect
from .runs import RunInfo
from .store import SQLITE, Location, parse_location
from .write import ensure_run, write_records, write_shard


@dataclass
class MergeReport:
    """What a merge did, for the command's summary line."""

    sources: int = 0
    runs: int = 0
    runs_created: int = 0
    records_added: int = 0
    records_replaced: int = 0
    records_unchanged: int = 0
    shards_added: int = 0

    def __str__(self) -> str:
        return (f"merged {self.sources} histories: {self.runs} runs ({self.runs_created} new), records "
                f"{self.records_added} added, {self.records_replaced} replaced by a newer recording, "
                f"{self.records_unchanged} already there; {self.shards_added} shards added")


def _same(a: Location, b: Location) -> bool:
    if a.backend == b.backend == SQLITE:
        return Path(a.target).resolve() == Path(b.target).resolve()
    return a == b


def merge(sources: Sequence[str | os.PathLike[str] | Location], into: str | os.PathLike[str] | Location
          ) -> MergeReport:
    """Copy every run of ``sources`` into ``into`` (created when absent) by the rules above."""
    destination = parse_location(into)
    locations = [parse_location(source) for source in sources]
    for location in locations:
        if _same(location, destination):
            raise HistoryError(f"cannot merge {location} into itself; give another --into")
    report = MergeReport()
    with connect(destination, create=True) as target:
        for location in locations:
            with connect(location) as source:
                report.sources += 1
                for run in source.runs():
                    _merge_run(source, target, run, report)
    return report


def _merge_run(source: History, target: History, run: RunInfo, report: MergeReport) -> None:
    source_id = run.id or 0
    rows = source.stored_records(source_id)            # read (and checked) before anything is written
    shards = source.shards(source_id)
    store = target.store
    known = store.value("SELECT id FROM npu_runs WHERE run_key = ?", (run.key,))
    run_id = ensure_run(store, run)
    report.runs += 1
    report.runs_created += known is None
    with store.transaction():
        present = {(nodeid, target_name): recorded for nodeid, target_name, recorded in store.rows(
            "SELECT nodeid, target, recorded_utc FROM npu_records WHERE run_id = ?", (run_id,))}
        newer = [row for row in rows if present.get((row.nodeid, row.target), "") < row.recorded_utc]
        write_records(store, run_id, newer)
        replaced = sum((row.nodeid, row.target) in present for row in newer)
        report.records_added += len(newer) - replaced
        report.records_replaced += replaced
        report.records_unchanged += len(rows) - len(newer)
        finished = dict(store.rows("SELECT shard, finished_utc FROM npu_shards WHERE run_id = ?", (run_id,)))
        for shard, count, finished_utc, host, records in shards:
            if shard not in finished or finished_utc > finished[shard]:
                write_shard(store, run_id, shard, count, finished_utc, host, records)
                report.shards_added += shard not in finished
