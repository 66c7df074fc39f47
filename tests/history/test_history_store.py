"""Where a history lives and what is in it: locations, creation, schema versions, migration from the
0.1 file, and every kind of damaged, foreign or hostile stored data refused with a clear error."""

from __future__ import annotations

import builtins
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from history_helpers import make_record, make_run, record

from pytest_npu import cli
from pytest_npu.errors import HistoryError
from pytest_npu.harness import history
from pytest_npu.harness.history import store

V1_FILE = Path(__file__).parent / "data" / "history-v1.sqlite"


# --------------------------------------------------------------------------------------------------
# locations


def test_locations_paths_and_urls(tmp_path):
    assert history.parse_location("h.sqlite", base=tmp_path) == history.Location("sqlite", str(tmp_path / "h.sqlite"))
    assert history.parse_location("sqlite:///runs/h.sqlite", base=tmp_path).path == tmp_path / "runs" / "h.sqlite"
    assert history.parse_location(f"sqlite:///{tmp_path}/h.sqlite").path == tmp_path / "h.sqlite"
    url = "postgresql://npu:s3cret@db.example:5432/npu"
    location = history.parse_location(url)
    assert (location.backend, location.target) == ("postgresql", url)
    assert str(location) == "postgresql://npu:***@db.example:5432/npu"           # never print a password
    assert str(history.parse_location("postgres://db/npu?password=s3cret")) == "postgres://db/npu?password=***"
    assert history.parse_location("postgresql://").backend == "postgresql"       # libpq's PG* variables
    for bad, reason in (("mysql://db/x", "unknown scheme 'mysql'"), ("sqlite://", "in-memory"), ("", "empty")):
        with pytest.raises(HistoryError, match=reason):
            history.parse_location(bad)


# --------------------------------------------------------------------------------------------------
# creation and versions


def test_a_new_sqlite_history_is_created_whole(tmp_path):
    db = tmp_path / "deep" / "h.sqlite"
    record(str(db), release="v1")
    assert sorted(p.name for p in db.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) == ["h.sqlite"]
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
        assert connection.execute("SELECT version FROM npu_schema_version").fetchall() == [(history.SCHEMA_VERSION,)]


def test_schema_versions_on_both_backends(history_url):
    record(history_url, release="v1")
    with history.open_store(history_url) as opened:
        assert opened.value("SELECT MAX(version) FROM npu_schema_version") == history.SCHEMA_VERSION
        opened.execute("INSERT INTO npu_schema_version (version, applied_utc) VALUES (?, ?)", (99, "2030-01-01"))
    with pytest.raises(HistoryError, match="schema version 99, newer than this pytest-npu reads.*untouched"):
        record(history_url, release="v2")
    with pytest.raises(HistoryError, match="schema version 99"):
        with history.connect(history_url):
            pass


def test_reading_needs_a_history_writing_creates_one(history_url, tmp_path):
    if history_url.startswith("postgresql"):
        with pytest.raises(HistoryError, match="holds no pytest-npu history yet"):
            with history.connect(history_url):
                pass
    else:
        with pytest.raises(HistoryError, match="no history database at"):
            with history.connect(history_url):
                pass
    record(history_url)
    with history.connect(history_url) as db:
        assert len(db.runs()) == 1 and db.integrity_problems() == []


@pytest.mark.parametrize("content, message", [
    (b"", "is an empty file, not a pytest-npu history.*delete the file to start a new history"),
    (b"this is not a database" * 100, "is unreadable.*left untouched"),
])
def test_empty_and_corrupt_files_are_refused_untouched(tmp_path, content, message):
    db = tmp_path / "h.sqlite"
    db.write_bytes(content)
    with pytest.raises(HistoryError, match=message):
        record(str(db))
    with pytest.raises(HistoryError, match=message):
        with history.connect(db):
            pass
    assert db.read_bytes() == content


