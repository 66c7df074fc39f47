"""Run history: every run's figures, for trends across commits and releases, in SQLite or PostgreSQL.

Unlike baselines (committed, deterministic, per module), history is volatile and complete: commit,
branch, dirty flag, release label, UTC time, host and plugin version, then every figure, layer and
tolerance rule of every test x target. A SQLite file (the default, ``.npu/history.sqlite``) serves
one machine; a PostgreSQL database (``--npu-history postgresql://...``, the ``postgres`` extra)
serves a team whose suite runs sharded on many CI runners, every shard adding to the same run.

* :mod:`.store`: locations (paths and URLs) and the two drivers behind one small API;
* :mod:`.schema`: one schema for both, its version table, migrations from older files;
* :mod:`.runs`: what a run is, the key its shards share, local vs CI vs release runs;
* :mod:`.write` / :mod:`.read`: recording a shard; runs, trends and figures keyed by full node id;
* :mod:`.compare`: change between runs, judged by each test's own tolerances;
* :mod:`.merge`: several histories (e.g. one SQLite file per shard) made one.
"""

from __future__ import annotations

from .compare import UNRECORDED, Change, Step, changes, steps
from .merge import MergeReport, merge
from .read import VIEWS, History, Point, connect, latest_per_label, matches_test
from .runs import CI, LOCAL, RELEASE, RunInfo, current_run, git_info, run_identity, shard_of
from .schema import SCHEMA_VERSION, open_store
from .store import DEFAULT_PATH, POSTGRESQL, SQLITE, Location, parse_location
from .write import record_run

__all__ = [
    "CI", "DEFAULT_PATH", "LOCAL", "POSTGRESQL", "RELEASE", "SCHEMA_VERSION", "SQLITE",
    "UNRECORDED", "VIEWS", "Change", "History", "Location", "MergeReport", "Point", "RunInfo", "Step", "changes",
    "connect", "current_run", "git_info", "latest_per_label", "matches_test", "merge", "open_store",
    "parse_location", "record_run", "run_identity", "shard_of", "steps",
]
