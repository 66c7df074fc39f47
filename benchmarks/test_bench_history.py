"""What recording costs: 1,000 records (one shard's transaction) into SQLite and into PostgreSQL.

Each record is the size of a real one: 12 figures and 8 per-layer rows, a provenance. The PostgreSQL
server is a throwaway one on this machine (``tests/history/postgres_server.py``: localhost TCP,
durability off as in the tests), so its figure is the driver's and the server's work, not a
network's; a server across a network adds its round trips (5 statements per record). Each round
records into a fresh database, schema creation included.

Run: ``pytest benchmarks/test_bench_history.py -p no:randomly --benchmark-only``
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "history"))

from postgres_server import Server, find_binaries  # noqa: E402

from pytest_npu.harness import history  # noqa: E402
from pytest_npu.harness.session import NpuRecord  # noqa: E402

RECORDS = 1000
METRICS = {"cycles": 7703.0, "latency_ms": 0.015406, "energy_mj": 0.00107522718, "sram_kib": 7.234375,
           "dram_kib": 1.5, "model_kib": 9.25, "macs": 164_000.0, "mse": 2.1e-5, "max_abs_err": 0.0123,
           "sqnr_db": 39.7, "cosine": 0.99993, "top1": 0.97}
LAYERS = [{"layer": f"node_{i}", "op": "conv2d", "where": "npu", "cycles": 900 + i, "macs": 20_000,
           "dram_read_bytes": 1024, "dram_write_bytes": 0, "outputs": [[8, 8, 4]]} for i in range(8)]


def _records() -> list[NpuRecord]:
    return [NpuRecord(nodeid=f"tests/test_ports.py::test_port[case{i}-u55-256]", name=f"test_port[case{i}-u55-256]",
                      module="tests/test_ports.py", target="u55-256", metrics=dict(METRICS), layers=LAYERS,
                      outcome="passed", tolerances={"latency_ms": "2%"},
                      provenance={"compiler_version": "0.1.0", "model_sha256": "ab" * 32, "target_hash": "cd" * 8})
            for i in range(RECORDS)]


@pytest.fixture(scope="module")
def server():
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install the postgresql package")
    started = Server(binaries).start()
    yield started
    started.stop()


@pytest.mark.benchmark(group="history: record 1,000 records")
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_record_a_thousand_records(benchmark, backend, tmp_path, request):
    records = _records()
    urls = []

    def fresh() -> tuple[tuple, dict]:
        url = str(tmp_path / f"{uuid.uuid4().hex}.sqlite") if backend == "sqlite" else \
            request.getfixturevalue("server").database()
        urls.append(url)
        run = history.RunInfo(started_utc="2026-11-25T10:00:00+00:00", key=f"id:{uuid.uuid4().hex}", kind="ci")
        return (url, run, records), {}

    benchmark.pedantic(history.record_run, setup=fresh, rounds=5, iterations=1)
    per_record_ms = benchmark.stats.stats.min * 1000 / RECORDS
    benchmark.extra_info.update(records=RECORDS, per_record_ms=round(per_record_ms, 3),
                                records_per_s=round(RECORDS / benchmark.stats.stats.min))
    with history.connect(urls[-1]) as db:
        (run,) = db.runs()
        assert run.complete and len(db.stored_records(run.id or 0)) == RECORDS
    print(f"\n{backend}: {per_record_ms:.3f} ms per record (best of 5 rounds of {RECORDS})")
