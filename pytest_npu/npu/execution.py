"""What a run returns: outputs, a per-instruction trace and a summary of the modelled figures.

Every number here is computed by the emulator from the instructions it executed; nothing is
estimated after the fact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class TraceRow:
    """One executed instruction. Cycles are NPU clock cycles from the start of the inference."""

    index: int
    opcode: str
    engine: str
    layer: str
    start: int
    end: int
    macs: int = 0
    sram_read: int = 0       # bytes
    sram_write: int = 0
    dram_read: int = 0
    dram_write: int = 0
    elementwise_ops: int = 0
    lut_lookups: int = 0
    host_ops: int = 0
    energy_pj: float = 0.0   # dynamic energy of this instruction (static power is in the summary)
    charged: int = 0         # cycles of [0, makespan) charged to it (npu.cost.charge): they sum to the total

    @property
    def cycles(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Summary:
    """Per-inference figures (a batch of N runs the same program N times in lock-step)."""

    cycles: int
    latency_ms: float
    energy_mj: float
    energy_breakdown_mj: dict[str, float]   # mac, sram, dram, elementwise, lut, host, static
    macs: int
    utilisation: dict[str, float]           # engine -> busy cycles / makespan
    sram_peak_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    roofline_cycles: int                    # max(MACs / peak MACs per cycle, DRAM bytes / DRAM B/cycle)
    efficiency: float                       # roofline_cycles / cycles
    host_cycles: int = 0                    # part of the makespan spent on host fallback ops

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Execution:
    """Outputs (integer arrays, batch first, keyed by program output name), trace and summary."""

    outputs: dict[str, np.ndarray]
    trace: list[TraceRow]
    summary: Summary
    extra: dict = field(default_factory=dict)
