"""``pytest-npu run PROGRAM.npuprog --target NAME``: run a saved program on random inputs.

Prints the trace summary (cycles, latency, energy by class, roofline efficiency) and a table per
engine (busy cycles, utilisation, instructions) computed from the run.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from tabulate import tabulate

from .execution import Execution
from .isa import FLOAT_DTYPES, dtype_range


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("program", help="a .npuprog file (Program.save / pytest-npu asm -o)")
    parser.add_argument("--target", required=True, help="built-in target name or path to a target TOML")
    parser.add_argument("--batch", type=int, default=1, help="inferences run in lock-step (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")


def format_execution(execution: Execution, target) -> str:
    """Summary and per-engine table of one run, as text."""
    s = execution.summary
    lines = [
        f"target {target.name}: {s.cycles} cycles = {s.latency_ms:.4f} ms at {target.clock_mhz:g} MHz",
        f"energy {s.energy_mj * 1e3:.3f} uJ per inference: " + ", ".join(
            f"{k} {v * 1e3:.3f}" for k, v in s.energy_breakdown_mj.items()) + " (uJ)",
        f"MACs {s.macs:,}; DRAM read {s.dram_read_bytes:,} B, write {s.dram_write_bytes:,} B; "
        f"SRAM peak {s.sram_peak_bytes:,} B of {target.sram_bytes:,}",
        f"roofline {s.roofline_cycles} cycles -> efficiency {s.efficiency:.1%}; host {s.host_cycles} cycles",
        "",
    ]
    counts = Counter(row.engine for row in execution.trace)
    busy: Counter[str] = Counter()
    for row in execution.trace:
        busy[row.engine] += row.cycles
    dma_count = sum(n for engine, n in counts.items() if engine.startswith("dma"))
    table = [(engine, counts.get(engine, 0), busy.get(engine, 0), f"{util:.1%}")
             if engine != "dram_bus" else   # the bus carries every DMA's data phase
             (engine, f"({dma_count} DMA)", round(util * s.cycles), f"{util:.1%}")
             for engine, util in s.utilisation.items()]
    lines.append(tabulate(table, headers=["engine", "instructions", "busy cycles", "utilisation"]))
    return "\n".join(lines)


def random_inputs(program, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Uniform random integers over each input's full dtype range (standard normal floats for a
    float32 input: a model whose quantisation happens inside the program)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in program.inputs:
        info = program.tensor(name)
        if info.dtype in FLOAT_DTYPES:
            out[name] = rng.standard_normal((batch, *info.shape)).astype(info.dtype)
            continue
        lo, hi = dtype_range(info.dtype)
        out[name] = rng.integers(lo, hi + 1, size=(batch, *info.shape)).astype(info.dtype)
    return out


def run(args: argparse.Namespace) -> int:
    from ..errors import NpuError
    from ..targets import load
    from .emulator import Emulator
    from .program import Program

    if args.batch < 1:
        raise NpuError(f"--batch {args.batch}: give at least 1")
    program = Program.load(args.program)
    target = load(args.target)
    if program.target_hash and program.target_hash != target.content_hash():
        print(f"note: {args.program} was built for target {program.target} ({program.target_hash}); "
              f"running on {target.name} ({target.content_hash()})")
    execution = Emulator(target).run(program, random_inputs(program, args.batch, args.seed))
    print(f"{args.program}: {len(program.instructions)} instructions, batch {args.batch}, seed {args.seed}")
    print(format_execution(execution, target))
    return 0
