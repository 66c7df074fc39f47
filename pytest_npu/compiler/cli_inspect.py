"""``pytest-npu inspect MODEL --target NAME``: what runs where, and what each layer costs.

Every figure comes from compiling the model and running it once on the emulator (timing is
data-independent, so a seeded random batch gives the same per-layer numbers as real data).
``--vela`` also runs Arm's Vela on the ``.tflite`` model for the same target (``peers.vela``) and
prints both sets of figures side by side, per layer and in total, with their ratios.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import tables
from .report import csv_text, table


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a quantised .tflite or (QDQ/QOperator) .onnx file")
    parser.add_argument("--target", required=True, metavar="NAME|PATH", help="built-in target or .toml")
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="inferences to run (default 1)")
    parser.add_argument("--cores", type=int, default=None, help="schedule on this many cores")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input batch")
    parser.add_argument("--vela", action="store_true",
                        help="also run Arm's Vela on the .tflite model and show its figures beside ours "
                             "(needs the [vela] extra)")
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help="also write every per-layer column as CSV (Vela-like; exact figures, units in headers)")


def random_int_inputs(cm, batch: int, seed: int) -> dict[str, np.ndarray]:
    """``batch`` inferences of seeded random values, as ``run_quantized()`` takes them: the IR's
    dtype (floats for float32 inputs), stacked on a leading axis before the model's own shape."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in cm.program.inputs:
        dtype = cm.program.tensors[name].dtype
        shape = (batch, *cm.graph.boundary(name).shape)
        if dtype == "float32":
            out[name] = rng.standard_normal(shape).astype(np.float32)
        else:
            lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
            out[name] = rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    return out


def run(args: argparse.Namespace) -> int:
    from ..errors import CompileError
    from .api import compile

    if args.batch < 1:
        raise CompileError(f"--batch {args.batch}: pass a positive number of inferences")
    options = {} if args.cores is None else {"cores": args.cores}
    cm = compile(args.model, args.target, **options)
    ex = cm.run_quantized(random_int_inputs(cm, args.batch, args.seed))
    rows = cm.layers(ex)
    npu_ops = sorted({r["op"] for r in rows if r["where"] == "npu"})
    print(f"model {args.model} on {cm.target.name} ({cm.options['cores']} core(s), "
          f"SRAM used {cm.memory.peak / 1024:.1f} of {cm.target.sram_bytes / 1024:.0f} KiB)")
    print(f"supported on the NPU: {', '.join(npu_ops) or '(none)'}")
    unsupported = [s for s in cm.steps if s.where == "host"]
    if unsupported:
        print("run on the host (and what would move each to the NPU):")
        for step in unsupported:
            print(f"  {step.name} ({step.op}): {step.reason}")
            print(f"    to move it: {step.hint}")
    else:
        print("run on the host: (none)")
    print()
    derived = {"peak_macs_per_cycle": cm.target.mac.macs_per_cycle * cm.options["cores"],
               "sram_bytes": cm.target.sram_bytes}
    print(table(rows, width=tables.terminal_width(), **derived))
    s = ex.summary
    print()
    print(f"total: {s.macs:,} MACs, {s.cycles:,} cycles = {s.latency_ms:.4f} ms, energy {s.energy_mj * 1e3:.3f} uJ")
    print(f"memory: DRAM read {s.dram_read_bytes / 1024:.1f} KiB / written {s.dram_write_bytes / 1024:.1f} KiB, "
          f"SRAM peak {s.sram_peak_bytes / 1024:.1f} KiB")
    print(f"roofline {s.roofline_cycles:,} cycles -> efficiency {s.efficiency:.2f}"
          + (f"; host fallback {s.host_cycles:,} cycles" if s.host_cycles else ""))
    if args.csv:
        _write(args.csv, csv_text(rows, **derived))
        print(f"wrote {args.csv}")
    if args.vela:
        _print_vela(args.model, cm, rows, s)
    return 0


def _write(path: str, text: str) -> None:
    from pathlib import Path

    from ..errors import CompileError

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CompileError(f"--csv {path}: cannot write it ({exc.strerror})") from None


def _print_vela(model, cm, rows, summary) -> None:
    """Vela's estimate for the same model and target, beside ours (every Vela figure is one it printed)."""
    from ..peers import vela
    from .report import vela_table, vela_totals

    estimate = vela.estimate(model, cm.target)
    print()
    print(f"Vela {estimate.version}: {estimate.accelerator}, {estimate.system_config}, {estimate.memory_mode}")
    print(vela_table(vela.side_by_side(rows, estimate, cm.target), width=tables.terminal_width()))
    print()
    print(vela_totals(summary, cm.memory.peak, estimate))
