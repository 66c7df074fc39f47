"""What a run is: its facts (commit, release, host...), the key its shards share, and its kind.

A run key names one run however many processes record into it: every shard of a CI run computes
the same key, so their records meet in one run, and a retried shard finds its earlier records
instead of adding a second copy. The key comes from, in order:

1. ``--npu-run-id ID`` (any CI: ``--npu-run-id "$CI_PIPELINE_ID"``);
2. GitHub Actions' ``GITHUB_RUN_ID`` and ``GITHUB_RUN_ATTEMPT`` (and the repository, so one
   database can serve several);
3. the release label and the commit (``--npu-release v1.2`` on the same commit is one run);
4. otherwise a fresh random key: a local run of its own.

The kind decides where a run shows: ``release`` (it has a label) on the release trend, ``ci`` (it
has a key from 1. or 2.) on the commit trend, ``local`` (a developer's run) only when asked for.
"""

from __future__ import annotations

import os
import platform
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ...errors import BudgetUsageError

RELEASE, CI, LOCAL = "release", "ci", "local"
KINDS = (RELEASE, CI, LOCAL)


@dataclass
class RunInfo:
    """Facts about one run; everything a baseline file deliberately leaves out.

    ``shards`` is how many shards make the run complete; ``finished`` (read back from a database)
    the shards whose records are in.
    """

    started_utc: str
    commit_id: str = ""
    branch: str = ""
    dirty: bool = False
    release: str = ""
    host: str = ""
    plugin_version: str = ""
    python: str = ""
    extra: dict = field(default_factory=dict)
    key: str = ""
    kind: str = LOCAL
    shards: int = 1
    finished: tuple[int, ...] = ()
    id: int | None = None

    @property
    def label(self) -> str:
        """The release label, else the short commit (``+dirty`` when uncommitted), else ``run <id>``."""
        if self.release:
            return self.release
        if self.commit_id:
            return self.commit_id[:10] + ("+dirty" if self.dirty else "")
        return f"run {self.id}"

    @property
    def expected_shards(self) -> int:
        return max(self.shards, 1)

    @property
    def missing_shards(self) -> list[int]:
        return sorted(set(range(1, self.expected_shards + 1)) - set(self.finished))

    @property
    def complete(self) -> bool:
        return not self.missing_shards

    @property
    def completeness(self) -> str:
        """``"complete"`` or e.g. ``"incomplete: 3 of 4 shards recorded (missing shard 2)"``."""
        if self.complete:
            return "complete"
        missing = self.missing_shards
        return (f"incomplete: {len(set(self.finished))} of {self.expected_shards} shards recorded "
                f"(missing shard{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))})")


def _git(args: Sequence[str], cwd: str | os.PathLike[str]) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(cwd: str | os.PathLike[str]) -> dict[str, Any]:
    """Commit, branch and dirty flag of the checkout at ``cwd``; empty values where there is no git.

    Falls back to the CI's variables (``GITHUB_SHA``/``GITHUB_REF_NAME``) on shallow or detached
    checkouts, where ``git`` may report ``HEAD`` as the branch.
    """
    commit = _git(["rev-parse", "HEAD"], cwd) or os.environ.get("GITHUB_SHA", "")
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd) or ""
    if branch in ("", "HEAD"):
        branch = os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME", "")
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit_id": commit, "branch": branch, "dirty": bool(status)}


def run_identity(*, release: str = "", commit: str = "", run_id: str = "",
                 environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(key, kind) of this run, by the rules in the module docstring."""
    environ = os.environ if environ is None else environ
    github = environ.get("GITHUB_RUN_ID", "").strip()
    if run_id.strip():
        key = f"id:{run_id.strip()}"
    elif github:
        attempt = environ.get("GITHUB_RUN_ATTEMPT", "").strip() or "1"
        key = f"github:{environ.get('GITHUB_REPOSITORY', '').strip()}:{github}.{attempt}"
    elif release:
        key = f"release:{release}@{commit}"
    else:
        key = f"local:{uuid.uuid4().hex}"
    kind = RELEASE if release else CI if (run_id.strip() or github) else LOCAL
    return key, kind


def current_run(cwd: str | os.PathLike[str], release: str = "", extra: Mapping[str, Any] | None = None, *,
                run_id: str = "", shards: int = 1, environ: Mapping[str, str] | None = None) -> RunInfo:
    """This process's run: git facts of ``cwd``, host, versions, and the key and kind it records under."""
    from ... import __version__

    git = git_info(cwd)
    key, kind = run_identity(release=release, commit=git["commit_id"], run_id=run_id, environ=environ)
    return RunInfo(started_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   release=release, host=platform.node(), plugin_version=__version__,
                   python=platform.python_version(), extra=dict(extra or {}), key=key, kind=kind,
                   shards=shards, **git)


def shard_of(shard: int | None, shards: int | None, split: tuple[int | None, int | None] = (None, None),
             *, keyed: bool) -> tuple[int, int]:
    """(this shard, how many) from ``--npu-shard``/``--npu-shards``, else pytest-split's
    ``--group``/``--splits``, else (1, 1).

    ``keyed``: the run has a key other shards can share; ``--npu-shards`` above 1 without one is
    refused (each shard would record a run of its own). A pytest-split group run without a key is
    recorded as what it is: one shard of a local run, incomplete.
    """
    group, splits = split
    count = shards if shards is not None else splits
    index = shard if shard is not None else group
    if count is None:
        if shard is not None:
            raise BudgetUsageError(f"--npu-shard {shard} needs --npu-shards N: how many shards make the run")
        return 1, 1
    if count < 1:
        raise BudgetUsageError(f"--npu-shards {count}: a run has at least one shard")
    if index is None:
        if count == 1:
            return 1, 1
        raise BudgetUsageError(f"--npu-shards {count} needs --npu-shard K (1..{count}): which shard this process "
                               f"runs (with pytest-split, --group K gives it)")
    if not 1 <= index <= count:
        raise BudgetUsageError(f"shard {index} is not between 1 and {count} (--npu-shard/--npu-shards, or "
                               f"pytest-split's --group/--splits)")
    if shards is not None and count > 1 and not keyed:
        raise BudgetUsageError(
            f"--npu-shards {count} needs a run key that every shard shares, or each shard would record a run of "
            f"its own: pass --npu-run-id ID (e.g. the CI pipeline's id), run under GitHub Actions "
            f"(GITHUB_RUN_ID), or label a release with --npu-release")
    return index, count