def test_version_1_without_tables_and_foreign_databases_are_refused_untouched(tmp_path):
    claims = tmp_path / "claims-v1.sqlite"
    with sqlite3.connect(claims) as connection:
        connection.execute("PRAGMA user_version = 1")
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    for path, message in ((claims, r"schema version 1\) but lacks the tables runs, records, metrics, layers "
                                   r"\(tables: none\); it was left untouched"),
                          (foreign, r"not a pytest-npu history \(schema version 0, tables: invoices\)")):
        before = path.read_bytes()
        with pytest.raises(HistoryError, match=message):
            record(str(path))
        assert cli.main(["history", "--db", str(path)]) == 2
        assert path.read_bytes() == before


def test_a_damaged_current_schema_is_refused(history_url):
    record(history_url)
    with history.open_store(history_url) as opened:
        opened.execute("DROP TABLE npu_layers")
    with pytest.raises(HistoryError, match="lacks the tables npu_layers; it was left untouched"):
        record(history_url)


def test_concurrent_first_writers_create_one_database(tmp_path):
    """Shards starting together on a missing file: one creates it, the others use it, none finds it empty."""
    db = tmp_path / "h.sqlite"
    errors: list[BaseException] = []

    def shard(index: int) -> None:
        try:
            record(str(db), key="run-1", shard=index, shards=4, targets=(f"t{index}",))
        except BaseException as exc:          # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=shard, args=(index,)) for index in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with history.connect(db) as opened:
        (run,) = opened.runs()
        assert run.complete and len(opened.stored_records(run.id)) == 4


# --------------------------------------------------------------------------------------------------
# the 0.1 file: made by pytest-npu at commit 39487e9 (schema 1) from two modules that both define
# test_port (one with compare={"latency_ms": "10%"}), a parametrised test on two targets, as runs
# v1.0, an unlabelled local run and v1.1


def test_a_version_1_history_is_migrated_keeping_every_figure(tmp_path, capsys, monkeypatch):
    db = tmp_path / "history.sqlite"
    shutil.copy(V1_FILE, db)
    with monkeypatch.context() as patch:               # a migration that cannot write leaves version 1
        patch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
        with sqlite3.connect(db, isolation_level=None) as holder:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(HistoryError, match="schema version 1 .* could not be migrated to version 2.*locked"):
                with history.connect(db):
                    pass
            holder.execute("ROLLBACK")
        holder.close()
    with sqlite3.connect(db) as connection:
        v1_figures = sorted(connection.execute(
            "SELECT runs.release, records.nodeid, records.target, metrics.name, metrics.value FROM metrics "
            "JOIN records ON records.id = metrics.record_id JOIN runs ON runs.id = records.run_id").fetchall())
        v1_layers = connection.execute("SELECT COUNT(*) FROM layers").fetchone()[0]
    assert len(v1_figures) == 48
    with history.connect(db) as opened:
        runs = opened.runs()
        assert [(run.label, run.kind, run.complete) for run in runs] == [
            ("v1.0", "release", True), ("run 2", "local", True), ("v1.1", "release", True)]
        assert len({run.key for run in runs}) == 3 and all(run.key.startswith("legacy:") for run in runs)
        points = opened.points(runs)
        migrated = sorted((run.release, p.test, p.target, p.metric, p.value) for run in runs
                          for p in points if p.run_id == run.id)
        assert migrated == v1_figures
        assert sum(len(rows) for run in runs for rows in opened.layers(run.id or 0).values()) == v1_layers
        assert opened.integrity_problems() == []
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "records", "metrics", "layers"}.isdisjoint(tables)
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
    # the two test_port now make two series: no false regression between them, two rows in compare
    assert cli.main(["history", "--db", str(db), "--metric", "cycles", "--target", "u55-256"]) == 0
    out = capsys.readouterr().out
    assert "test_one.py::test_port " in out and "test_two.py::test_port " in out
    assert out.count("REGRESSED") == 1 and "2 releases, 1 regressions" in out    # test_one: 1000 -> 1100
    assert cli.main(["compare", "v1.0", "v1.1", "--db", str(db), "--metric", "sqnr_db", "--all"]) == 1
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "sqnr_db" in line]
    assert sorted(rows) == ["test_one.py::test_port", "test_two.py::test_multi", "test_two.py::test_multi",
                            "test_two.py::test_port"]
    record(str(db), release="v1.2", started="2030-01-01T00:00:00+00:00")      # and it takes new runs
    with history.connect(db) as opened:
        assert [run.label for run in opened.runs()][-1] == "v1.2"


