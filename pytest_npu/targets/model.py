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
class BlockTiming:
    """Block-based MAC-array timing: the array works through the output in OFM blocks.

    Follows Arm Vela's Ethos-U55 model (see ``npu/blocks.py``): an operation is cut into OFM
    blocks of ``micro_block`` multiples, the largest a shared input/accumulator buffer of
    ``buffer_banks`` 1 KiB banks holds (banks rounded to the ``*_granules``); each block costs MAC
    cycles (micro-blocks x kernel steps x input-depth passes) against output-stage cycles (the
    ``output_cycles*`` per element), and the slower of the two sets the pace. A target without a
    ``[blocks]`` table uses the lane formula of ``MacArray`` instead.
    """

    micro_block: tuple[int, int]                   # OFM micro-block height, width (depth: ofm_lanes)
    max_block: tuple[int, int, int]                # largest OFM block height, width, depth
    buffer_banks: int                              # 1 KiB banks of the shared IFM/accumulator buffer
    ifm_granules: tuple[int, int, int]             # banks an IFM buffer rounds to: 8-, 16-, 32-bit
    elementwise_ifm_granules: tuple[int, int]      # the same for element-wise inputs: 8-, 16-bit
    accumulator_granules: tuple[int, int, int]     # the same for accumulators: 16-, 32-, 40-bit
    output_cycles: float                           # output stage, cycles/element: conv, FC, avg pool, LUT, rescale
    output_cycles_max_pool: float
    output_cycles_add: float                       # add and sub
    output_cycles_mul: float                       # mul, and any MAC op with 40-bit accumulators
    output_cycles_int32: float                     # binary element-wise on 32-bit operands (softmax's steps)
    activation_cycles_relu: float                  # a fused ReLU-family clamp, cycles/element


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
    blocks: BlockTiming | None = None   # block-based MAC timing ([blocks]); None: the lane formula
    sram_latency_cycles: int = 0        # SRAM access latency, paid by the first block of an operation
    sram_burst_bytes: int = 0           # SRAM burst length: shorter runs waste the rest (0: no penalty)
    io_memory: str = "dram"             # where the graph's inputs and outputs live: "dram" | "sram"
    prefetch_layers: int = 0            # layers ahead a layer's weights may load (0: as many as SRAM holds)
    weight_compression: str = "none"    # "none" | "ethos-u": weight DMAs move the encoded stream
    vela_accelerator: str = ""          # Vela --accelerator-config this target follows ("" = none)
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
