"""Reports built from the records of a whole run: terminal summary, JSON run record, Markdown.

Only the controller calls these (xdist workers send their records and write nothing). Files are
written atomically so a CI step reading them never sees half a file.
"""

from __future__ import annotations

import json
import math
import platform
from datetime import datetime, timezone

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


def summary_table(records, tablefmt: str = "simple", width: int | None = None) -> str:
    """One row per test x target: the headline figures, host speedup, verdict and breached metrics.

    With ``width`` (a terminal's) the table is made to fit: the test column loses the ``[target]``
    parameter the target column shows, then the columns no budget gates are left out, then the
    module path (when the names stay unique), then the middle of long names, then budgeted
    columns; a line names what was left out.
    """
    from .. import tables

    ordered = sorted(records, key=lambda r: (r.nodeid, r.target))
    shown = [key for key in SUMMARY_METRICS if any(key in r.metrics for r in records)]
    headers = ["test", "target", *shown, "host_ms", "speedup", "verdict"]
    figures = []
    for record in ordered:
        breached = ", ".join(sorted({b.metric for b in record.breaches}))
        verdict = status(record) + (f": {breached}" if breached else "")
        figures.append([record.target, *(_figure(record.metrics.get(key)) for key in shown),
                        _figure(record.host.get("host_ms")), _speedup(record), verdict])
    right = [False, False, *([True] * (len(shown) + 2)), False]

    def attempt(names: list[str], drop: tuple[str, ...] = ()) -> tuple[str, list[str]]:
        rows = [[name, *row] for name, row in zip(names, figures)]
        return tables.fit(headers, rows, width, drop_order=drop, right=right, tablefmt=tablefmt)

    text, dropped = attempt([record.nodeid for record in ordered])
    if width is None or tables.widest(text) <= width:
        return text
    budgeted = {key for record in records for key in record.budgets}
    budgeted |= {"top1"} if "top1_drop" in budgeted else set()          # the column that drop comes from
    free = ("host_ms", "speedup", *(key for key in reversed(shown) if key not in budgeted))
    gated = tuple(key for key in reversed(shown) if key in budgeted)
    names = [tables.without_target(record.nodeid, record.target) for record in ordered]
    short = [name.split("::", 1)[-1] for name in names]
    if len(set(zip(short, (r.target for r in ordered)))) < len(ordered):
        short = names
    text, dropped = attempt(short, free)
    over = tables.widest(text) - width
    longest = max(len(name) for name in short)
    clipped = [tables.shorten(name, max(24, longest - over)) for name in short]
    for test_names, drop in ((names, ()), (names, free), (short, free), (clipped, free),
                             (clipped, free + gated + ("target",))):
        text, dropped = attempt(test_names, drop)
        if tables.widest(text) <= width:
            break
    note = tables.left_out_note(dropped, "--npu-json and --npu-markdown have every column", width)
    return text + ("\n" + note if note else "")


def _figure(value) -> str:
    """A summary cell: ints with separators, floats to 4 digits (never 1e-05), empty when not measured."""
    from .. import tables

    if isinstance(value, float) and value.is_integer() and abs(value) >= 1000:
        return tables.integer(value)
    return tables.decimal(value, 4) if isinstance(value, float) else tables.cell(value)


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


def write_layers_csv(path, records, configured_targets: list[str]) -> None:
    """``--npu-layers-csv``: every record's per-layer rows, led by test and target, in one CSV."""
    from ..compiler.report import csv_of
    from .baseline import atomic_write_text

    known = _loadable_targets(configured_targets)
    groups = []
    for record in sorted(records, key=lambda r: (r.nodeid, r.target)):
        target = known.get(record.target)
        derived: dict = {}
        if target is not None:
            derived["sram_bytes"] = target.sram_bytes
            # MAC utilisation needs the cores the program ran on: known when the test chose them or the
            # target has one; otherwise the compiler picked (all or one), and the column stays empty
            cores = record.provenance.get("compile_options", {}).get("cores")
            cores = int(cores) if cores is not None and str(cores).isdigit() else (
                1 if target.cores == 1 else None)
            if cores is not None:
                derived["peak_macs_per_cycle"] = target.mac.macs_per_cycle * cores
        groups.append(({"test": record.nodeid, "target": record.target}, record.layers, derived))
    atomic_write_text(path, csv_of(groups))


def _loadable_targets(configured: list[str]) -> dict:
    """Targets by name: the configured ones (names or files) and the built-ins, for per-layer peaks."""
    from .. import targets
    from ..errors import TargetError

    found = {}
    for name in [*targets.available(), *configured]:
        try:
            target = targets.load(name)
        except TargetError:
            continue
        found[target.name] = target
    return found

