"""``pytest-npu inspect MODEL --target NAME``: what runs where, and what each layer costs.

Every figure comes from compiling the model and running it once on the emulator (timing is
data-independent, so a seeded random batch gives the same per-layer numbers as real data).
``--vela`` also runs Arm's Vela on the ``.tflite`` model for the same target (``peers.vela``) and
prints both sets of figures side by side, per layer and in total, with their ratios.
"""

from __future__ import annotations

import argparse

import numpy as np

from .report import table


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a quantised .tflite or (QDQ/QOperator) .onnx file")
    parser.add_argument("--target", required=True, metavar="NAME|PATH", help="built-in target or .toml")
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="inferences to run (default 1)")
    parser.add_argument("--cores", type=int, default=None, help="schedule on this many cores")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input batch")
    parser.add_argument("--vela", action="store_true",
                        help="also run Arm's Vela on the .tflite model and show its figures beside ours "
                             "(needs the [vela] extra)")


def random_int_inputs(cm, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name in cm.program.inputs:
        info = cm.program.tensors[name]
        lo, hi = np.iinfo(info.dtype).min, np.iinfo(info.dtype).max
        out[name] = rng.integers(lo, hi, size=(batch, *info.shape), endpoint=True).astype(info.dtype)
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
    unsupported = cm.unsupported()
    if unsupported:
        print("run on the host:")
        for layer, op, reason in unsupported:
            print(f"  {layer} ({op}): {reason}")
    else:
        print("run on the host: (none)")
    print()
    print(table(rows))
    s = ex.summary
    print()
    print(f"total: {s.macs} MACs, {s.cycles} cycles = {s.latency_ms:.4f} ms, energy {s.energy_mj * 1e3:.3f} uJ, "
          f"DRAM read {s.dram_read_bytes / 1024:.1f} KiB / written {s.dram_write_bytes / 1024:.1f} KiB, "
          f"SRAM peak {s.sram_peak_bytes / 1024:.1f} KiB")
    print(f"roofline {s.roofline_cycles} cycles -> efficiency {s.efficiency:.2f}"
          + (f"; host fallback {s.host_cycles} cycles" if s.host_cycles else ""))
    if args.vela:
        _print_vela(args.model, cm, rows, s)
    return 0


def _print_vela(model, cm, rows, summary) -> None:
    """Vela's estimate for the same model and target, beside ours (every Vela figure is one it printed)."""
    from ..peers import vela
    from .report import vela_table, vela_totals

    estimate = vela.estimate(model, cm.target)
    print()
    print(f"Vela {estimate.version}: {estimate.accelerator}, {estimate.system_config}, {estimate.memory_mode}")
    print(vela_table(vela.side_by_side(rows, estimate, cm.target)))
    print()
    print(vela_totals(summary, cm.memory.peak, estimate))
