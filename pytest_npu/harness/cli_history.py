"""``pytest-npu history``: the recorded figures per release (or per commit), regressions flagged."""

from __future__ import annotations

import argparse
from itertools import groupby

from . import history
from .baseline import atomic_write_text
from .tolerances import Tolerances, option_help


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=str(history.DEFAULT_PATH),
                        help="history database (default: %(default)s, as written by pytest --npu-history)")
    parser.add_argument("--test", help="glob or substring of the test name / node id, e.g. 'test_port*'")
    parser.add_argument("--metric", help="glob of the metric name, e.g. latency_ms or 'energy*'")
    parser.add_argument("--target", help="glob of the target name, e.g. u55-256")
    parser.add_argument("--last", type=int, default=0, metavar="N", help="only the last N releases/commits")
    parser.add_argument("--every-run", action="store_true",
                        help="one row per run instead of the latest run of each release/commit")
    parser.add_argument("--fail", action="append", default=[], metavar="METRIC:AMOUNT",
                        help=option_help("tolerance that flags a step as a regression"))
    parser.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report with charts")


def run(args: argparse.Namespace) -> int:
    tolerances = Tolerances.parse(args.fail, where="--fail")
    with history.connect(args.db, create=False) as connection:
        points = history.points(connection, test=args.test, metric=args.metric, target=args.target,
                                latest_per_label=not args.every_run)
        if args.last > 0:
            kept = sorted({p.run_id for p in points})[-args.last:]
            points = [p for p in points if p.run_id in kept]
        latest_run = max((p.run_id for p in points), default=None)
        layers = history.layers_of_run(connection, latest_run, test=args.test, target=args.target) \
            if latest_run is not None else {}
    if not points:
        print(f"no recorded figures in {args.db} match the filters "
              f"(test={args.test!r}, metric={args.metric!r}, target={args.target!r})")
        return 0
    rows, regressions = table_rows(points, tolerances)
    from tabulate import tabulate

    print(tabulate(rows, headers=["test", "target", "metric", "release/commit", "value", "change", "flag"],
                   tablefmt="simple", disable_numparse=True))
    labels = list(dict.fromkeys(p.label for p in sorted(points, key=lambda p: p.run_id)))
    print(f"\n{len(labels)} releases/commits, {len(regressions)} regressions between consecutive ones")
    if args.html:
        from .html import render_history

        atomic_write_text(args.html, render_history(points, layers, regressions, source=str(args.db)))
        print(f"wrote {args.html}")
    return 0


Regression = tuple[history.Point, history.Change]


def table_rows(points: list[history.Point], tolerances: Tolerances) -> tuple[list[list[str]], list[Regression]]:
    """One row per figure per release; each step compared with the release before it."""
    rows: list[list[str]] = []
    regressions: list[Regression] = []
    ordered = sorted(points, key=lambda p: (p.test, p.target, p.metric, p.run_id))
    for (test_name, target_name, metric), group in groupby(ordered, key=lambda p: (p.test, p.target, p.metric)):
        previous: history.Point | None = None
        for point in group:
            flag, change = "", "-"
            if previous is not None:
                step = history.changes([previous], [point], tolerances)[0]
                change = step.delta_text
                if step.status == "regressed":
                    flag = f"REGRESSED vs {previous.label}"
                    regressions.append((point, step))
                elif step.status == "improved":
                    flag = "improved"
            rows.append([test_name, target_name, metric, point.label, f"{point.value:.6g}", change, flag])
            previous = point
    return rows, regressions
