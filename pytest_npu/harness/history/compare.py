"""Change between runs, judged by each test's own tolerances (shared by `history` and `compare`).

A test's ``npu_budget(compare={...})`` is recorded with its records, so without other rules a step is
judged as the test itself judges a change against its baseline. Rules given to the command
(``--fail``) are the question asked now and sit on top: command line over the test's recorded rules
over the defaults (the one tolerance language of ``tolerances.py``), so ``--fail '*:off' --fail
latency_ms:2%`` still gates latency alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from ..tolerances import Tolerances, compare_metric
from .read import Point

#: a figure one side lacks because that run's shards are not all in (not "new" or "gone")
UNRECORDED = "unrecorded"


@dataclass(frozen=True)
class Change:
    """One figure of one test x target in two runs, classified by the metric's direction."""

    test: str            # the full node id
    target: str
    metric: str
    before: float | None
    after: float | None
    status: str          # ok | regressed | improved | changed (not gated) | new | gone | unrecorded
    tolerance: str

    @property
    def delta_text(self) -> str:
        if self.before is None or self.after is None:
            return "-"
        delta = self.after - self.before
        return f"{delta:+.4g} ({delta / abs(self.before):+.2%})" if self.before else f"{delta:+.4g}"


def _rules(point: Point, given: Tolerances) -> Tolerances:
    if not point.rules:
        return given
    where = f"{point.test} [{point.target}]: npu_budget(compare=...) as recorded"
    return given.over(Tolerances.from_mapping(dict(point.rules), where=where))


def changes(before: Iterable[Point], after: Iterable[Point], tolerances: Tolerances | None = None, *,
            before_complete: bool = True, after_complete: bool = True) -> list[Change]:
    """Pair figures by (node id, target, metric) and classify each pair.

    The rules are ``tolerances`` over the test's own (as recorded with the later figure) over the
    defaults; a rule ``off`` reports "changed", never "regressed"/"improved". A figure missing from an incomplete run
    is "unrecorded", not "new" or "gone".
    """
    given = tolerances or Tolerances()
    old = {(p.test, p.target, p.metric): p for p in before}
    new = {(p.test, p.target, p.metric): p for p in after}
    rows = []
    for key in sorted(set(old) | set(new)):
        test_name, target_name, metric = key
        then, now = old.get(key), new.get(key)
        point = now or then
        assert point is not None
        tolerance = _rules(point, given).for_metric(metric)
        if then is None or now is None:
            status = ("new" if before_complete else UNRECORDED) if then is None else \
                ("gone" if after_complete else UNRECORDED)
            rows.append(Change(test_name, target_name, metric, None if then is None else then.value,
                               None if now is None else now.value, status, str(tolerance)))
            continue
        status = compare_metric(metric, now.value, then.value, tolerance).status
        rows.append(Change(test_name, target_name, metric, then.value, now.value, status, str(tolerance)))
    return rows


@dataclass(frozen=True)
class Step:
    """A point of a trend, the point before it in its series (test x target x metric), and the change."""

    point: Point
    previous: Point | None
    change: Change | None


def steps(points: Sequence[Point], tolerances: Tolerances | None = None) -> list[Step]:
    """Every point of a trend with its change from the previous point of its series (none for a series'
    first point), series by series, each in time order."""
    out: list[Step] = []
    ordered = sorted(points, key=lambda p: (p.test, p.target, p.metric, p.order))
    for _, group in groupby(ordered, key=lambda p: (p.test, p.target, p.metric)):
        previous: Point | None = None
        for point in group:
            change = None if previous is None else changes([previous], [point], tolerances)[0]
            out.append(Step(point, previous, change))
            previous = point
    return out
