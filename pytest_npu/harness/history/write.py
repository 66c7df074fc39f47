"""Recording: a shard's records go in as one transaction, idempotent per test x target x run.

The run row is made first, in a statement of its own (``ON CONFLICT DO NOTHING`` on the run key), so
shards of one run never wait on each other's transactions; then each shard writes its records and
its own row in ``npu_shards`` together. A killed shard therefore leaves the run as it was (its
records absent, the run shown incomplete), and a shard run again replaces its records instead of
adding them twice.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import BudgetUsageError, HistoryError
from .runs import RunInfo
from .schema import now_utc, open_store
from .store import Location, Store


@dataclass(frozen=True)
class StoredRecord:
    """One test x target of one run as the database holds it (JSON fields already encoded)."""

    nodeid: str
    target: str
    module: str
    outcome: str
    provenance: str
    tolerances: str
    shard: int
    recorded_utc: str
    metrics: tuple[tuple[str, float], ...]
    layers: tuple[tuple[int, str], ...]


def stored_figure(name: str, value: Any, where: str, *, strict: bool = False) -> float | None:
    """``value`` as a float worth storing or comparing, or None for what is not a figure (text, bools,
    NaN: "not measured"). A number no figure can be (1e308, a fractional cycle count, a cosine above
    1; the bounds of baseline files) is a HistoryError, and so is, with ``strict`` (reading back, where
    only figures were ever written), anything that is not a number at all."""
    from ..baseline import bad_figure

    number: float | None = None
    if not isinstance(value, (str, bytes, bool)) and value is not None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or math.isnan(number):
        if strict:
            raise HistoryError(f"{where}: metric {name} = {value!r} is not a number (a figure that could not be "
                               f"measured is never stored)")
        return None
    problem = bad_figure(name, number if math.isfinite(number) else ("inf" if number > 0 else "-inf"))
    if problem:
        raise HistoryError(f"{where}: metric {name} = {value!r} {problem}")
    return number


def stored_record(record: Any, shard: int, recorded_utc: str) -> StoredRecord:
    """An :class:`~pytest_npu.harness.session.NpuRecord` (or alike) ready to write; checked before any
    database is touched, so a bad figure never leaves half a shard behind."""
    where = f"{record.nodeid} [{record.target}]"
    metrics = []
    for name, value in sorted(record.metrics.items()):
        number = stored_figure(name, value, where)
        if number is not None:
            metrics.append((name, number))
    layers = tuple((position, json.dumps(layer, sort_keys=True, default=str))
                   for position, layer in enumerate(record.layers or []))
    return StoredRecord(record.nodeid, record.target, record.module or "", getattr(record, "outcome", "") or "",
                        json.dumps(record.provenance or {}, sort_keys=True, default=str), _rules(record),
                        shard, recorded_utc, tuple(metrics), layers)


def _rules(record: Any) -> str:
    """The test's own ``npu_budget(compare=...)`` rules, so history and compare judge each test by
    them later; rules that do not parse failed the test already and are not kept."""
    from ..tolerances import Tolerances

    rules = dict(getattr(record, "tolerances", None) or {})
    try:
        Tolerances.from_mapping(rules, where=record.nodeid)
    except BudgetUsageError:
        return "{}"
    return json.dumps({str(metric): amount for metric, amount in rules.items()}, sort_keys=True, default=str)


def record_run(location: str | os.PathLike[str] | Location, run: RunInfo, records: Iterable[Any], *,
               shard: int = 1) -> int:
    """Add ``records`` to ``run`` as its shard ``shard`` (of ``run.shards``) in one transaction; return
    the run's id. The run is created when no shard made it yet (looked up by ``run.key``)."""
    if not run.key:                                   # no key: a run of its own, as a local pytest run is
        run.key = f"local:{uuid.uuid4().hex}"
    stamp = now_utc("microseconds")
    rows = [stored_record(record, shard, stamp) for record in records]
    with open_store(location, create=True) as store:
        run_id = ensure_run(store, run)
        with store.transaction():
            write_records(store, run_id, rows)
            write_shard(store, run_id, shard, run.expected_shards, stamp, run.host, len(rows))
    run.id = run_id
    return run_id


def ensure_run(store: Store, run: RunInfo) -> int:
    """The id of the run with ``run.key``, created with ``run``'s facts when absent (the first shard's)."""
    known = store.value("SELECT id FROM npu_runs WHERE run_key = ?", (run.key,))
    if known is not None:                # looked up first: a lost insert race would still take an id
        return int(known)
    store.execute(
        "INSERT INTO npu_runs (run_key, kind, started_utc, commit_id, branch, dirty, release, host, plugin_version,"
        " python, extra, shards) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_key) DO NOTHING",
        (run.key, run.kind, run.started_utc, run.commit_id, run.branch, int(run.dirty), run.release, run.host,
         run.plugin_version, run.python, json.dumps(run.extra, sort_keys=True, default=str), run.expected_shards))
    return int(store.value("SELECT id FROM npu_runs WHERE run_key = ?", (run.key,)))


_RECORD = "SELECT id FROM npu_records WHERE run_id = ? AND nodeid = ? AND target = ?"


def write_records(store: Store, run_id: int, rows: Sequence[StoredRecord]) -> None:
    """Insert or replace test x targets of the run with their figures and layers (inside a transaction).

    Five statements, each run for every row at once: no statement waits for another's result (the
    figures find their record by its key), so psycopg sends each batch in one pipeline instead of
    one round trip per record, which is what a database across a network charges for.
    """
    if not rows:
        return
    store.executemany(
        "INSERT INTO npu_records (run_id, nodeid, target, module, outcome, provenance, tolerances, shard,"
        " recorded_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, nodeid, target) DO UPDATE SET"
        " module = excluded.module, outcome = excluded.outcome, provenance = excluded.provenance,"
        " tolerances = excluded.tolerances, shard = excluded.shard, recorded_utc = excluded.recorded_utc",
        [(run_id, row.nodeid, row.target, row.module, row.outcome, row.provenance, row.tolerances, row.shard,
          row.recorded_utc) for row in rows])
    keys = [(run_id, row.nodeid, row.target) for row in rows]
    store.executemany(f"DELETE FROM npu_metrics WHERE record_id = ({_RECORD})", keys)
    store.executemany(f"DELETE FROM npu_layers WHERE record_id = ({_RECORD})", keys)
    store.executemany(f"INSERT INTO npu_metrics (record_id, name, value) SELECT id, ?, ? FROM ({_RECORD}) AS r",
                      [(name, value, run_id, row.nodeid, row.target) for row in rows for name, value in row.metrics])
    store.executemany(f"INSERT INTO npu_layers (record_id, position, data) SELECT id, ?, ? FROM ({_RECORD}) AS r",
                      [(position, data, run_id, row.nodeid, row.target) for row in rows
                       for position, data in row.layers])


def write_shard(store: Store, run_id: int, shard: int, shards: int, finished_utc: str, host: str,
                records: int) -> None:
    """Mark a shard of the run as recorded (inside the transaction that wrote its records)."""
    store.execute(
        "INSERT INTO npu_shards (run_id, shard, shards, finished_utc, host, records) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, shard) DO UPDATE SET shards = excluded.shards, finished_utc = excluded.finished_utc,"
        " host = excluded.host, records = excluded.records",
        (run_id, shard, shards, finished_utc, host, records))

