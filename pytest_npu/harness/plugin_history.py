"""pytest hooks for the run history: where it lives, which run and shard this session records as, and
the recording itself, on the controller once every record has arrived (an xdist worker never writes).

A history that cannot be written (locked beyond the busy timeout, unreachable, damaged) costs nothing
else: the pass/fail summary, baselines and every report and export are written as usual, the summary
says that the run's history was not written and why, and the exit status turns non-zero.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..errors import BudgetUsageError, NpuError
from . import history
from .history.store import hide_password

SESSION_KEY: pytest.StashKey[HistorySession] = pytest.StashKey()
OFF = ("", "off", "false", "no", "0", "none")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("npu", "NPU testing (pytest-npu)")
    group.addoption("--npu-history", metavar="URL", default=None,
                    help="run history: a path, sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB (libpq's "
                         "PGHOST, PGPASSWORD... fill what the URL leaves out; needs the postgres extra). Default "
                         ".npu/history.sqlite under rootdir; ini: npu_history")
    group.addoption("--npu-no-history", action="store_true", default=False,
                    help="do not record this run in the history; ini: npu_history = off")
    group.addoption("--npu-release", metavar="LABEL", default=None,
                    help="label this run in the history as a release (e.g. v1.2): the release trend shows it")
    group.addoption("--npu-run-id", metavar="ID", default=None,
                    help="the run to record into, shared by every shard of one CI run (default: "
                         "GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT under GitHub Actions, else the release label and "
                         "commit, else a local run of its own); such a run shows on the CI trend")
    group.addoption("--npu-shards", metavar="N", type=int, default=None,
                    help="how many shards record into this run; history and compare show it incomplete until "
                         "all N did (default: pytest-split's --splits, else 1)")
    group.addoption("--npu-shard", metavar="K", type=int, default=None,
                    help="which shard this session is, 1..N (default: pytest-split's --group)")
    parser.addini("npu_history", "run history: path, sqlite:///PATH or postgresql://... URL, or 'off'",
                  default=str(history.DEFAULT_PATH))


def pytest_configure(config: pytest.Config) -> None:
    try:
        config.stash[SESSION_KEY] = HistorySession.from_config(config)
    except NpuError as exc:
        raise pytest.UsageError(str(exc)) from None


@dataclass
class HistorySession:
    """This session's place in the history: database, run key, shard; and what the summary says."""

    location: history.Location | None
    rootdir: Path
    release: str
    run_id: str
    shard: int
    shards: int
    is_worker: bool
    invocation: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: pytest.Config) -> HistorySession:
        option = config.option
        location = None
        ini = str(config.getini("npu_history") or "").strip()
        if option.npu_no_history:
            location = None
        elif option.npu_history:                       # a command-line location: from the invocation directory
            location = history.parse_location(option.npu_history, base=config.invocation_params.dir)
        elif ini.lower() not in OFF:                   # an ini location: from the rootdir
            location = history.parse_location(ini, base=config.rootpath)
        release = option.npu_release or ""
        run_id = option.npu_run_id or ""
        if option.npu_run_id is not None and not run_id.strip():
            raise BudgetUsageError("--npu-run-id is empty: give the id every shard of the run shares")
        keyed = bool(run_id.strip() or os.environ.get("GITHUB_RUN_ID", "").strip() or release)
        split = (getattr(option, "group", None), getattr(option, "splits", None))
        shard, shards = history.shard_of(option.npu_shard, option.npu_shards, split, keyed=keyed)
        invocation = [hide_password(str(arg)) for arg in config.invocation_params.args]
        return cls(location, Path(config.rootpath), release, run_id, shard, shards, hasattr(config, "workerinput"),
                   invocation)

    @property
    def sharded(self) -> bool:
        return self.shards > 1 or bool(self.run_id)

    def finish(self, session: pytest.Session, records: list) -> None:
        if self.is_worker or self.location is None:
            return
        if not records and not self.sharded:      # nothing measured; a shard records even then, to be counted
            return
        run = history.current_run(self.rootdir, self.release, extra={"args": self.invocation}, run_id=self.run_id,
                                  shards=self.shards)
        try:
            run_id = history.record_run(self.location, run, records, shard=self.shard)
        except NpuError as exc:
            self.lines.append(f"error: this run's history was not written: {exc}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        shard = f", shard {self.shard} of {self.shards}" if self.shards > 1 else ""
        self.lines.append(f"history: run #{run_id} ({run.label}{shard}) recorded in {self._where()}: "
                          f"{len(records)} test x target record(s)")

    def _where(self) -> str:
        assert self.location is not None
        if self.location.backend == history.SQLITE and self.location.path.is_relative_to(self.rootdir):
            return str(self.location.path.relative_to(self.rootdir))     # short inside the project
        return str(self.location)


def pytest_npu_session_finish(session: pytest.Session, records: list) -> None:
    session.config.stash[SESSION_KEY].finish(session, records)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.is_worker or not state.lines:
        return
    terminalreporter.write_sep("-", "npu history")
    for line in state.lines:
        terminalreporter.write_line(line)
