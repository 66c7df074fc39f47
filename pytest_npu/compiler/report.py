"""Per-layer figures of a compiled model, computed from an emulator trace (never estimated).

A layer's ``cycles`` is the busy time of its critical engine: for each engine, the sum of the
spans of the layer's instructions on it; the largest of those sums (``compute_cycles`` and
``dma_cycles`` split it into the busiest compute engine and the busiest DMA channel). Its roofline is
``max(MACs / peak MACs per cycle, DRAM bytes / DRAM bytes per cycle)`` over the cores it ran on,
and ``efficiency = roofline / cycles``.
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
        cycles = max(busy.values(), default=0)
        compute = max((v for e, v in busy.items() if not e.startswith("dma")), default=0)
        dma = max((v for e, v in busy.items() if e.startswith("dma")), default=0)
        macs = sum(r.macs for r in trace)
        dram = sum(r.dram_read + r.dram_write for r in trace)
        sram = sum(r.sram_read + r.sram_write for r in trace)
        energy_pj = sum(r.energy_pj for r in trace)
        roofline = 0
        if step.where == "npu":
            roofline = math.ceil(max(macs / (target.mac.macs_per_cycle * cores),
                                     dram / target.dram_bytes_per_cycle))
        idx = step_index[step.name]
        inputs = [n for i in idx for n in cm.steps[i].inputs]
        rows.append({
            "layer": step.name, "op": step.op, "where": step.where, "reason": step.reason,
            "in_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in inputs],
            "out_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in step.outputs],
            "macs": macs, "cycles": cycles, "compute_cycles": compute, "dma_cycles": dma,
            "span_cycles": (max(r.end for r in trace) - min(r.start for r in trace)) if trace else 0,
            "instructions": len(trace), "dram_bytes": dram, "sram_bytes": sram,
            "energy_mj": energy_pj * 1e-9,
            "sram_peak": max((cm.memory.step_peak.get(i, 0) for i in idx), default=0),
            "roofline_cycles": roofline,
            "efficiency": (roofline / cycles) if cycles and roofline else None,
        })
    for step in cm.alias_steps:
        rows.append({"layer": step.name, "op": step.op, "where": step.where, "reason": step.reason,
                     "in_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in step.inputs],
                     "out_shapes": [sample_shape(tuple(cm.graph.tensors[n].shape)) for n in step.outputs],
                     "macs": 0, "cycles": 0, "compute_cycles": 0, "dma_cycles": 0, "span_cycles": 0, "instructions": 0, "dram_bytes": 0,
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
