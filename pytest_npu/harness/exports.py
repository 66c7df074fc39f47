"""Exports for existing charting tools: pytest-benchmark JSON and github-action-benchmark custom JSON.

github-action-benchmark (``benchmark-action/github-action-benchmark``) already draws gh-pages charts
and raises alerts; feeding it our figures beats growing a dashboard. Its ``tool: pytest`` reads
``--benchmark-json`` files, its ``customSmallerIsBetter`` / ``customBiggerIsBetter`` tools read a list of
``{"name", "unit", "value", "range"?, "extra"?}``. The modelled figures are deterministic, so the
benchmark "stats" of one test are one value repeated (stddev 0), and latency is the modelled one.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from typing import Any

from ..errors import BaselineError
from ..tables import without_target
from .baseline import atomic_write_text, split_nodeid
from .tolerances import higher_is_better

EXTRA_UNITS = {"host_ms": "ms", "speedup": "x", "sram_peak_bytes": "B", "dram_read_bytes": "B",
               "dram_write_bytes": "B", "efficiency": ""}


def unit_of(metric: str) -> str:
    from .markers import METRICS

    known = METRICS.get(metric)
    if known is not None:
        return known.unit
    if metric.endswith("_bytes"):
        return "B"
    return EXTRA_UNITS.get(metric, "")


def _numeric(metrics: dict) -> dict[str, float]:
    return {name: value for name, value in sorted(metrics.items())
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def _label(record: Any) -> str:
    """pytest-benchmark's short name (``TestP.test_port[u55-256]``): its ``fullname`` is the node id."""
    name = split_nodeid(record.nodeid)[1] if "::" in record.nodeid else record.name
    return f"{without_target(name, record.target)}[{record.target}]"


def _series(record: Any, metric: str) -> str:
    """github-action-benchmark keys a chart by name alone: the full node id, so two modules'
    ``test_port`` stay two charts (``tests/test_a.py::test_port [u55-256] cycles``)."""
    return f"{without_target(record.nodeid or record.name, record.target)} [{record.target}] {metric}"


def benchmark_json(records: Iterable[Any], run: Any) -> dict:
    """pytest-benchmark's ``--benchmark-json`` layout, one benchmark per test x target.

    ``stats`` describe the modelled latency in seconds (what pytest-benchmark measures); every other
    figure travels in ``extra_info``. ``group`` is the target, so tools group per NPU.
    """
    benchmarks = []
    for record in records:
        metrics = _numeric(record.metrics)
        seconds = metrics.get("latency_ms", float("nan")) / 1000.0
        rounds = max(int(getattr(record, "runs", 1) or 1), 1)
        stats: dict[str, Any] = {key: seconds for key in ("min", "max", "mean", "median", "q1", "q3",
                                                          "ld15iqr", "hd15iqr")}
        stats.update(stddev=0.0, iqr=0.0, rounds=rounds, iterations=1, outliers="0;0", iqr_outliers=0,
                     stddev_outliers=0, total=seconds * rounds, ops=(1.0 / seconds) if seconds > 0 else 0.0)
        benchmarks.append({
            "group": record.target, "name": _label(record), "fullname": record.nodeid,
            "params": None, "param": record.target, "options": {"timer": "npu-emulator (modelled)"},
            "extra_info": {**metrics, "target": record.target, "provenance": record.provenance},
            "stats": stats,
        })
    return {
        "machine_info": {"node": run.host, "python_version": run.python, "system": platform.system(),
                         "machine": platform.machine(), "python_implementation": platform.python_implementation()},
        "commit_info": {"id": run.commit_id or "unknown", "branch": run.branch, "dirty": run.dirty,
                        "project": os.path.basename(os.getcwd())},
        "benchmarks": benchmarks,
        "datetime": run.started_utc,
        "version": run.plugin_version,
    }


def github_benchmark(records: Iterable[Any], *, bigger: bool) -> list[dict]:
    """``customBiggerIsBetter`` entries (sqnr_db, cosine, top1) or ``customSmallerIsBetter`` (the rest)."""
    entries = []
    for record in records:
        for metric, value in _numeric(record.metrics).items():
            if higher_is_better(metric) != bigger or metric in ("host_ms", "speedup"):
                continue            # host timings are noise on shared runners: never charted as a gate
            entries.append({"name": _series(record, metric), "unit": unit_of(metric),
                            "value": value, "extra": f"{record.nodeid}\nmodelled on {record.target}"})
    return entries


def write(kind: str, path: str | os.PathLike[str], records: list, run: Any) -> None:
    """Write one export atomically; ``kind`` is ``benchmark_json``, ``github`` or ``github_bigger``."""
    if kind == "benchmark_json":
        document: Any = benchmark_json(records, run)
    elif kind in ("github", "github_bigger"):
        document = github_benchmark(records, bigger=kind == "github_bigger")
    else:
        raise BaselineError(f"unknown export kind {kind!r}; use benchmark_json, github or github_bigger")
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
