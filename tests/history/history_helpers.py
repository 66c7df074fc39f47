"""Records and runs for the history tests (imported by the test modules and their subprocesses)."""

from __future__ import annotations

from pytest_npu.harness import history
from pytest_npu.harness.session import NpuRecord

LAYERS = [{"layer": "conv1", "op": "CONV2D", "cycles": 600, "macs": 9000},
          {"layer": "fc", "op": "FULLY_CONNECTED", "cycles": 200, "macs": 640}]


def make_record(test: str = "test_port", target: str = "u55-256", module: str = "tests/test_m.py",
                rules: dict | None = None, **metrics) -> NpuRecord:
    metrics = metrics or {"cycles": 800, "latency_ms": 0.0016, "sqnr_db": 31.5}
    return NpuRecord(nodeid=f"{module}::{test}[{target}]", name=f"{test}[{target}]", module=module,
                     target=target, metrics=metrics, layers=LAYERS, outcome="passed", tolerances=rules or {},
                     provenance={"compiler_version": "0.1.0", "model_sha256": "cd" * 32})


def make_run(release: str = "", commit: str = "", key: str = "", kind: str = "", shards: int = 1,
             started: str = "2026-11-25T10:00:00+00:00") -> history.RunInfo:
    run_key, run_kind = history.run_identity(release=release, commit=commit, run_id=key, environ={})
    return history.RunInfo(started_utc=started, commit_id=commit, release=release, host="ci-1",
                           plugin_version="0.1.0", key=run_key, kind=kind or run_kind, shards=shards)


def record(url: str, release: str = "", commit: str = "", *, key: str = "", kind: str = "", shard: int = 1,
           shards: int = 1, targets: tuple[str, ...] = ("u55-256", "edge-3core"), rules: dict | None = None,
           started: str = "2026-11-25T10:00:00+00:00", **metrics) -> int:
    """One run (or one shard of it): test_port on each of ``targets`` with ``metrics``."""
    run = make_run(release, commit, key, kind, shards, started)
    records = [make_record(target=target, rules=rules, **metrics) for target in targets]
    return history.record_run(url, run, records, shard=shard)