# --------------------------------------------------------------------------------------------------
# stored figures


@pytest.mark.parametrize("stored, message", [
    ("'NaN'", "cycles = ('NaN'|nan) is not a number"),
    ("1e308", r"cycles = 1e\+308 is outside the range any figure can have"),
    ("-5", r"cycles = -5.0 is outside \[0"),
])
def test_stored_figures_that_no_figure_can_be_are_refused_on_reading(history_url, stored, message):
    record(history_url, release="v1", cycles=800, latency_ms=0.0016)
    with history.open_store(history_url) as opened:
        opened.execute(f"UPDATE npu_metrics SET value = {stored} WHERE name = 'cycles'")
    with history.connect(history_url) as db:
        with pytest.raises(HistoryError, match=rf"run #1 \(v1\), tests/test_m.py::test_port\[.*\] \[.*\]: metric {message}"):
            db.points(db.runs())
        assert len(db.points(db.runs(), metric="latency_ms")) == 2     # the other figures still read


def test_figures_that_cannot_be_are_refused_before_anything_is_written(history_url):
    with pytest.raises(HistoryError, match=r"test_port\[u55-256\] \[u55-256\]: metric latency_ms = 1e\+308"):
        record(history_url, cycles=800, latency_ms=1e308)
    with pytest.raises(HistoryError, match="no history database at|holds no pytest-npu history yet"):
        with history.connect(history_url):                # nothing written, not even the schema
            pass


def test_unmeasured_figures_are_not_stored(history_url):
    record(history_url, cycles=800, sqnr_db=float("nan"), mse=0.0, top1=True, note="text")
    with history.connect(history_url) as db:
        assert {p.metric for p in db.points(db.runs())} == {"cycles", "mse"}


# --------------------------------------------------------------------------------------------------
# locks, drivers, servers


def test_a_history_locked_beyond_the_timeout_is_a_clear_error(history_url, monkeypatch):
    record(history_url)
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.3)
    with history.open_store(history_url) as holder:
        with holder.transaction():
            if holder.backend == history.POSTGRESQL:
                holder.execute("LOCK TABLE npu_runs IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(HistoryError, match=r"stayed locked by another writer for over 0.3 s.*nothing of "
                                                   r"this run was written"):
                record(history_url, release="v2")
    record(history_url, release="v2")                       # and once released, it is written
    with history.connect(history_url) as db:
        assert [run.label for run in db.runs()] == ["run 1", "v2"]


def test_postgresql_without_its_driver_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg":
            raise ImportError("No module named 'psycopg'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(HistoryError, match=r"postgresql://npu:\*\*\*@db/npu is PostgreSQL, whose driver \(psycopg\) "
                                           r"is not installed: pip install 'pytest-npu\[postgres\]'"):
        record("postgresql://npu:s3cret@db/npu")


def test_libpq_environment_variables_fill_a_bare_url(postgres, monkeypatch):
    url = postgres.database()
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(postgres.port))
    monkeypatch.setenv("PGUSER", "npu")
    monkeypatch.setenv("PGDATABASE", url.rpartition("/")[2])
    record("postgresql://", release="v1")
    with history.connect(url) as db:
        assert [run.label for run in db.runs()] == ["v1"]


def test_an_unreachable_server_is_a_clear_error(postgres):
    url = postgres.url().replace(str(postgres.port), "1")             # nothing listens on port 1
    with pytest.raises(HistoryError, match=r"cannot connect to history database postgresql://npu@127.0.0.1:1/"
                                           r"postgres: .*PGHOST"):
        history.record_run(url, make_run(), [make_record()])
