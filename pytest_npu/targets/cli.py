"""``pytest-npu targets [NAME|PATH]``: compare the built-in targets, or show one in full;
``pytest-npu targets --show PATH`` prints a target file resolved (its ``base`` filled in) as TOML.

Derived columns (peak GOPS, total MACs) are computed from the loaded Target, so the table can
never disagree with the TOML it came from.
"""

from __future__ import annotations

import argparse

from tabulate import tabulate

from ..npu.isa import OPERATIONS
from . import available, load, to_toml
from .model import Target


def peak_gops(target: Target) -> float:
    """Peak int8 throughput: 2 ops (multiply + add) per MAC per cycle over all cores."""
    return 2 * target.macs_per_cycle * target.clock_mhz / 1e3


def _dtypes(target: Target) -> list[str]:
    return sorted(target.dtypes, key=lambda name: int(name.removeprefix("int")))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="NAME|PATH",
                        help="a built-in target name or a .toml file; omit to list the built-ins")
    parser.add_argument("--show", metavar="NAME|PATH", default=None,
                        help="print the target as the complete TOML file pytest-npu reads (a file with "
                             "base = ... shown with every inherited key filled in)")


def run(args: argparse.Namespace) -> int:
    if args.show is not None:
        print(resolved_toml(args.show), end="")
    elif args.target is None:
        print(summary_table([load(name) for name in available()]))
    else:
        print(details(load(args.target)))
    return 0


def resolved_toml(name_or_path: str) -> str:
    """The complete file behind ``name_or_path``: a file that loads to the same target, hash included."""
    target = load(name_or_path)
    where = f" from {target.path.name}" if target.path is not None else ""
    return (f"# {target.name}{where}, resolved: every key as pytest-npu reads it "
            f"(content hash {target.content_hash()})\n" + to_toml(target))


def summary_table(targets: list[Target]) -> str:
    rows = [[t.name, t.cores, t.macs_per_cycle, f"{t.clock_mhz:g}", f"{peak_gops(t):,.0f}",
             f"{t.sram_bytes / 1024:g}", f"{t.dram_bytes_per_cycle:g}", ",".join(_dtypes(t)),
             ",".join(sorted(OPERATIONS - t.operations)) or "-"]
            for t in targets]
    headers = ["name", "cores", "MACs/cycle", "clock MHz", "peak GOPS", "SRAM KiB", "DRAM B/cycle",
               "dtypes", "runs on host"]
    return tabulate(rows, headers=headers, colalign=("left",) + ("right",) * 6 + ("left", "left"))


def details(t: Target) -> str:
    mac, lim, en = t.mac, t.limits, t.energy
    rows = [
        ("clock", f"{t.clock_mhz:g} MHz"),
        ("cores", t.cores),
        ("MAC array per core", f"{mac.ofm_lanes} ofm x {mac.ifm_lanes} ifm x {mac.pixel_lanes} pixel "
                               f"= {mac.macs_per_cycle} MACs/cycle"),
        ("peak int8", f"{t.macs_per_cycle} MACs/cycle = {peak_gops(t):,.1f} GOPS"),
        ("int16 rate", f"{t.int16_factor:g} x int8"),
        ("element-wise / LUT", f"{t.elementwise_width} / {t.lut_width} elements per cycle"),
        ("overhead", f"{t.overhead_cycles} cycles per instruction"),
        ("SRAM", f"{t.sram_bytes / 1024:g} KiB at {t.sram_bytes_per_cycle:g} B/cycle"),
        ("DRAM", f"{t.dram_bytes / 2**20:g} MiB at {t.dram_bytes_per_cycle:g} B/cycle "
                 f"({t.dram_bytes_per_cycle * t.clock_mhz / 1e3:g} GB/s), latency "
                 f"{t.dram_latency_cycles} cycles, burst {t.dram_burst_bytes} B"),
        ("DMA channels", t.dma_channels),
        ("rounding", t.rounding),
        ("dtypes", ", ".join(_dtypes(t))),
        ("operations", ", ".join(sorted(t.operations))),
        ("runs on host", ", ".join(sorted(OPERATIONS - t.operations)) or "-"),
        ("limits", f"kernel <= {lim.max_kernel}, stride <= {lim.max_stride}, dilation <= "
                   f"{lim.max_dilation}, channels <= {lim.max_channels}, padding <= {lim.max_padding}"),
        ("unsupported ops", f"fallback = {t.fallback}"),
        ("host", f"{t.host_ops_per_second:.3g} ops/s, {t.host_overhead_us:g} us per hand-over"),
        ("energy MAC", f"{en.mac_int8_pj:g} pJ int8, {en.mac_int16_pj:g} pJ int16"),
        ("energy SRAM", f"{en.sram_read_pj_per_byte:g} pJ/B read, {en.sram_write_pj_per_byte:g} pJ/B write"),
        ("energy DRAM", f"{en.dram_pj_per_byte:g} pJ/B"),
        ("energy other", f"element-wise {en.elementwise_pj:g} pJ, LUT {en.lut_pj:g} pJ, "
                         f"host {en.host_pj_per_op:g} pJ/op"),
        ("static power", f"{en.static_mw:g} mW"),
        ("content hash", t.content_hash()),
        ("file", t.path or "-"),
    ]
    sources = "\n".join(f"  - {s}" for s in t.sources)
    return (f"{t.name}: {t.description}\n\n{tabulate(rows, tablefmt='plain')}\n\n"
            f"Sources:\n{sources}\n\nNote: {t.model_note}")
