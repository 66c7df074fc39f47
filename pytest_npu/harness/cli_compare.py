"""``pytest-npu compare REF_A REF_B``: gate a release pipeline on two recorded runs, outside pytest.

Exit status: 0 when nothing regressed, 1 on a regression or when either run is incomplete (a shard
has not recorded yet), 2 on bad input (unknown ref, no database). Each test is judged by its own
``npu_budget(compare=...)`` as recorded, with the ``--fail`` rules on top.
``--fail`` rules are the tolerance language of ``--npu-compare-fail`` (``tolerances.py``): each
rule overrides its figure, every other figure keeps its default (exact for the emulator's figures),
``METRIC:off`` shows a figure without gating it and ``'*:off'`` then gates only the figures named.
"""

from __future__ import annotations

import argparse

from . import history
from .tolerances import Tolerances, option_help

EXIT_REGRESSION = 1


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref_a", metavar="REF_A", help="the reference run: release label, commit prefix, "
                                                       "#ID, latest, previous, latest-release, previous-release")
    parser.add_argument("ref_b", metavar="REF_B", help="the run under test (same forms)")
    parser.add_argument("--db", default=str(history.DEFAULT_PATH),
                        help="history database: a path, sqlite:///PATH or postgresql://USER@HOST/DB "
                             "(default: %(default)s)")
    parser.add_argument("--fail", action="append", default=[], metavar="METRIC:AMOUNT",
                        help=option_help("tolerance of a figure, e.g. latency_ms:2%, sqnr_db:0.5, '*:off'"))
    parser.add_argument("--test", help="glob or substring of the test name / node id")
    parser.add_argument("--metric", help="glob of the metric names to show")
    parser.add_argument("--target", help="glob of the target name")
    parser.add_argument("--all", action="store_true", help="show unchanged figures too")


def run(args: argparse.Namespace) -> int:
    tolerances = Tolerances.parse(args.fail, where="--fail")
    with history.connect(args.db) as db:
        run_a, run_b = db.resolve(args.ref_a), db.resolve(args.ref_b)
        filters = {"test": args.test, "metric": args.metric, "target": args.target}
        before = db.points([run_a], **filters)
        after = db.points([run_b], **filters)
    rows = history.changes(before, after, tolerances, before_complete=run_a.complete, after_complete=run_b.complete)
    regressed = [row for row in rows if row.status == "regressed"]
    shown = rows if args.all else [row for row in rows if row.status != "ok"]
    from tabulate import tabulate

    from ..tables import without_target

    print(f"comparing {run_a.label} (run #{run_a.id}, {run_a.started_utc}) -> "
          f"{run_b.label} (run #{run_b.id}, {run_b.started_utc})")
    if shown:
        print(tabulate([[without_target(r.test, r.target), r.target, r.metric, _num(r.before), _num(r.after),
                         r.delta_text, r.tolerance, r.status.upper() if r.status == "regressed" else r.status]
                        for r in shown],
                       headers=["test", "target", "metric", run_a.label, run_b.label, "change", "tolerance",
                                "status"], tablefmt="simple", disable_numparse=True))
    counts = {status: sum(row.status == status for row in rows)
              for status in ("ok", "regressed", "improved", "changed", "new", "gone", history.UNRECORDED)}
    print(", ".join(f"{count} {status}" for status, count in counts.items() if count) or "no figures to compare")
    failed = EXIT_REGRESSION if regressed else 0
    if regressed:
        print(f"FAILED: {len(regressed)} figure{'s' if len(regressed) != 1 else ''} regressed "
              f"from {run_a.label} to {run_b.label}")
    for run in (run_a, run_b):
        if not run.complete:
            print(f"FAILED: {run.label} (run #{run.id}) is {run.completeness}; its unrecorded figures cannot be "
                  f"compared: rerun the missing shards (same run key) or compare complete runs")
            failed = EXIT_REGRESSION
    return failed


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
