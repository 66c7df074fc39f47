"""Reports built from the records of a whole run: terminal summary, JSON run record, Markdown.

Only the controller calls these (xdist workers send their records and write nothing). Files are
written atomically so a CI step reading them never sees half a file.
"""

from __future__ import annotations

import json
import math
import platform
from datetime import datetime, timezone

from .verdict import fmt

FORMAT = "pytest-npu-run"
VERSION = 1
SUMMARY_METRICS = ("latency_ms", "cycles", "energy_mj", "sram_kib", "mse", "sqnr_db", "top1")


def status(record) -> str:
    """'ok', 'over budget' (--npu-no-budgets), 'FAILED' (breach made the test fail) or the outcome."""
    if record.outcome in ("xfailed", "xpassed", "skipped"):
        return record.outcome
    if record.breaches:
        return "FAILED" if record.outcome == "failed" else "over budget"
    return "ok" if record.outcome in ("passed", "") else record.outcome


def summary_table(records, tablefmt: str = "simple") -> str:
    """One row per test x target: the headline figures, host speedup, verdict and breached metrics."""
    from tabulate import tabulate

    shown = [key for key in SUMMARY_METRICS if any(key in r.metrics for r in records)]
    headers = ["test", "target", *shown, "host_ms", "speedup", "verdict"]
    rows = []
    for record in sorted(records, key=lambda r: (r.nodeid, r.target)):
        breached = ", ".join(sorted({b.metric for b in record.breaches}))
        verdict = status(record) + (f": {breached}" if breached else "")
        rows.append([record.nodeid, record.target, *(fmt(record.metrics.get(key)) for key in shown),
                     fmt(record.host.get("host_ms")), _speedup(record), verdict])
    return tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def _speedup(record) -> str:
    speedup = record.host.get("speedup")
    return "-" if speedup is None else f"{speedup:.3g}x"


def run_document(records, targets: list[str], enforce: bool) -> dict:
    """The ``--npu-json`` document: every record in full (metrics, budgets, breaches, layers, provenance)."""
    from .. import __version__

    return {
        "format": FORMAT, "version": VERSION, "pytest_npu_version": __version__,
        "datetime": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine_info": {"python": platform.python_version(), "machine": platform.machine(),
                         "system": platform.system()},
        "targets": list(targets), "budgets_enforced": enforce,
        "tests": [{**record.as_dict(), "status": status(record)}
                  for record in sorted(records, key=lambda r: (r.nodeid, r.target))],
    }


def markdown(records, enforce: bool) -> str:
    """A GitHub step summary: counts, the summary table and one details block per breach."""
    failed = [r for r in records if r.breaches]
    lines = ["## pytest-npu", "",
             f"{len(records)} test x target record(s), {len(failed)} with breaches"
             + ("" if enforce else " (budgets not enforced: --npu-no-budgets)") + ".", ""]
    if records:
        lines += [summary_table(records, tablefmt="github"), ""]
    for record in failed:
        from .verdict import breach_table

        lines += [f"<details><summary>{record.nodeid} on {record.target}: {status(record)}</summary>", "",
                  "```", breach_table(record.breaches), "```", "", "</details>", ""]
    return "\n".join(lines)


def write_json(path, records, targets: list[str], enforce: bool) -> None:
    from .baseline import atomic_write_text

    document = _strict(run_document(records, targets, enforce))
    atomic_write_text(path, json.dumps(document, indent=2, sort_keys=True, allow_nan=False,
                                       default=_jsonable) + "\n")


def write_markdown(path, records, enforce: bool) -> None:
    """Appended, never replaced: ``$GITHUB_STEP_SUMMARY`` collects every step's summary."""
    from .baseline import append_text

    append_text(path, markdown(records, enforce) + "\n")


def _strict(value):
    """Strict JSON has no NaN/Infinity: write them as the strings "nan", "inf", "-inf"
    (sqnr_db is +inf when the NPU matches the reference exactly; NaN marks a figure not measured)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def _jsonable(value):
    if isinstance(value, float):
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)
