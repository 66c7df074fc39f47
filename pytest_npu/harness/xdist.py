"""Worker -> controller transport for records under pytest-xdist.

pytest serialises ``report.__dict__`` to send a report from a worker; an extra attribute holding
JSON strings survives that trip (execnet carries builtins only), so the controller rebuilds every
record from the reports it already receives. No side channel, no files written by workers.
"""

from __future__ import annotations

from .session import NpuRecord

ATTRIBUTE = "npu_records"


def is_worker(config) -> bool:
    """True on an xdist worker: it measures and sends, the controller aggregates and writes."""
    return hasattr(config, "workerinput")


def attach(report, records: list[NpuRecord]) -> None:
    setattr(report, ATTRIBUTE, [record.to_json() for record in records])


def extract(report) -> list[NpuRecord]:
    return [NpuRecord.from_json(text) for text in getattr(report, ATTRIBUTE, None) or []]
