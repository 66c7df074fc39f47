"""Where a history lives and how to talk to it: SQLite files and PostgreSQL servers behind one small API.

Both drivers speak DB-API 2 (the standard library's ``sqlite3``, ``psycopg`` 3); their few
differences stay in this module: placeholders (``?`` in every query of this package, ``%s`` for
psycopg), how a write transaction starts (SQLite's ``BEGIN IMMEDIATE`` takes the write lock up
front, so concurrent writers queue on the busy timeout instead of failing on a lock upgrade), and
how driver errors read. Every value travels as a query parameter, never formatted into SQL.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import HistoryError

SQLITE, POSTGRESQL = "sqlite", "postgresql"
DEFAULT_PATH = Path(".npu") / "history.sqlite"
#: How long a writer waits for another writer's lock before giving up (SQLite's busy timeout,
#: PostgreSQL's lock_timeout). A CI shard's whole transaction takes well under a second.
BUSY_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 10
POSTGRES_EXTRA = "pip install 'pytest-npu[postgres]'"
URL_FORMS = "a file path, sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


@dataclass(frozen=True)
class Location:
    """A history database: a SQLite file (``target`` is its path) or a PostgreSQL conninfo URL."""

    backend: str
    target: str

    @property
    def path(self) -> Path:
        return Path(self.target)

    def __str__(self) -> str:
        return self.target if self.backend == SQLITE else hide_password(self.target)


def parse_location(text: str | os.PathLike[str] | Location, base: str | os.PathLike[str] | None = None) -> Location:
    """A path, ``sqlite:///relative/path``, ``sqlite:////absolute/path`` (SQLAlchemy's spelling) or
    ``postgresql://...`` / ``postgres://...`` (libpq fills what the URL leaves out from ``PGHOST``,
    ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``...). Relative paths are taken from ``base``."""
    if isinstance(text, Location):
        return text
    raw = os.fspath(text).strip()
    scheme, separator, rest = raw.partition("://")
    if not separator:
        if not raw:
            raise HistoryError(f"empty history location; give {URL_FORMS}")
        return Location(SQLITE, str(_absolute(Path(raw), base)))
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return Location(POSTGRESQL, raw)
    if scheme == "sqlite":
        if not rest.startswith("/") or rest.strip("/") == "":
            raise HistoryError(f"history location {raw!r}: write sqlite:///relative/path or sqlite:////absolute/path "
                               f"(an in-memory database would be lost with the run)")
        return Location(SQLITE, str(_absolute(Path(rest[1:]), base)))
    raise HistoryError(f"history location {hide_password(raw)!r} has the unknown scheme {scheme!r}; give {URL_FORMS}")


def _absolute(path: Path, base: str | os.PathLike[str] | None) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() or base is None else Path(base) / path


def hide_password(text: str) -> str:
    """``postgresql://npu:secret@db/npu`` -> ``postgresql://npu:***@db/npu``, also inside a longer text (a
    command-line argument) and in ``password=`` parameters: no password is printed or stored."""
    text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
    return re.sub(r"(password=)[^&\s]*", r"\1***", text)


# --------------------------------------------------------------------------------------------------
# an open connection


class Store:
    """One connection to a history database, with the dialect's differences and its errors translated."""

    def __init__(self, location: Location, connection: Any):
        self.location = location
        self.backend = location.backend
        self.connection = connection
        self._errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        if self.backend == POSTGRESQL:
            import psycopg

            self._errors = (psycopg.Error,)

    def sql(self, query: str) -> str:
        if self.backend == SQLITE:
            return query
        assert "%" not in query, "a literal % would be taken for a psycopg placeholder"
        return query.replace("?", "%s")

    def execute(self, query: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.connection.execute(self.sql(query), tuple(params))
        except self._errors as exc:
            raise self.error(exc) from exc

    def executemany(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            self.connection.cursor().executemany(self.sql(query), [tuple(row) for row in rows])
        except self._errors as exc:
            raise self.error(exc) from exc

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple]:
        return [tuple(row) for row in self.execute(query, params).fetchall()]

    def value(self, query: str, params: Sequence[Any] = ()) -> Any:
        row = self.execute(query, params).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write: everything inside commits together or not at all (a killed process's
        transaction is rolled back by the database, so readers never see half of it)."""
        if self.backend == SQLITE:
            self.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise
            self.execute("COMMIT")
            return
        try:
            with self.connection.transaction():
                yield
        except self._errors as exc:          # raised by the COMMIT itself
            raise self.error(exc) from exc

    def error(self, exc: BaseException) -> HistoryError:
        """A driver error as a HistoryError that names the database and says what to do."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if _is_lock_timeout(exc):
            return HistoryError(
                f"history database {self.location} stayed locked by another writer for over {BUSY_TIMEOUT_S:g} s "
                f"({text}); nothing of this run was written to it. Find the process that holds it (a hung "
                f"pytest, an open sqlite3 shell) or record into another database with --npu-history")
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return HistoryError(f"history database {self.location} is unreadable ({text}); it was left "
                                f"untouched. Move it away to start a new history")
        return HistoryError(f"history database {self.location}: {text}")

    def close(self) -> None:
        with contextlib.suppress(*self._errors):      # a connection the server already dropped is closed
            self.connection.close()


def _is_lock_timeout(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    return getattr(exc, "sqlstate", None) == "55P03"          # PostgreSQL lock_not_available


# --------------------------------------------------------------------------------------------------
# opening


def connect_sqlite(path: Path) -> Store:
    """A connection to an existing SQLite file (autocommit: transactions are explicit)."""
    location = Location(SQLITE, str(path))
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open history database {path}: {exc}") from exc
    store = Store(location, connection)
    try:
        store.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        store.execute("PRAGMA foreign_keys = ON")
    except HistoryError:
        store.close()
        raise
    return store


def create_sqlite(path: Path, initialise: Any) -> None:
    """Create the file whole or not at all: ``initialise(store)`` builds the schema in a temporary file
    beside it, which is then hard-linked into place (fails if another process got there first, whose
    file is then used). So no reader or writer ever meets a half-made or empty database file, and an
    empty file at the path is always a damaged or foreign one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HistoryError(f"cannot create history database {path}: {exc}") from exc
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        store = connect_sqlite(temporary)
        try:
            store.execute("PRAGMA journal_mode = WAL")       # persistent: readers never block the writer
            initialise(store)
        finally:
            store.close()
        try:
            os.link(temporary, path)     # atomic and never overwrites: another shard may have won the race
        except FileExistsError:
            return                       # it did; its database is the one to use (the finally removes ours)
        except OSError:                  # a filesystem without hard links: a plain rename if still absent
            if not path.exists():
                os.replace(temporary, path)
    except OSError as exc:
        raise HistoryError(f"cannot create history database {path}: {exc}") from exc
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            if leftover.exists():
                leftover.unlink()


def connect_postgresql(location: Location) -> Store:
    try:
        import psycopg
    except ImportError:
        raise HistoryError(f"history database {location} is PostgreSQL, whose driver (psycopg) is not "
                           f"installed: {POSTGRES_EXTRA}") from None
    try:
        connection = psycopg.connect(location.target, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                     application_name="pytest-npu")
    except psycopg.Error as exc:
        text = str(exc).strip().replace("\n", " ")
        raise HistoryError(f"cannot connect to history database {location}: {text}. Check the URL and the "
                           f"server (libpq fills what the URL leaves out from PGHOST, PGPORT, PGUSER, "
                           f"PGPASSWORD, PGDATABASE)") from None
    store = Store(location, connection)
    store.execute("SELECT set_config('lock_timeout', ?, false)", (f"{int(BUSY_TIMEOUT_S * 1000)}ms",))
    return store
