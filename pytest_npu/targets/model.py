"""The Target dataclass: everything the compiler and the emulator know about an NPU.

A target is data, not code: it is loaded from a TOML file (see ``loader.py`` for the schema and
validation). Field names mirror the TOML keys; units are in the names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class MacArray:
    """Per-core MAC array: ``ofm_lanes x ifm_lanes x pixel_lanes`` int8 MACs per cycle.

    ofm_lanes: output channels computed in parallel; ifm_lanes: input channels reduced per cycle
    (the dot-product width); pixel_lanes: output pixels computed in parallel. Small channel counts
    and depthwise convolutions leave lanes idle; the cost model charges for them.
    """

    ofm_lanes: int
    ifm_lanes: int
    pixel_lanes: int

    @property
    def macs_per_cycle(self) -> int:
        return self.ofm_lanes * self.ifm_lanes * self.pixel_lanes


@dataclass(frozen=True)
class Limits:
    """Instruction-set limits; an op outside them is legalised to the host (or refused)."""

    max_kernel: int          # largest kernel height/width
    max_stride: int
    max_dilation: int
    max_channels: int        # largest channel count per instruction
    max_padding: int         # largest padding on any side


@dataclass(frozen=True)
class Energy:
    """Energy per counted action (picojoules) and static power (milliwatts)."""

    mac_int8_pj: float
    mac_int16_pj: float
    sram_read_pj_per_byte: float
    sram_write_pj_per_byte: float
    dram_pj_per_byte: float
    elementwise_pj: float
    lut_pj: float
    host_pj_per_op: float
    static_mw: float


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    sources: tuple[str, ...]
    clock_mhz: float
    cores: int
    mac: MacArray
    int16_factor: float          # int16 MAC throughput relative to int8 (0.5 = half speed)
    elementwise_width: int       # elements per cycle of the element-wise unit
    lut_width: int               # lookups per cycle of the LUT unit
    overhead_cycles: int         # fixed cycles per instruction (command decode, pipeline fill)
    sram_bytes: int
    sram_bytes_per_cycle: float
    dram_bytes: int              # size of the emulated DRAM (model, constants, activations)
    dram_bytes_per_cycle: float  # shared by all DMA channels
    dram_latency_cycles: int
    dram_burst_bytes: int
    dma_channels: int
    rounding: str                # "single" | "double" (TOSA RESCALE) | "tflite" (LiteRT's reference kernels)
    operations: frozenset[str]   # instruction kinds the NPU executes, see npu.isa.OPERATIONS
    dtypes: frozenset[str]       # activation dtypes: "int8", "int16"
    limits: Limits
    fallback: str                # "host" | "error": what happens to ops the NPU can't run
    host_ops_per_second: float   # host CPU throughput for fallback ops (modelled, not measured)
    host_overhead_us: float      # fixed cost of handing a tensor to the host and back
    energy: Energy
    path: Path | None = field(default=None, compare=False)
    model_note: str = ""         # says plainly that this is a model following public figures

    @property
    def macs_per_cycle(self) -> int:
        """Peak int8 MACs per cycle over all cores."""
        return self.mac.macs_per_cycle * self.cores

    def cycles_to_ms(self, cycles: float) -> float:
        return cycles / (self.clock_mhz * 1e3)

    def supports(self, operation: str) -> bool:
        return operation in self.operations

    def content_hash(self) -> str:
        """Hash of every figure that determines compiled programs and their costs (not the path)."""
        data = asdict(self)
        data.pop("path", None)
        blob = json.dumps(data, sort_keys=True, default=_jsonable).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value))
