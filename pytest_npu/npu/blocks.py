"""Block-based timing of one NPU operation: the terms of Arm Vela's Ethos-U55 performance model.

A target with a ``[blocks]`` table (:class:`~pytest_npu.targets.model.BlockTiming`) times its MAC
array the way Vela 5.2.0 does (its default C++ core, ``regor``: ``architecture/ethosu55/
ethos_u55.cpp`` and ``ethos_u55_performance.cpp`` in the ethos-u-vela sources; the legacy Python
core in the wheel, ``ethosu/vela/architecture_features.py`` and ``npu_performance.py``, has the
same terms). Each term below names the Vela function it follows:

* **Block config** (``FindBlockConfig``/``TryBlockConfig``): the operation is cut into OFM blocks,
  multiples of the micro-block (H x W from ``micro_block``, depth ``ofm_lanes``) up to
  ``max_block``, whose IFM block and accumulators fit the shared buffer (``buffer_banks`` 1 KiB
  banks, 2 reserved for output, 2 at the end for a LUT when there are more than 16, each area
  double-buffered and rounded to its granule). Of the blocks that fit, the one that fetches the
  fewest IFM and weight bytes per output element wins; convolutions choose between depth-first
  and part-kernel-first traversal by utilisation (``ChooseKernelMethod``).
* **MAC cycles per block** (``EstimateMacCyclesPerBlock``): micro-blocks x kernel steps (sub-kernels
  of at most 8 x 8) x passes over the input depth, each micro-block pass at least the 4-cycle
  accumulator write-back; a 2-cycle stall when a block is a single micro-block wide and tall.
* **Output stage** (``EstimateAOCyclesPerElement``): cycles per output element of the block by
  operation (``output_cycles*``), at least ``activation_cycles_relu`` with a fused ReLU; bias and
  scale reads (10 bytes per channel at the weight memory's latency) per block.
* **Operation cycles** (``EstimateMacOpCycles``): the slower of MAC and output stage sets the pace
  over all blocks, the other adds one block (pipeline fill/drain); a command-issue floor of a
  quarter of (memory + MAC + output) cycles per block; plus, once per operation, the latency and
  transfer of the first IFM block and last OFM block (``EstimateMinimumMemoryCycles``), the term
  measured against Vela's per-operation estimate (``est_op_cycles_without_buffering``).
* **Element-wise** (``EstimateElementwiseCycles``): output-stage cycles per element (of the OFM
  rounded up to whole 16-channel bricks unless it is a graph output), floored by the
  command-issue rate.
* **SRAM access** (``MeasureElementAccess``, ``ElementTransferToBytes``): IFM bytes re-read for
  every OFM block and sub-kernel, weights re-read for every OFM block position, OFM written once;
  reads and writes shorter than a burst (NHWC graph inputs/outputs with few channels) move whole
  bursts. An operation takes at least its SRAM bytes over the SRAM bandwidth (``MeasureAccessCycles``).

Everything is a pure function of shapes and the target's figures, cached: the same instruction
always costs the same, which the event-driven schedule (``cost.py``) relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..targets.model import BlockTiming

SUBKERNEL_MAX = 8          # Ethos-U55 _subkernelMax: kernels are split into <= 8 x 8 sub-kernels
OFM_SPLIT_DEPTH = 16       # FindBlockConfig: block depths above it step in multiples of 16
BANK_BYTES = 1024          # shared-buffer bank size
RESERVED_OUTPUT_BANKS = 2
ACC_BITS = {16: 16, 32: 32, 40: 40}
BIAS_BYTES_PER_CHANNEL = 10   # Ethos-U scale/bias stream: 40-bit bias, 32-bit scale, 6-bit shift
WRITEBACK_CYCLES = 32         # per micro-block pass of 8 channels: accumulator write-back (cyclesWb)
CMD_ISSUE_DPUS = 4            # EstimateMacOpCycles: command issue limit per DPU
BRICK_DEPTH = 16              # NHCWB16: feature maps between NPU operations in 16-channel bricks


def _cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _round_up(a: int, b: int) -> int:
    return _cdiv(a, b) * b


Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class BlockOp:
    """One NPU operation as the block model sees it (shapes are (H, W, C) per sample).

    kind: "conv" | "depthwise" | "vector" (fully connected) | "pool" | "elementwise".
    output: the output-stage class: "default" | "max_pool" | "add" | "mul" | "int32" (a binary
    element-wise step on 32-bit operands).
    """

    kind: str
    ifm: Shape3
    ofm: Shape3
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    ifm_bits: int = 8
    ofm_bits: int = 8
    output: str = "default"
    relu: bool = False
    ifm2: Shape3 | None = None       # element-wise second operand (None: unary or a scalar)
    scalar: bool = False             # element-wise with a scalar operand
    bias: bool = False               # reads a scale/bias stream
    ifm_linear: bool = False         # IFM stored NHWC (a graph input); else NHCWB16 bricks
    ofm_linear: bool = False


@dataclass(frozen=True)
class BlockConfig:
    ofm: Shape3
    ifm: Shape3
    part_kernel: bool
    acc_bits: int


@dataclass(frozen=True)
class OpCycles:
    """Cycles of one operation: ``total`` = the pace-setting unit over all blocks + startup."""

    total: int
    mac: int          # MAC cycles per block x blocks (0 for element-wise)
    output: int       # output-stage cycles per block x blocks
    startup: int      # first IFM block in, last OFM block out
    fill: int         # one block of the stage that does not set the pace (pipeline fill/drain)
    blocks: float
    config: BlockConfig

    def continuing(self) -> int:
        """Cycles when the operation follows a slice of itself: the pipeline is already full."""
        return self.total - self.startup - self.fill


def _dilated(op: BlockOp) -> tuple[int, int]:
    return ((op.kernel[0] - 1) * op.dilation[0] + 1, (op.kernel[1] - 1) * op.dilation[1] + 1)


def _part_kernel(ifm_depth: int, ifm_bits: int, kernel: tuple[int, int]) -> bool:
    """ChooseKernelMethod: part-kernel-first when it uses the array better than depth-first."""
    if ifm_depth <= 8:
        return True
    elements = kernel[0] * kernel[1]
    depth_util = ifm_depth / _round_up(ifm_depth, 32 if ifm_bits == 8 else 16)
    part_util = ifm_depth / _round_up(ifm_depth, 8) * (elements / _round_up(elements, 4 if ifm_bits == 8 else 2))
    return part_util >= depth_util


def _fits(blocks: BlockTiming, elementwise: bool, scalar: bool, ofm: Shape3, ifm: Shape3, ifm_bits: int,
          ifm_granule: int, acc_bits: int, acc_granule: int) -> bool:
    """TryBlockConfig: do the double-buffered IFM block and the accumulators fit the banks?"""
    reserved_end = 2 if blocks.buffer_banks > 16 else 0
    ifm_bytes = ifm[0] * ifm[1] * _round_up(ifm[2] * ifm_bits // 8, 8)
    ifm_banks = _round_up(_cdiv(ifm_bytes, BANK_BYTES) * 2, ifm_granule)
    acc_start = blocks.buffer_banks - reserved_end
    ifm_end = RESERVED_OUTPUT_BANKS + ifm_banks
    if not elementwise:
        acc_bytes = ofm[0] * ofm[1] * _round_up(ofm[2], 8) * acc_bits // 8
        acc_start -= _round_up(_cdiv(acc_bytes, BANK_BYTES) * 2, acc_granule)
        return ifm_end <= acc_start
    return ifm_end + (0 if scalar else ifm_banks) <= acc_start


@lru_cache(maxsize=4096)
def block_config(blocks: BlockTiming, ofm_lanes: int, ifm_lanes: int, op: BlockOp) -> BlockConfig:
    """FindBlockConfig: the OFM block with the least IFM + weight fetch per output element."""
    uh, uw = blocks.micro_block
    ud = ofm_lanes
    elementwise = op.kind == "elementwise"
    pooling = op.kind == "pool"
    depthwise = op.kind == "depthwise"
    equal_depth = elementwise or pooling or depthwise
    ifm = op.ifm if op.ifm2 is None or _elements(op.ifm) >= _elements(op.ifm2) else op.ifm2
    part = op.kind == "conv" and _part_kernel(ifm[2], op.ifm_bits, op.kernel)
    acc_bits = 40 if (op.ifm_bits == 16 and not pooling and not elementwise) else 32
    acc_granule = blocks.accumulator_granules[{16: 0, 32: 1, 40: 2}[acc_bits]]
    bits_index = {8: 0, 16: 1, 32: 2}[op.ifm_bits]
    ifm_granule = (blocks.elementwise_ifm_granules[min(bits_index, 1)] if elementwise
                   else blocks.ifm_granules[bits_index])
    dil_h, dil_w = _dilated(op)
    repeats = _cdiv(dil_w, SUBKERNEL_MAX) * _cdiv(dil_h, SUBKERNEL_MAX)
    if op.ifm_bits == 16:
        ifm_block_depth = _round_up(min(ifm[2], 16), 4)
    else:
        ifm_block_depth = _round_up(min(ifm[2], 16 if part else 32), ifm_lanes)
    weight_area = op.kernel[0] * op.kernel[1] if op.kind in ("conv", "depthwise") else 0
    # an axis the OFM does not extend along needs no stride (a global pool reads one window)
    stride = (1 if op.ofm[0] == 1 else op.stride[0], 1 if op.ofm[1] == 1 else op.stride[1])
    mh, mw, md = blocks.max_block
    search = (_round_up(min(op.ofm[0], mh), uh), _round_up(min(op.ofm[1], mw), uw), _round_up(min(op.ofm[2], md), ud))
    ofm_elements = _elements(op.ofm)
    best: float = math.inf
    best_cover: float = math.inf
    chosen: BlockConfig | None = None
    wont_fit: set[tuple[int, int]] = set()
    depth = max(ud, min(search[2], OFM_SPLIT_DEPTH))
    if depth < op.ofm[2]:
        depth = _round_up(depth, OFM_SPLIT_DEPTH)
    f32 = np.float32
    while depth <= search[2]:
        for height in range(uh, search[0] + 1, uh):
            for width in range(uw, search[1] + 1, uw):
                if (height, width) in wont_fit:
                    continue
                ifm_h = _round_up((height - 1) * stride[0] + min(dil_h, SUBKERNEL_MAX), uh)
                ifm_w = _round_up((width - 1) * stride[1] + min(dil_w, SUBKERNEL_MAX), uw)
                ifm_block = (ifm_h, ifm_w, depth if equal_depth else ifm_block_depth)
                block_h = min(height, op.ofm[0]) if (op.ofm[0] == 1 and op.kernel[0] == 1 and uh == 2) else height
                if not _fits(blocks, elementwise, op.scalar, (block_h, width, depth), ifm_block, op.ifm_bits,
                             ifm_granule, acc_bits, acc_granule):
                    wont_fit.add((height, width))
                    continue
                full = (_cdiv(op.ofm[0], block_h), _cdiv(op.ofm[1], width), _cdiv(op.ofm[2], depth))
                frac = (f32(op.ofm[0]) / f32(block_h), f32(op.ofm[1]) / f32(width), f32(op.ofm[2]) / f32(depth))
                weight_fetch = f32(weight_area * ifm[2] * full[0] * full[1])
                if not depthwise:
                    weight_fetch *= frac[2] * f32(depth)
                ifm_fetch = f32(ifm_h * ifm_w * ifm[2] * repeats) * frac[1] * frac[0]
                if not equal_depth:
                    ifm_fetch *= f32(full[2])
                cost = (f32(ofm_elements) / f32(height * width * depth) if elementwise
                        else (ifm_fetch + weight_fetch) / f32(ofm_elements))
                if _elements(ifm) < _elements(ifm_block) * 2:
                    cost = cost / f32(2)
                if cost > best:
                    continue
                if cost == best:
                    cover = f32(ifm[0] * ifm[1]) / f32(max(min(ifm[0], ifm_h) * min(ifm[1], ifm_w), 1))
                    if not (cover <= best_cover and height <= 4 and width <= 4):
                        continue
                    best_cover = float(cover)
                else:
                    best_cover = math.inf
                best = float(cost)
                chosen = BlockConfig((height, width, depth), ifm_block, part, acc_bits)
        depth += ud
        if depth < op.ofm[2]:
            depth = _round_up(depth, OFM_SPLIT_DEPTH)
    if chosen is None:   # nothing fits (not reached for legal shapes): the smallest block
        chosen = BlockConfig((uh, uw, ud), (uh, uw, ifm_block_depth), part, acc_bits)
    return chosen


def _elements(shape: Shape3) -> int:
    return int(shape[0]) * int(shape[1]) * int(shape[2])


def _micro_block(blocks: BlockTiming, ofm_lanes: int, op: BlockOp) -> Shape3:
    """GetOfmMicroBlock: 1 x 4 for a conv/FC over a single even-width row with a 1-high kernel."""
    uh, uw = blocks.micro_block
    if uh == 2 and op.kind in ("conv", "vector") and op.ofm[0] == 1 and op.ofm[1] % 2 == 0 and op.kernel[0] == 1:
        return (1, 4, ofm_lanes)
    return (uh, uw, ofm_lanes)


def _clip(a: Shape3, b: Shape3) -> Shape3:
    return (min(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]))


def mac_cycles_per_block(blocks: BlockTiming, ofm_lanes: int, ifm_lanes: int, op: BlockOp, cfg: BlockConfig) -> int:
    """EstimateMacCyclesPerBlock."""
    ifm_block = _clip(op.ifm, cfg.ifm)
    ofm_block = _clip(op.ofm, cfg.ofm)
    ub = _micro_block(blocks, ofm_lanes, op)
    n_h, n_w, n_d = _cdiv(ofm_block[0], ub[0]), _cdiv(ofm_block[1], ub[1]), _cdiv(ofm_block[2], ub[2])
    n_wh = n_h * n_w
    writeback = WRITEBACK_CYCLES * ub[2] // 8
    macs = ofm_lanes * ifm_lanes * blocks.micro_block[0] * blocks.micro_block[1]
    delay = 3 if (cfg.acc_bits == 40 and macs <= 128) else 2
    total = 0
    for x in range(0, op.kernel[1], SUBKERNEL_MAX):
        for y in range(0, op.kernel[0], SUBKERNEL_MAX):
            elements = min(op.kernel[0] - y, SUBKERNEL_MAX) * min(op.kernel[1] - x, SUBKERNEL_MAX)
            if op.kind == "pool":
                steps = 1
                cycles = max(4, elements) * n_wh * n_d * (op.ifm_bits // 2)
            elif op.kind == "depthwise":
                steps = _cdiv(elements, 4)
                cycles = max(writeback, 4 * n_wh * (op.ifm_bits // 8)) * steps * n_d
            elif op.kind == "vector" or not cfg.part_kernel:
                steps = elements
                cycles = max(writeback, 4 * n_wh) * steps * n_d
            else:
                steps = _cdiv(elements, 2 if op.ifm_bits == 16 else 4)
                cycles = max(writeback, 4 * n_wh) * steps * n_d * _cdiv(ifm_block[2], 8)
            stall = 0
            if n_wh == 1:
                if n_d == 1:
                    stall = delay * steps
                elif steps > 1:
                    stall = delay * (steps - 1) * n_d
            if op.kind == "conv" and cfg.part_kernel:
                stall *= _cdiv(ifm_block[2], 8)
            total += cycles + stall
    if op.kind in ("conv", "vector"):
        total *= _cdiv(op.ifm[2], ifm_block[2])
    return total


def output_cycles_per_element(blocks: BlockTiming, op: BlockOp, acc_bits: int) -> float:
    """EstimateAOCyclesPerElement: by output class, at least the fused activation's rate."""
    if op.output == "mul" or (op.kind != "elementwise" and acc_bits == 40):
        per = blocks.output_cycles_mul
    elif op.output == "add":
        per = blocks.output_cycles_add
    elif op.output == "max_pool":
        per = blocks.output_cycles_max_pool
    elif op.output == "int32":
        per = blocks.output_cycles_int32
    else:
        per = blocks.output_cycles
    return max(per, blocks.activation_cycles_relu if op.relu else 0.0)


