"""One run from many shards: 4 concurrent pytest processes, each ``-n 2`` with 50 real budget tests,
recording one run into one PostgreSQL history, and the same with a SQLite file per shard and
``pytest-npu history merge``. Also a shard killed with SIGKILL in the middle of writing its records.

    python benchmarks/history_shards.py [--shards 4] [--tests 200] [--json OUT]

Each test compiles and emulates a tiny QDQ model under an ``npu_budget`` (``budget_suite.py``, as
``benchmarks/test_bench_harness.py`` runs it); pytest-split gives each shard its quarter, xdist runs it on 2
workers, and every shard records with the same ``--npu-run-id``. Needs the PostgreSQL server binaries
(``apt-get install postgresql``): a throwaway server is started on a free port and removed at the end.

It prints what the issue asks to see and checks it (a failed check exits 1):

* PostgreSQL: one run, complete, ``--tests`` records; ``pytest-npu history --db postgresql://...``
  shows it; shard 3 run again adds nothing;
* kill -9: shard 3 stopped inside its transaction (the suite's conftest holds it there after half its
  records) and killed; the database passes its integrity checks, holds no record of shard 3, the run
  is shown incomplete; shard 3 run again completes it;
* SQLite + merge: the same two scenarios with a file per shard, merged with ``pytest-npu history merge``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "history"))

from budget_suite import write_budget_suite  # noqa: E402
from postgres_server import Server, find_binaries  # noqa: E402

from pytest_npu import cli  # noqa: E402
from pytest_npu.harness import history  # noqa: E402

# holds the controller inside its history transaction, so the kill lands mid-write for certain
CONFTEST = '''
import os
import time
from pathlib import Path

if os.environ.get("NPU_STALL_MARK"):
    from pytest_npu.harness.history import write

    real = write.write_records

    def stalling(store, run_id, rows):
        real(store, run_id, rows[: len(rows) // 2])
        Path(os.environ["NPU_STALL_MARK"]).write_text("inside the transaction")
        time.sleep(600)

    write.write_records = stalling
'''


def make_suite(directory: Path, tests: int) -> None:
    write_budget_suite(directory, tests)
    (directory / "conftest.py").write_text(CONFTEST)
    (directory / "pytest.ini").write_text("[pytest]\nnpu_baseline = false\n")


def environment(directory: Path, stall: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    for name in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "NPU_STALL_MARK"):
        env.pop(name, None)
    if stall is not None:
        env["NPU_STALL_MARK"] = str(stall)
    return env


def shard(directory: Path, group: int, shards: int, run_id: str, url: str, stall: Path | None = None
          ) -> subprocess.Popen:
    command = [sys.executable, "-m", "pytest", "test_budgets.py", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
               "-n", "2", "--splits", str(shards), "--group", str(group), f"--npu-run-id={run_id}",
               f"--npu-history={url}"]
    return subprocess.Popen(command, cwd=directory, env=environment(directory, stall), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(process: subprocess.Popen, expected: int) -> str:
    out, _ = process.communicate(timeout=900)
    if process.returncode != 0 or f"{expected} passed" not in out:
        raise SystemExit(f"a shard failed (exit {process.returncode}):\n{out[-3000:]}")
    return out


def state(url: str, run_id: str) -> dict:
    with history.connect(url) as db:
        problems = db.integrity_problems()
        runs = [run for run in db.runs() if run.key == f"id:{run_id}"]
        run = runs[0] if runs else None
        records = db.stored_records(run.id or 0) if run else []
        return {"runs": len(runs), "complete": bool(run and run.complete),
                "completeness": run.completeness if run else "absent", "records": len(records),
                "shards": list(run.finished) if run else [], "integrity_problems": problems,
                "recorded_utc": sorted({r.recorded_utc for r in records})}


class Check:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}")
        if not ok:
            self.failed.append(what)


def run_shards(directory: Path, urls: list[str], run_id: str, shards: int, per_shard: int,
               kill: int | None = None) -> dict:
    """All shards at once; shard ``kill`` is held mid-write and killed. Returns timings."""
    mark = directory / f"stall-{run_id}"
    started = time.perf_counter()
    processes = {group: shard(directory, group, shards, run_id, urls[group - 1],
                              mark if group == kill else None) for group in range(1, shards + 1)}
    timings = {}
    for group, process in processes.items():
        if group == kill:
            while not mark.exists():
                if process.poll() is not None:
                    raise SystemExit(f"shard {group} ended before it was killed:\n{process.communicate()[0][-3000:]}")
                time.sleep(0.05)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            timings[f"shard {group}"] = f"killed mid-write (exit {process.returncode})"
            continue
        finish(process, per_shard)
        timings[f"shard {group}"] = round(time.perf_counter() - started, 1)
    timings["all shards"] = round(time.perf_counter() - started, 1)
    return timings


def history_output(url: str) -> list[str]:
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = cli.main(["history", "--db", url, "--runs", "ci", "--metric", "cycles", "--fail-on-regression"])
    lines = printed.getvalue().splitlines()
    return [f"(exit {status})", *lines[:4], "...", *lines[-4:]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--json", metavar="OUT", help="also write the measurements as JSON")
    args = parser.parse_args()
    shards, per_shard = args.shards, args.tests // args.shards
    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("needs the PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    check, report = Check(), {}
    server = Server(binaries).start()
    try:
        with tempfile.TemporaryDirectory(prefix="npu-shards-") as temporary:
            directory = Path(temporary)
            make_suite(directory, args.tests)
            # warm the bytecode cache (not timed)
            finish(shard(directory, 1, args.tests, "warm-up", str(directory / "warm.sqlite")), 1)

            print(f"1. PostgreSQL: {shards} concurrent shards x {per_shard} budget tests, each -n 2, one run key")
            url = server.database()
            report["postgresql"] = run_shards(directory, [url] * shards, "pg-1", shards, per_shard)
            after = state(url, "pg-1")
            check(after["runs"] == 1 and after["complete"] and after["records"] == args.tests,
                  f"one run, {after['completeness']}, {after['records']} records, shards {after['shards']}")
            for line in history_output(url):
                print("     " + line)
            finish(shard(directory, 3, shards, "pg-1", url), per_shard)
            again = state(url, "pg-1")
            check(again["runs"] == 1 and again["records"] == args.tests and again["complete"],
                  f"shard 3 run again: still {again['records']} records in one {again['completeness']} run "
                  f"(shard 3's replaced: {len(again['recorded_utc'])} recording times)")

            print("2. PostgreSQL: shard 3 killed (SIGKILL) in the middle of writing its records")
            report["postgresql_kill"] = run_shards(directory, [url] * shards, "pg-2", shards, per_shard, kill=3)
            killed = state(url, "pg-2")
            check(killed["integrity_problems"] == [] and killed["records"] == args.tests - per_shard
                  and not killed["complete"],
                  f"consistent (integrity checks pass), {killed['records']} records, none of shard 3; "
                  f"{killed['completeness']}")
            for line in history_output(url):
                print("     " + line)
            finish(shard(directory, 3, shards, "pg-2", url), per_shard)
            healed = state(url, "pg-2")
            check(healed["complete"] and healed["records"] == args.tests,
                  f"shard 3 run again: {healed['completeness']}, {healed['records']} records")

            print("3. SQLite: a file per shard, then pytest-npu history merge (and a killed shard)")
            files = [str(directory / f"shard-{group}.sqlite") for group in range(1, shards + 1)]
            report["sqlite_kill"] = run_shards(directory, files, "lite-1", shards, per_shard, kill=3)
            merged = str(directory / "all.sqlite")
            cli.main(["history", "merge", *files, "--into", merged])
            partial = state(merged, "lite-1")
            check(partial["integrity_problems"] == [] and partial["records"] == args.tests - per_shard
                  and not partial["complete"],
                  f"merged after the kill: {partial['records']} records, {partial['completeness']}")
            finish(shard(directory, 3, shards, "lite-1", files[2]), per_shard)
            cli.main(["history", "merge", *files, "--into", merged])
            whole = state(merged, "lite-1")
            check(whole["complete"] and whole["records"] == args.tests,
                  f"shard 3 run again and merged: {whole['completeness']}, {whole['records']} records")
            cli.main(["history", "merge", *files, "--into", merged])
            twice = state(merged, "lite-1")
            check(twice["records"] == args.tests and twice["runs"] == 1, "merged once more: nothing added")
            for line in history_output(merged):
                print("     " + line)
    finally:
        server.stop()
    report["failed"] = check.failed
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({key: value for key, value in report.items() if key != "failed"}, indent=1))
    print("all checks passed" if not check.failed else f"{len(check.failed)} checks FAILED")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
