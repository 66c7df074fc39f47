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


def table(rows: list[dict]) -> str:
    from tabulate import tabulate
    body = []
    for r in rows:
        body.append([r["layer"], r["op"], r["where"],
                     " ".join("x".join(map(str, s)) for s in r["in_shapes"]),
                     " ".join("x".join(map(str, s)) for s in r["out_shapes"]),
                     r["macs"], r["cycles"], f"{r['dram_bytes'] / 1024:.1f}", f"{r['sram_peak'] / 1024:.1f}",
                     f"{r['energy_mj'] * 1e3:.3f}",
                     "" if r["efficiency"] is None else f"{r['efficiency']:.2f}"])
    return tabulate(body, headers=["layer", "op", "where", "in", "out", "MACs", "cycles", "DRAM KiB",
                                   "SRAM KiB", "energy uJ", "efficiency"])


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


def vela_table(rows: list[dict]) -> str:
    """Per layer, pytest-npu's figures beside Vela's (rows from ``peers.vela.side_by_side``)."""
    from tabulate import tabulate
    body = []
    for r in rows:
        has = "vela_cycles" in r
        body.append([r["layer"], r["op"], r["where"], str(r["macs"]), str(r.get("vela_macs", "")) if has else "",
                     str(r["cycles"]), str(r.get("vela_cycles", "")) if has else "",
                     _ratio(r["cycles"], r["vela_cycles"]) if has else "",
                     f"{r.get('sram_peak', 0) / 1024:.1f}", f"{r['vela_sram_bytes'] / 1024:.1f}" if has else "",
                     f"{r.get('dram_bytes', 0) / 1024:.1f}", f"{r['vela_off_chip_bytes'] / 1024:.1f}" if has else "",
                     r.get("vela_ops", "")])
    return tabulate(body, headers=["layer", "op", "where", "MACs", "Vela MACs", "cycles", "Vela cycles",
                                   "ratio", "SRAM KiB", "Vela SRAM KiB", "off-chip KiB", "Vela off-chip KiB",
                                   "Vela operations"], disable_numparse=True)


def vela_totals(summary, sram_used: int, estimate) -> str:
    """Whole-network figures of both estimators, with pytest-npu / Vela ratios."""
    from tabulate import tabulate
    off_chip = summary.dram_read_bytes + summary.dram_write_bytes
    vela_off_chip = estimate.off_chip_read_bytes + estimate.off_chip_write_bytes
    body = [["cycles", str(summary.cycles), str(estimate.cycles), _ratio(summary.cycles, estimate.cycles)],
            ["MACs", str(summary.macs), str(estimate.macs), _ratio(summary.macs, estimate.macs)],
            ["SRAM used (KiB)", f"{sram_used / 1024:.1f}", f"{estimate.sram_used_bytes / 1024:.1f}",
             _ratio(sram_used, estimate.sram_used_bytes)],
            ["off-chip bytes", str(off_chip), str(vela_off_chip), _ratio(off_chip, vela_off_chip)]]
    return tabulate(body, headers=["total", "pytest-npu", "Vela", "ratio"], disable_numparse=True,
                    colalign=("left", "right", "right", "right"))