def _burst_bytes(read: bool, linear: bool, bits: int, block: Shape3, shape: Shape3, nbytes: int,
                 burst: int) -> int:
    """EstimateMemoryTransfer: bytes moved when each access is a run of the block's layout."""
    if burst <= 0:
        return nbytes
    if not linear:           # NHCWB16 bricks: 16 channels x block width per run
        run_bits = 16 * bits * block[1]
    else:
        row_bytes = shape[2] * bits // 8
        if read:
            run_bits = bits * block[1] * block[2] if row_bytes == block[2] else bits * block[2]
        else:
            run_bits = (bits * block[1] * block[2] if (block[2] <= 16 and row_bytes == block[2])
                        else min(64 * 8, 16 * bits, block[2] * bits))
    run = max(1, min(burst, run_bits // 8))
    return nbytes * burst // run


def startup_cycles(op: BlockOp, cfg: BlockConfig, latency: int, bandwidth: float, burst: int) -> int:
    """EstimateMinimumMemoryCycles: the first IFM block(s) in and the last OFM block out."""
    ifm_cycles = 0
    for shape in (op.ifm,) if op.ifm2 is None else (op.ifm, op.ifm2):
        nbytes = _elements(_clip(shape, cfg.ifm)) * op.ifm_bits // 8
        moved = _burst_bytes(True, op.ifm_linear, op.ifm_bits, cfg.ifm, shape, nbytes, burst)
        ifm_cycles = max(ifm_cycles, latency + int(moved / bandwidth))
    nbytes = _elements(_clip(op.ofm, cfg.ofm)) * op.ofm_bits // 8
    moved = _burst_bytes(False, op.ofm_linear, op.ofm_bits, cfg.ofm, op.ofm, nbytes, burst)
    return ifm_cycles + latency + int(moved / bandwidth)


def op_cycles(blocks: BlockTiming, ofm_lanes: int, ifm_lanes: int, op: BlockOp, *, sram_latency: int,
              sram_bytes_per_cycle: float, sram_burst: int, weight_latency: int) -> OpCycles:
    """Cycles of a MAC-array operation (conv, depthwise, FC, pool) or an element-wise one."""
    cfg = block_config(blocks, ofm_lanes, ifm_lanes, op)
    per_element = output_cycles_per_element(blocks, op, cfg.acc_bits)
    startup = startup_cycles(op, cfg, sram_latency, sram_bytes_per_cycle, sram_burst)
    block_elements = _elements(cfg.ofm)
    if op.kind == "elementwise":   # a brick-format OFM is worked through in whole 16-channel bricks
        depth = op.ofm[2] if op.ofm_linear else _round_up(op.ofm[2], BRICK_DEPTH)
        elements = op.ofm[0] * op.ofm[1] * depth
        stage = math.ceil(per_element * elements)
        floor = math.ceil((startup / block_elements + per_element) / CMD_ISSUE_DPUS * elements)
        return OpCycles(max(stage, floor), 0, stage, 0, 0, elements / block_elements, cfg)
    ofm_block = _clip(op.ofm, cfg.ofm)
    ub = _micro_block(blocks, ofm_lanes, op)
    per_block_ub = _cdiv(ofm_block[0], ub[0]) * _cdiv(ofm_block[1], ub[1]) * _cdiv(ofm_block[2], ub[2])
    n_blocks = _cdiv(op.ofm[0], ub[0]) * _cdiv(op.ofm[1], ub[1]) * _cdiv(op.ofm[2], ub[2]) / per_block_ub
    output = float(math.ceil(per_element * _elements(ofm_block)))
    if op.bias:             # scales and biases read per block at the weight memory's latency
        output = max(output, BIAS_BYTES_PER_CHANNEL * ofm_block[2] * weight_latency / 256)
    mac = float(mac_cycles_per_block(blocks, ofm_lanes, ifm_lanes, op, cfg))
    issue = (startup + mac + output) / CMD_ISSUE_DPUS
    pace_mac, pace_out = max(mac, issue), max(output, issue)
    pace, fill = (pace_mac, pace_out) if pace_mac > pace_out else (pace_out, pace_mac)
    body = int(pace * n_blocks + fill)
    return OpCycles(body + startup, int(mac * n_blocks), int(output * n_blocks), startup, int(fill), n_blocks, cfg)


def sram_bytes(op: BlockOp, cfg: BlockConfig, weight_bytes: int, burst: int) -> int:
    """Bytes the operation moves over the SRAM port: IFM re-reads per OFM block and sub-kernel,
    weights re-read per OFM block position, the OFM written once (bricks round depth to 16)."""
    def depth16(c: int, linear: bool) -> int:
        return c if linear else _round_up(c, BRICK_DEPTH)

    ofm_block = _clip(op.ofm, cfg.ofm)
    blocks_h, blocks_w = _cdiv(op.ofm[0], ofm_block[0]), _cdiv(op.ofm[1], ofm_block[1])
    blocks_d = 1 if op.kind in ("depthwise", "pool", "elementwise") else _cdiv(op.ofm[2], ofm_block[2])
    ifm_block = _clip(op.ifm, cfg.ifm)
    if op.kind == "elementwise":
        reads = _elements(op.ofm[:2] + (depth16(op.ofm[2], op.ifm_linear),))
        ifm_bytes = _burst_bytes(True, op.ifm_linear, op.ifm_bits, cfg.ifm, op.ifm, reads * op.ifm_bits // 8, burst)
        if op.ifm2 is not None and not op.scalar:
            ifm_bytes *= 2
        weights = 0
    else:
        dil_h, dil_w = _dilated(op)
        subkernels = _cdiv(dil_w, SUBKERNEL_MAX) * _cdiv(dil_h, SUBKERNEL_MAX)
        fetch = ifm_block[0] * ifm_block[1] * depth16(op.ifm[2], op.ifm_linear)
        reads = fetch * subkernels * blocks_h * blocks_w * blocks_d
        ifm_bytes = _burst_bytes(True, op.ifm_linear, op.ifm_bits, cfg.ifm, op.ifm, reads * op.ifm_bits // 8, burst)
        weights = weight_bytes * blocks_h * blocks_w
    ofm_elements = op.ofm[0] * op.ofm[1] * depth16(op.ofm[2], op.ofm_linear)
    ofm_bytes = _burst_bytes(False, op.ofm_linear, op.ofm_bits, cfg.ofm, op.ofm, ofm_elements * op.ofm_bits // 8,
                             burst)
    return ifm_bytes + weights + ofm_bytes


SOFTMAX_ELEMENT_PASSES = 5    # subtract the row max, exp lookup, row sum, multiply by the reciprocal, shift
SOFTMAX_ROW_STEPS = 22        # count leading zeros, shifts, three Newton-Raphson steps of the reciprocal
SOFTMAX_CONSTANT_BYTES = 4    # the int32 constant per element Vela's graph adds, read from off-chip memory


def softmax_cycles(blocks: BlockTiming, ofm_lanes: int, ifm_lanes: int, rows: int, channels: int, *,
                   sram_latency: int, sram_bytes_per_cycle: float, sram_burst: int, weight_latency: int,
                   off_chip_bytes_per_cycle: float) -> int:
    """An int8 softmax over ``rows`` rows of ``channels`` values, as the operations Vela's softmax
    graph runs (``softmax.py``: measured per operation in Vela's per-layer output): the row max
    as a 1 x C max pool, ``SOFTMAX_ELEMENT_PASSES`` element-wise passes on 32-bit values over every
    element and ``SOFTMAX_ROW_STEPS`` on one value per row (each a brick of 16 channels), and the
    per-element constant it reads from off-chip memory. The exp table's load is the caller's
    (as for any LUT)."""
    timing: dict[str, Any] = {"sram_latency": sram_latency, "sram_bytes_per_cycle": sram_bytes_per_cycle,
                              "sram_burst": sram_burst, "weight_latency": weight_latency}
    row_max = op_cycles(blocks, ofm_lanes, ifm_lanes, BlockOp(
        "pool", (rows, channels, 1), (rows, 1, 1), kernel=(1, channels), stride=(1, channels), output="max_pool"),
        **timing).total
    per_element = op_cycles(blocks, ofm_lanes, ifm_lanes, BlockOp(
        "elementwise", (1, rows, channels), (1, rows, channels), ifm2=(1, rows, channels), output="int32",
        ifm_bits=32, ofm_bits=32), **timing).total
    per_row = op_cycles(blocks, ofm_lanes, ifm_lanes, BlockOp(
        "elementwise", (1, rows, 1), (1, rows, 1), ifm2=(1, rows, 1), output="int32", ifm_bits=32, ofm_bits=32),
        **timing).total
    constant = math.ceil(SOFTMAX_CONSTANT_BYTES * rows * channels / off_chip_bytes_per_cycle)
    return row_max + SOFTMAX_ELEMENT_PASSES * per_element + SOFTMAX_ROW_STEPS * per_row + constant
