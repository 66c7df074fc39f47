"""The history tests run against both backends: a SQLite file and a real, throwaway PostgreSQL server.

``history_url`` is parametrised over both; ``postgres`` starts one server per test session (per xdist
worker) and hands each test a database of its own. Without server binaries the PostgreSQL half is
skipped with the reason, unless ``PYTEST_NPU_REQUIRE_POSTGRES`` is set (``.ci/run`` sets it, so CI
never skips).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

# pytester's in-process runs drop every module first imported inside them, and compiled ones cannot
# be imported twice (numpy refuses; psycopg's core would raise the dropped copy's exception classes):
# whatever the inner runs load is imported here, once
import hypothesis.strategies  # noqa: F401
import numpy  # noqa: F401
import psycopg  # noqa: F401
import pytest
import tabulate  # noqa: F401

import pytest_npu.harness.exports  # noqa: F401
import pytest_npu.harness.report  # noqa: F401
import pytest_npu.harness.verdict  # noqa: F401
import pytest_npu.targets  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent))

from postgres_server import REQUIRE_ENV, Server, find_binaries  # noqa: E402

from pytest_npu.harness import history  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server]:
    binaries = find_binaries()
    if binaries is None:
        reason = ("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: "
                  "install the postgresql package (apt-get install postgresql) to run the history tests "
                  "against PostgreSQL too")
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but {reason}", pytrace=False)
        pytest.skip(reason)
    server = Server(binaries).start()
    yield server
    server.stop()


@pytest.fixture(params=[history.SQLITE, history.POSTGRESQL])
def history_url(request, tmp_path) -> str:
    """A new, empty history: a SQLite path, or a database on the session's PostgreSQL server."""
    if request.param == history.SQLITE:
        return str(tmp_path / "history.sqlite")
    return request.getfixturevalue("postgres").database()
