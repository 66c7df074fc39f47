"""``pytest-npu history``: the recorded figures per release (or commit, or run), regressions flagged;
``pytest-npu history merge``: several histories (one per CI shard) made one.

Exit status: 0, or 1 with ``--fail-on-regression`` when the latest release regressed (each test
judged by its own ``compare=`` rules) or is incomplete; 2 on bad input.
"""

from __future__ import annotations

import argparse

from . import history
from .baseline import atomic_write_text
from .tolerances import Tolerances, option_help

EXIT_REGRESSION = 1
RUNS_HELP = ("which runs make the trend: releases (default: the latest run of each --npu-release label), "
             "ci (also runs recorded by CI under a run key: the latest run of each commit), all (every run, "
             "developers' local runs included)")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=str(history.DEFAULT_PATH),
                        help="history database: a path, sqlite:///PATH or postgresql://USER@HOST/DB "
                             "(default: %(default)s, as written by pytest --npu-history)")
    parser.add_argument("--test", help="glob or substring of the node id or the test's name, e.g. 'test_port*'")
    parser.add_argument("--metric", help="glob of the metric name, e.g. latency_ms or 'energy*'")
    parser.add_argument("--target", help="glob of the target name, e.g. u55-256")
    parser.add_argument("--last", type=int, default=0, metavar="N", help="only the last N releases/commits/runs")
    parser.add_argument("--runs", choices=history.VIEWS, default="releases", help=RUNS_HELP)
    parser.add_argument("--fail", action="append", default=[], metavar="METRIC:AMOUNT",
                        help=option_help("tolerance that flags a step as a regression, over each test's own "
                                         "npu_budget(compare=...) as recorded (which otherwise applies)"))
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 when the latest release/commit/run shown regressed against the one before it "
                             "(or is incomplete)")
    parser.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report with charts")
    actions = parser.add_subparsers(dest="action", metavar="merge")
    merge = actions.add_parser("merge", help="merge histories (e.g. one SQLite file per CI shard) into one",
                               description=history.merge.__doc__)
    merge.add_argument("sources", nargs="+", metavar="SOURCE", help="history databases to read (paths or URLs)")
    merge.add_argument("--into", required=True, metavar="DEST",
                       help="the history to merge into (created when absent; a path or URL)")


def run(args: argparse.Namespace) -> int:
    if args.action == "merge":
        print(history.merge(args.sources, args.into))
        return 0
    tolerances = Tolerances.parse(args.fail, where="--fail")
    with history.connect(args.db) as db:
        runs = db.trend(args.runs)
        points = db.points(runs, test=args.test, metric=args.metric, target=args.target)
        shown = [run for run in runs if any(p.run_id == run.id for p in points)]
        if args.last > 0:
            shown = shown[-args.last:]
            kept = {run.id for run in shown}
            points = [p for p in points if p.run_id in kept]
        layers = db.layers(shown[-1].id or 0, test=args.test, target=args.target) if shown else {}
        others = len(db.runs()) - len(runs)
    if not points:
        print(f"no recorded figures in {db.location} match the filters (runs={args.runs}, test={args.test!r}, "
              f"metric={args.metric!r}, target={args.target!r})" + _others_hint(args.runs, others))
        return 0
    steps = history.steps(points, tolerances)
    regressions = [(step.point, step.change) for step in steps
                   if step.change is not None and step.change.status == "regressed"]
    from tabulate import tabulate

    from ..tables import without_target

    rows = [[without_target(s.point.test, s.point.target), s.point.target, s.point.metric, s.point.label,
             f"{s.point.value:.6g}", "-" if s.change is None else s.change.delta_text, _flag(s)] for s in steps]
    print(tabulate(rows, headers=["test", "target", "metric", "release/commit", "value", "change", "flag"],
                   tablefmt="simple", disable_numparse=True))
    kind = {"releases": "release", "ci": "release/commit", "all": "run"}[args.runs]
    kinds = kind if len(shown) == 1 else kind.replace("/", "s/") + "s"
    print(f"\n{len(shown)} {kinds}, {len(regressions)} regressions between consecutive ones"
          + _others_hint(args.runs, others))
    for run in shown:
        if not run.complete:
            print(f"{run.label} (run #{run.id}) is {run.completeness}: its missing tests are not regressions, "
                  f"they are not recorded yet")
    if args.html:
        from .html import render_history

        atomic_write_text(args.html, render_history(points, layers, regressions, source=str(db.location),
                                                    steps=[(s.point, s.change) for s in steps if s.change]))
        print(f"wrote {args.html}")
    if args.fail_on_regression:
        return _gate(shown, regressions)
    return 0


def _flag(step: history.Step) -> str:
    if step.change is None or step.previous is None:
        return ""
    if step.change.status == "regressed":
        return f"REGRESSED vs {step.previous.label}"
    return "improved" if step.change.status == "improved" else ""


def _others_hint(view: str, others: int) -> str:
    if view == "all" or not others:
        return ""
    wider = "--runs ci or --runs all" if view == "releases" else "--runs all"
    return f" ({others} other run{'s' if others != 1 else ''} not shown: {wider})"


def _gate(shown: list[history.RunInfo], regressions: list) -> int:
    """--fail-on-regression: the latest run shown must be complete and must not have regressed."""
    latest = shown[-1]
    if not latest.complete:
        print(f"FAILED: the latest, {latest.label}, is {latest.completeness}; a gate cannot pass on part of a run")
        return EXIT_REGRESSION
    mine = [change for point, change in regressions if point.run_id == latest.id]
    if mine:
        print(f"FAILED: {latest.label} regressed {len(mine)} figure{'s' if len(mine) != 1 else ''} against "
              f"the {'release' if latest.release else 'run'} before it")
        return EXIT_REGRESSION
    print(f"ok: {latest.label} did not regress against the one before it" if len(shown) > 1 else
          f"ok: {latest.label} is the only one recorded, nothing to regress against")
    return 0
