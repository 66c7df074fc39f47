"""The case study's figures and the tables that print them (tabulate).

One :class:`PortFigures` per (model variant, target): everything the before/after table shows,
each field computed from what ran (the compressed model's ONNX statistics, the emulator's summary,
the float model's outputs and host timing). Tables are built from these records only, so the printed
table, the HTML report and the generated test's budgets cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tabulate import tabulate

from .. import tables

# Energy components in the order the emulator's Summary.energy_breakdown_mj reports them.
ENERGY_PARTS = ("mac", "sram", "dram", "elementwise", "lut", "host", "static")


@dataclass(frozen=True)
class ModelFigures:
    """What a model is, independent of the NPU: size, work and accuracy on the host (onnxruntime)."""

    name: str                    # "float", "int8", "pruned-kd-int8", ...
    label: str                   # what a person reads: "pruned+KD -> int8"
    precision: str               # "float32", "int8", "int16"
    params: int
    size_kib: float              # weights at their stored width
    macs: int                    # per inference, counted on the ONNX graph
    top1: float | None = None    # onnxruntime on the held-out images (None: not evaluated)


@dataclass(frozen=True)
class PortFigures:
    """One model variant compiled for one target and emulated over the held-out images."""

    model: ModelFigures
    target: str
    samples: int                 # held-out images emulated
    top1: float                  # NPU outputs vs labels
    top1_drop: float             # float model's top-1 minus the NPU's, on the same images
    mse: float                   # NPU logits vs the float model's logits
    sqnr_db: float
    cycles: int                  # per inference (the makespan)
    latency_ms: float
    energy_mj: float
    energy_breakdown_mj: dict[str, float]
    sram_peak_bytes: int
    dram_bytes: int              # DRAM read + written per inference
    roofline_cycles: int
    host_ms: float               # the float model on the host CPU, batch 1, median
    unsupported: tuple[tuple[str, str, str], ...] = ()
    layers: list[dict] = field(default_factory=list, compare=False)

    @property
    def sram_kib(self) -> float:
        return self.sram_peak_bytes / 1024

    @property
    def dram_kib(self) -> float:
        return self.dram_bytes / 1024

    @property
    def speedup(self) -> float:
        """Host CPU time of the float model over the modelled NPU latency."""
        return self.host_ms / self.latency_ms if self.latency_ms > 0 else math.inf

    @property
    def efficiency(self) -> float:
        """Roofline bound over modelled cycles: how close the schedule gets to the hardware's limit."""
        return self.roofline_cycles / self.cycles if self.cycles else 0.0


def _pct(value: float | None) -> str:
    return tables.percent(value)


def _num(value: float | None, digits: int = 3) -> str:
    return tables.decimal(value, digits)


def energy_split(breakdown: dict[str, float], parts: int = 2) -> str:
    """The largest ``parts`` energy components as shares, e.g. 'dram 94% static 4%'."""
    total = sum(breakdown.values())
    if total <= 0:
        return ""
    largest = sorted(breakdown.items(), key=lambda item: -item[1])[:parts]
    return " ".join(f"{name} {value / total:.0%}" for name, value in largest if value > 0)


PORT_HEADERS = ["model", "params", "size KiB", "MACs", "top-1 %", "MSE vs float", "SQNR dB",
                "latency ms", "energy uJ", "energy split", "SRAM KiB", "DRAM KiB", "host ms",
                "speedup"]


PORT_ALIGN = ["left", *["right"] * 8, "left", *["right"] * 4]


def model_row(model: ModelFigures, host_ms: float) -> list:
    """The 'before' row: the float model on the host CPU (no NPU figures)."""
    return [f"{model.label} (host CPU)", tables.integer(model.params), f"{model.size_kib:.1f}",
            tables.integer(model.macs), _pct(model.top1), "", "", "", "", "", "", "", f"{host_ms:.3f}", ""]


def port_row(fig: PortFigures) -> list:
    return [fig.model.label, tables.integer(fig.model.params), f"{fig.model.size_kib:.1f}",
            tables.integer(fig.model.macs), _pct(fig.top1),
            _num(fig.mse), f"{fig.sqnr_db:.1f}", f"{fig.latency_ms:.4f}", f"{fig.energy_mj * 1e3:.3f}",
            energy_split(fig.energy_breakdown_mj), f"{fig.sram_kib:.1f}", f"{fig.dram_kib:.1f}",
            f"{fig.host_ms:.3f}", f"{fig.speedup:.1f}x"]


# left out first when a terminal is too narrow for the whole before/after table
PORT_DROP = ("energy split", "host ms", "size KiB", "params", "SQNR dB", "DRAM KiB", "SRAM KiB", "MACs",
             "MSE vs float")


def port_tables(reference: ModelFigures, figures: list[PortFigures], tablefmt: str = "simple",
                width: int | None = None) -> dict[str, str]:
    """Per target: the float model on the host, then every variant on that target's NPU; with
    ``width``, fitted to it (the least telling columns left out, and named)."""
    out: dict[str, str] = {}
    for target in dict.fromkeys(f.target for f in figures):
        mine = [f for f in figures if f.target == target]
        rows = [model_row(reference, mine[0].host_ms), *(port_row(f) for f in mine)]
        text, dropped = tables.fit(PORT_HEADERS, rows, width, drop_order=PORT_DROP if width else None,
                                   right=[a == "right" for a in PORT_ALIGN], tablefmt=tablefmt)
        note = tables.left_out_note(dropped, "report.html and figures.json have every column", width)
        out[target] = text + ("\n" + note if note else "")
    return out


STEP_HEADERS = ["variant", "step", "params", "size KiB", "MACs", "top-1 %", "MSE vs float", "seconds"]


@dataclass(frozen=True)
class StepFigures:
    """One compression step as the pipeline reported it, plus how long it took here."""

    variant: str
    step: str
    params: int
    size_kib: float
    macs: int
    top1: float | None
    mse: float | None
    seconds: float | None = None


def step_row(s: StepFigures) -> list[str]:
    return [s.variant, s.step, tables.integer(s.params), f"{s.size_kib:.1f}", tables.integer(s.macs),
            _pct(s.top1), _num(s.mse), "" if s.seconds is None else f"{s.seconds:.1f}"]


def steps_table(steps: list[StepFigures], tablefmt: str = "simple") -> str:
    rows = [step_row(s) for s in steps]
    return tabulate(rows, headers=STEP_HEADERS, tablefmt=tablefmt, disable_numparse=True,
                    colalign=["left", "left", *["right"] * 6])


UNSUPPORTED_HEADERS = ["target", "model", "layer", "op", "why it runs on the host"]


def unsupported_table(figures: list[PortFigures], tablefmt: str = "simple") -> str:
    """Every op the NPU could not run, or one line saying everything ran on the NPU."""
    rows = [[f.target, f.model.label, layer, op, reason]
            for f in figures for layer, op, reason in f.unsupported]
    if not rows:
        return "every layer of every model runs on the NPU of every target (no host fallback)"
    return tabulate(rows, headers=UNSUPPORTED_HEADERS, tablefmt=tablefmt, disable_numparse=True)
