"""Per-layer figures of a compiled model, computed from an emulator trace (never estimated).

A layer's ``cycles`` is the time charged to it: the sum of ``TraceRow.charged`` over its
instructions (``npu.cost.charge``: each cycle of the run goes to the compute or host instruction
running then, the first in program order if several, else to the DMA on the critical path the
NPU is waiting for). The layers' cycles therefore add up to the model's total, a host fallback's
hand-over is charged to the host layer, and work hidden under another layer (a weight prefetch)
costs its own layer nothing. ``busy_cycles`` is what the layer
keeps its busiest engine busy (``compute_cycles`` and ``dma_cycles`` split it into the busiest
compute engine and the busiest DMA channel), overlap or not; ``span_cycles`` from its first
instruction's start to its last one's end. Its roofline is ``max(MACs / peak MACs per cycle,
DMA bytes / DRAM bytes per cycle)`` over the cores it ran on (as the summary's), and
``efficiency = roofline / busy_cycles`` (how well the layer uses the engines while it runs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import tables
from .legalize import sample_shape


def layer_rows(cm, execution) -> list[dict]:
    target = cm.target
    cores = cm.options.get("cores", target.cores)
    by_layer: dict[str, list] = defaultdict(list)
    for row in execution.trace:
        by_layer[row.layer].append(row)
    step_index: dict[str, list[int]] = defaultdict(list)
    for i, step in enumerate(cm.steps):
        step_index[step.name].append(i)
    rows: list[dict] = []
    seen: set[str] = set()
    order = sorted([(i, s) for i, s in enumerate(cm.steps)], key=lambda p: p[0])
    for _, step in order:
        if step.name in seen:
            continue
        seen.add(step.name)
        trace = by_layer.get(step.name, [])
        busy: dict[str, int] = defaultdict(int)
        for r in trace:
            busy[r.engine] += r.cycles
            if r.engine.startswith("dma"):    # the DRAM bus the channels share
                busy["dram_bus"] += math.ceil((r.dram_read + r.dram_write) / target.dram_bytes_per_cycle)
        cycles = sum(r.charged for r in trace)
        busy_cycles = max(busy.values(), default=0)
        compute = max((v for e, v in busy.items() if not e.startswith("dma")), default=0)
        dma = max((v for e, v in busy.items() if e.startswith("dma") or e == "dram_bus"), default=0)
        macs = sum(r.macs for r in trace)
        dram = sum(r.dram_read + r.dram_write for r in trace)
        sram = sum(r.sram_read + r.sram_write for r in trace)
        energy_pj = sum(r.energy_pj for r in trace)
        roofline = 0
        if step.where == "npu":
            dma_bytes = sum(r.dram_read + r.dram_write for r in trace if r.engine.startswith("dma"))
            roofline = math.ceil(max(macs / (target.mac.macs_per_cycle * cores),
                                     dma_bytes / target.dram_bytes_per_cycle))
        idx = step_index[step.name]
        inputs = [n for i in idx for n in cm.steps[i].inputs]
        rows.append({
            "layer": step.name, "op": step.op, "where": step.where, "reason": step.reason,
            "in_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in inputs],
            "out_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in step.outputs],
            "outputs": list(step.outputs),
            "macs": macs, "cycles": cycles, "busy_cycles": busy_cycles, "compute_cycles": compute,
            "dma_cycles": dma,
            "span_cycles": (max(r.end for r in trace) - min(r.start for r in trace)) if trace else 0,
            "instructions": len(trace), "dram_bytes": dram, "sram_bytes": sram,
            "energy_mj": energy_pj * 1e-9,
            "sram_peak": max((cm.memory.step_peak.get(i, 0) for i in idx), default=0),
            "roofline_cycles": roofline,
            "efficiency": (roofline / busy_cycles) if busy_cycles and roofline else None,
        })
    for step in cm.alias_steps:
        rows.append({"layer": step.name, "op": step.op, "where": step.where, "reason": step.reason,
                     "in_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in step.inputs],
                     "out_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in step.outputs],
                     "outputs": list(step.outputs), "macs": 0, "cycles": 0, "busy_cycles": 0, "compute_cycles": 0, "dma_cycles": 0,
                     "span_cycles": 0, "instructions": 0, "dram_bytes": 0,
                     "sram_bytes": 0, "energy_mj": 0.0, "sram_peak": 0, "roofline_cycles": 0,
                     "efficiency": None})
    position = {node.name: i for i, node in enumerate(cm.graph.nodes)}
    rows.sort(key=lambda r: position.get(r["layer"], len(position)))   # graph order, free layers included
    return rows


# --------------------------------------------------------------------------------------------------
# presentation: one column order, one set of units, for the terminal, the HTML reports and the CSV


def _csv_value(value: Any) -> Any:
    """Figures as they are; shapes and lists as the text the tables show."""
    return tables.shape(value) if isinstance(value, (list, tuple)) else value


def _pct(value: Any) -> Any:
    return None if value is None else round(100 * float(value), 2)


def _nj(value: Any) -> Any:
    return None if value is None else round(float(value) * 1e6, 6)        # rows carry mJ


@dataclass(frozen=True)
class LayerColumn:
    """How one figure of a layer row is shown: header with its unit, CSV name, cell text, CSV value.

    A key the compiler adds to the rows without a column here still shows (after these, under its
    own name), so a new figure is never hidden; give it a column to place and format it.
    """

    key: str
    header: str                              # tables: what a person reads, unit included
    csv: str                                 # CSV header: snake_case, unit suffix
    text: Callable[[Any], str] = tables.cell
    value: Callable[[Any], Any] = _csv_value    # CSV: the exact figure, converted to the CSV unit
    right: bool = True                       # figures right-aligned, words left-aligned
    terminal: int = 0                        # terminal tables: 0 = not shown, else keep priority (1 = last dropped)


LAYER_COLUMNS: tuple[LayerColumn, ...] = (
    LayerColumn("layer", "layer", "layer", right=False, terminal=1),
    LayerColumn("op", "op", "op", right=False, terminal=1),
    LayerColumn("where", "where", "where", right=False, terminal=1),
    LayerColumn("cycles", "cycles", "cycles", tables.integer, terminal=1),
    LayerColumn("cycles_share", "cycles %", "cycles_pct", tables.percent, _pct, terminal=2),
    LayerColumn("macs", "MACs", "macs", tables.integer, terminal=3),
    LayerColumn("macs_share", "MACs %", "macs_pct", tables.percent, _pct),
    LayerColumn("mac_util", "MAC util %", "mac_util_pct", tables.percent, _pct, terminal=9),
    LayerColumn("dram_bytes", "DRAM B", "dram_bytes", tables.integer, terminal=5),
    LayerColumn("sram_bytes", "SRAM traffic B", "sram_bytes", tables.integer),
    LayerColumn("sram_peak", "SRAM peak B", "sram_peak_bytes", tables.integer, terminal=7),
    LayerColumn("sram_peak_share", "SRAM peak %", "sram_peak_pct", tables.percent, _pct),
    LayerColumn("energy_mj", "energy nJ", "energy_nj", lambda v: tables.decimal(_nj(v), 3), _nj, terminal=6),
    LayerColumn("efficiency", "roofline %", "roofline_pct", tables.percent, _pct, terminal=8),
    LayerColumn("roofline_cycles", "roofline cycles", "roofline_cycles", tables.integer),
    LayerColumn("busy_cycles", "busy cycles", "busy_cycles", tables.integer),
    LayerColumn("compute_cycles", "compute cycles", "compute_cycles", tables.integer),
    LayerColumn("dma_cycles", "DMA cycles", "dma_cycles", tables.integer),
    LayerColumn("span_cycles", "span cycles", "span_cycles", tables.integer),
    LayerColumn("instructions", "instructions", "instructions", tables.integer),
    LayerColumn("in_shapes", "in", "in_shapes", tables.shapes, tables.shapes, right=False, terminal=4),
    LayerColumn("out_shapes", "out", "out_shapes", tables.shapes, tables.shapes, right=False, terminal=4),
    LayerColumn("reason", "why on the host", "host_reason", right=False),
    LayerColumn("outputs", "output tensors", "output_tensors", lambda v: ", ".join(v or ()),
                lambda v: " ".join(v or ()), right=False),
)
_BY_KEY = {column.key: column for column in LAYER_COLUMNS}
_SHARES = {"cycles_share": "cycles", "macs_share": "macs"}


def layer_view(rows: list[dict], *, peak_macs_per_cycle: float | None = None,
               sram_bytes: int | None = None) -> list[dict]:
    """The rows with the figures derived for reading: each layer's share of the network's cycles and
    MACs, MAC utilisation (``MACs / (cycles x peak MACs per cycle)``, Vela's ``Util% (MAC)``) when the
    peak is known, and SRAM peak as a share of the target's SRAM when its size is known."""
    totals = {key: sum(float(r.get(key) or 0) for r in rows) for key in _SHARES.values()}
    view = []
    for row in rows:
        extra: dict[str, Any] = {}
        for share, key in _SHARES.items():
            if key in row and totals[key]:
                extra[share] = float(row[key] or 0) / totals[key]
        cycles = row.get("cycles")
        if peak_macs_per_cycle and cycles and row.get("where", "npu") == "npu" and "macs" in row:
            extra["mac_util"] = float(row["macs"] or 0) / (cycles * peak_macs_per_cycle)
        if sram_bytes and "sram_peak" in row:
            extra["sram_peak_share"] = float(row["sram_peak"] or 0) / sram_bytes
        view.append({**row, **extra})
    return view


_DERIVED = ("cycles_share", "macs_share", "mac_util", "sram_peak_share")


def layer_columns(rows: list[dict], every: bool = False) -> list[LayerColumn]:
    """The columns these rows fill, in the fixed order, then any key no column describes yet.

    ``every``: also the columns left empty (a CSV keeps the same columns whatever the model)."""
    present = {key for row in rows for key, value in row.items() if value not in (None, "", [])}
    if every:
        present |= {key for row in rows for key in row} | set(_DERIVED)
    known = [column for column in LAYER_COLUMNS if column.key in present]
    unknown = [LayerColumn(key, key, key) for key in dict.fromkeys(k for row in rows for k in row)
               if key not in _BY_KEY and key in present]
    return known + unknown


def table(rows: list[dict], width: int | None = None, **derived: Any) -> str:
    """The per-layer table for a terminal, fitted to ``width`` characters (None: every terminal column)."""
    view = layer_view(rows, **derived)
    columns = [c for c in layer_columns(view) if c.terminal]
    headers = [c.header for c in columns]
    body = [[c.text(row.get(c.key)) for c in columns] for row in view]
    drop = [c.header for c in sorted(columns, key=lambda c: -c.terminal)]
    text, dropped = tables.fit(headers, body, width, drop_order=drop, right=[c.right for c in columns])
    note = tables.left_out_note(dropped, "--csv FILE writes every column", width)
    return text + ("\n" + note if note else "")


def csv_text(rows: list[dict], lead: dict[str, Any] | None = None, **derived: Any) -> str:
    """Every column of every layer as CSV (exact figures, units in the headers); ``lead`` columns first
    (e.g. test and target when several runs share one file)."""
    return csv_of([(lead or {}, rows, derived)])


def csv_of(groups: list[tuple[dict[str, Any], list[dict], dict[str, Any]]]) -> str:
    """Several runs' layers in one CSV: each group is (lead columns, layer rows, ``layer_view`` options)."""
    import csv
    import io

    views = [(lead, layer_view(rows, **derived)) for lead, rows, derived in groups]
    lead_keys = list(dict.fromkeys(key for lead, _ in views for key in lead))
    columns = layer_columns([row for _, view in views for row in view], every=True)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(lead_keys + [c.csv for c in columns])
    for lead, view in views:
        for row in view:
            values = [c.value(row.get(c.key)) for c in columns]
            writer.writerow([lead.get(k, "") for k in lead_keys] + ["" if v is None else v for v in values])
    return out.getvalue()


def text_report(cm) -> str:
    """Supported / unsupported layers with the reason each host layer is on the host."""
    lines = [f"{cm.graph.name or cm.graph.source} on {cm.target.name}: "
             f"{sum(s.where == 'npu' for s in cm.steps)} NPU steps, {len(cm.unsupported())} host layers, "
             f"{len(cm.alias_steps)} free reshapes"]
    unsupported = cm.unsupported()
    rows = {r["layer"]: r for r in cm.layers()} if unsupported else {}
    for layer, op, reason in unsupported:
        row = rows.get(layer, {})
        lines.append(f"  host: {layer} ({op}): {reason} -- costs {row.get('cycles', 0)} cycles "
                     f"({cm.target.cycles_to_ms(row.get('cycles', 0)):.4f} ms), "
                     f"{row.get('energy_mj', 0.0) * 1e3:.3f} uJ")
    return "\n".join(lines)


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else ""


def _kib(value: float | None) -> str:
    return "" if value is None else tables.decimal(value / 1024, 3)


def vela_table(rows: list[dict], width: int | None = None) -> str:
    """Per layer, pytest-npu's figures beside Vela's (rows from ``peers.vela.side_by_side``), fitted
    to ``width`` characters like the layer table."""
    headers = ["layer", "op", "where", "MACs", "Vela MACs", "cycles", "Vela cycles", "ratio", "SRAM peak KiB",
               "Vela SRAM KiB", "DRAM KiB", "Vela off-chip KiB", "Vela operations"]
    body = []
    for r in rows:
        has = "vela_cycles" in r
        body.append([r["layer"], r["op"], r["where"], tables.integer(r["macs"]),
                     tables.integer(r.get("vela_macs")) if has else "", tables.integer(r["cycles"]),
                     tables.integer(r["vela_cycles"]) if has else "",
                     _ratio(r["cycles"], r["vela_cycles"]) if has else "",
                     _kib(r.get("sram_peak")), _kib(r.get("vela_sram_bytes")) if has else "",
                     _kib(r.get("dram_bytes")), _kib(r.get("vela_off_chip_bytes")) if has else "",
                     r.get("vela_ops", "")])
    drop = ["Vela operations", "Vela off-chip KiB", "DRAM KiB", "Vela SRAM KiB", "SRAM peak KiB", "Vela MACs", "MACs"]
    text, dropped = tables.fit(headers, body, width, drop_order=drop,
                               right=[h not in ("layer", "op", "where", "Vela operations") for h in headers])
    note = tables.left_out_note(dropped, "widen the terminal to see them", width)
    return text + ("\n" + note if note else "")


def vela_totals(summary, sram_used: int, estimate) -> str:
    """Whole-network figures of both estimators, with pytest-npu / Vela ratios."""
    off_chip = summary.dram_read_bytes + summary.dram_write_bytes
    vela_off_chip = estimate.off_chip_read_bytes + estimate.off_chip_write_bytes
    body = [["cycles", tables.integer(summary.cycles), tables.integer(estimate.cycles),
             _ratio(summary.cycles, estimate.cycles)],
            ["MACs", tables.integer(summary.macs), tables.integer(estimate.macs), _ratio(summary.macs, estimate.macs)],
            ["SRAM used (KiB)", _kib(sram_used), _kib(estimate.sram_used_bytes),
             _ratio(sram_used, estimate.sram_used_bytes)],
            ["off-chip bytes", tables.integer(off_chip), tables.integer(vela_off_chip), _ratio(off_chip, vela_off_chip)]]
    text, _ = tables.fit(["total", "pytest-npu", "Vela", "ratio"], body, None, right=[False, True, True, True])
    return text
