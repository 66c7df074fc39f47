"""Cycles, counted actions and energy of an NPU program: an event-driven model of the target.

Timing is data-independent, so it is computed once per (program, target) and every run of the
program reuses it. Where each term comes from (the figures themselves are in the target file,
each with its source; docs/guide/isa-and-cost-model.md derives each term):

* **Engines** (``engines``): ``dma0..dma{k-1}``, the shared ``dram_bus``, per core
  ``core{c}.mac``, ``core{c}.elementwise``, ``core{c}.lut``, and ``host``. Each engine runs its
  instructions in program order; an instruction starts when its engine is free and all its deps
  have finished (:func:`schedule`: in-order queues make the event simulation a single pass).
* **DMA**: a latency phase (``dram_latency_cycles``: vela.ini ``*_read_latency``), then a data
  phase holding the shared DRAM bus for ``ceil(bytes / dram_bytes_per_cycle)`` cycles (Vela's
  ``MemToMemCycles``: bytes over bandwidth plus latency). ``dma_channels`` DMAs are outstanding at
  once (vela.ini ``*_max_reads``): they overlap their latencies and share the bus, served in
  program order. Bytes: every contiguous run of the DRAM-side view rounded up to whole
  ``dram_burst_bytes``; a weight DMA with ``encoded_bytes`` moves the encoded stream instead
  (``weight_compression = "ethos-u"``: Vela's ``mlw_codec``, see ``compiler/weights.py``).
* **Compute, lane formula** (targets without ``[blocks]``): ``overhead_cycles + max(array cycles,
  SRAM bytes / sram_bytes_per_cycle, output-stage cycles)``; SRAM bytes count each operand once.
  MAC array (SCALE-Sim style, lanes idle on ragged edges): CONV2D ``ceil(Cout/ofm) * ceil(Cin/ifm)
  * ceil(OH*OW/pix) * KH*KW``; DEPTHWISE ``ceil(C/ofm) * ceil(OH*OW/pix) * KH*KW`` (ifm lanes
  idle); FC/MATMUL rows M as pixels; int16 activations divide the rate by ``int16_factor``. The
  output stage requantises every output element at ``elementwise_width`` per cycle. POOL (kernel
  elements per output), ELEMENTWISE, RESCALE, RESIZE: ``ceil(elements / elementwise_width)``;
  LUT: ``ceil(elements / lut_width)``.
* **Compute, block model** (targets with ``[blocks]``, the Ethos-U ones): ``npu.blocks`` gives
  Vela's per-operation cycles (OFM block search, MAC cycles per block, output-stage cycles,
  command-issue floor, first-block fill); the instruction takes ``overhead_cycles + max(those,
  SRAM bytes with re-fetches / sram_bytes_per_cycle)`` (Vela's operation time is the largest of
  its NPU cycles and each memory's access cycles). Pools, LUTs, rescales and resizes run on the
  MAC array as Vela runs them (pooling, 1 x 1 for the last three), element-wise ops on the output
  unit. Consecutive instructions of one layer on one engine (the stripes and channel slices the
  compiler cut) keep the pipeline full: only the first pays the first-block fill. A LUT loads its
  256-byte table from DRAM (latency + bytes over bandwidth) unless it continues its layer.
  Graph inputs and outputs are NHWC (``linear``) for the burst model; everything else is in bricks.
* **HOST**: ``host_overhead_us + npu.host.count_ops(...) / host_ops_per_second``, in cycles; a HOST
  instruction right after another HOST instruction continues the same hand-over and pays no
  overhead. The host reads and writes DRAM through its own port, not the NPU's DMA bus.
* **Accounting** (:func:`charge`): every cycle of ``[0, makespan)`` is charged to exactly one
  instruction (``TraceRow.charged``), so per layer they add up to the total: to the first compute
  or host instruction in program order running at that cycle, else (the NPU waits) to the
  instruction on the critical path (:func:`critical_path`: every start is the end of one
  predecessor, the engine's previous instruction, a dependency, or for a DMA's data phase the
  bus's previous transfer). A weight load hidden under another layer's compute costs nothing; a
  host hand-over is charged to the host layer.
* **Roofline**: ``max(MACs / peak MACs per cycle, DMA bytes / dram_bytes_per_cycle)``; host DRAM
  traffic is counted in the summary's DRAM bytes and energy but not in the bound.
* **Energy**: counted actions times the target's table (int16 MACs at ``mac_int16_pj``; DRAM read
  and write both at ``dram_pj_per_byte``, on the bytes actually moved: the encoded stream of a
  compressed weight DMA) plus ``static_mw`` x latency.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import EmulatorFault
from ..targets.model import Target
from . import blocks as block_model
from . import isa
from .execution import Summary, TraceRow
from .isa import Instruction, Operand
from .program import Program, deps_of, layer_of, operand_span

ENERGY_CLASSES = ("mac", "sram", "dram", "elementwise", "lut", "host", "static")
LUT_TABLE_BYTES = 256


@dataclass(frozen=True)
class InstructionCost:
    """Everything the timing model needs about one instruction, independent of when it runs."""

    engine: str
    cycles: int                  # busy cycles on its engine (DMA: data phase only)
    latency: int = 0             # DMA: cycles before the data phase may start
    macs: int = 0
    sram_read: int = 0
    sram_write: int = 0
    dram_read: int = 0
    dram_write: int = 0
    bus_bytes: int = 0           # burst-padded bytes over the DRAM bus (DMA only)
    elementwise_ops: int = 0
    lut_lookups: int = 0
    host_ops: int = 0
    int16: bool = False

    def energy_pj(self, target: Target) -> dict[str, float]:
        e = target.energy
        return {
            "mac": self.macs * (e.mac_int16_pj if self.int16 else e.mac_int8_pj),
            "sram": self.sram_read * e.sram_read_pj_per_byte + self.sram_write * e.sram_write_pj_per_byte,
            "dram": (self.dram_read + self.dram_write) * e.dram_pj_per_byte,
            "elementwise": self.elementwise_ops * e.elementwise_pj,
            "lut": self.lut_lookups * e.lut_pj,
            "host": self.host_ops * e.host_pj_per_op,
        }


def engines(target: Target) -> list[str]:
    """Every engine of the target, in report order."""
    names = [f"dma{k}" for k in range(target.dma_channels)] + ["dram_bus"]
    for c in range(target.cores):
        names += [f"core{c}.mac", f"core{c}.elementwise", f"core{c}.lut"]
    return names + ["host"]


def _ceil(a: float, b: float) -> int:
    return int(math.ceil(a / b)) if a > 0 else 0


def burst_bytes(op: Operand, burst: int) -> int:
    """Bytes the DRAM moves for a strided view: each contiguous run rounded up to whole bursts."""
    if op.size == 0:
        return 0
    shape, strides, item = list(op.shape), list(op.byte_strides()), op.itemsize
    run = item
    dim = len(shape) - 1
    # Merge trailing dimensions while they are laid out back to back.
    while dim >= 0 and (shape[dim] == 1 or strides[dim] == run):
        run *= shape[dim]
        dim -= 1
    runs = op.nbytes // run
    return runs * _ceil(run, burst) * burst


def _sram_bytes(ops: dict[str, Operand]) -> int:
    return sum(o.nbytes for o in ops.values() if o.mem == "sram")


Linear = Callable[[Operand], bool]
Compute = (isa.Conv2D | isa.DepthwiseConv2D | isa.FullyConnected | isa.MatMul | isa.Pool | isa.Elementwise
           | isa.Lut | isa.Rescale | isa.Resize | isa.Softmax)
COMPUTE = (isa.Conv2D, isa.DepthwiseConv2D, isa.FullyConnected, isa.MatMul, isa.Pool, isa.Elementwise, isa.Lut,
           isa.Rescale, isa.Resize, isa.Softmax)


def _never_linear(op: Operand) -> bool:
    return False


def _compute(target: Target, ins: Instruction, array_cycles: int, output_elements: int, **counts) -> InstructionCost:
    reads, writes = ins.reads(), ins.writes()
    sram_read, sram_write = _sram_bytes(reads), _sram_bytes(writes)
    sram_cycles = _ceil(sram_read + sram_write, target.sram_bytes_per_cycle)
    output_cycles = _ceil(output_elements, target.elementwise_width)
    cycles = target.overhead_cycles + max(array_cycles, sram_cycles, output_cycles)
    return InstructionCost(ins.engine(), cycles, sram_read=sram_read, sram_write=sram_write, **counts)


def _mac_rate(target: Target, cycles: int, ifm: Operand) -> tuple[int, bool]:
    int16 = ifm.itemsize == 2
    return (int(math.ceil(cycles / target.int16_factor)) if int16 else cycles), int16


def _counts(ins: Compute) -> dict:
    """MACs and output-stage work of a compute instruction (the same under both timing models)."""
    if isinstance(ins, isa.Conv2D):
        kh, kw, cin, _ = ins.weights.shape
        return {"macs": ins.ofm.size * kh * kw * cin, "elementwise_ops": ins.ofm.size,
                "int16": ins.ifm.itemsize == 2}
    if isinstance(ins, isa.DepthwiseConv2D):
        kh, kw, _ = ins.weights.shape
        return {"macs": ins.ofm.size * kh * kw, "elementwise_ops": ins.ofm.size, "int16": ins.ifm.itemsize == 2}
    if isinstance(ins, (isa.FullyConnected, isa.MatMul)):
        ifm = ins.ifm if isinstance(ins, isa.FullyConnected) else ins.a
        return {"macs": ifm.shape[0] * ifm.shape[1] * ins.ofm.shape[-1], "elementwise_ops": ins.ofm.size,
                "int16": ifm.itemsize == 2}
    if isinstance(ins, isa.Pool):
        return {"elementwise_ops": ins.ofm.size * ins.kernel[0] * ins.kernel[1]}
    if isinstance(ins, isa.Lut):
        return {"lut_lookups": ins.ofm.size}
    if isinstance(ins, isa.Softmax):
        rows = _softmax_rows(ins)
        return {"elementwise_ops": isa.Softmax.FULL_PASSES * ins.ofm.size + isa.Softmax.ROW_STEPS * rows,
                "lut_lookups": ins.ofm.size}
    return {"elementwise_ops": ins.ofm.size}


def _softmax_rows(ins: isa.Softmax) -> int:
    return ins.ofm.size // max(ins.ofm.shape[-1], 1)


def _lane_cycles(target: Target, ins: Compute) -> InstructionCost:
    lanes = target.mac
    counts = _counts(ins)
    if isinstance(ins, isa.Conv2D):
        kh, kw, cin, cout = ins.weights.shape
        oh, ow, _ = ins.ofm.shape
        cycles = (_ceil(cout, lanes.ofm_lanes) * _ceil(cin, lanes.ifm_lanes)
                  * _ceil(oh * ow, lanes.pixel_lanes) * kh * kw)
        return _compute(target, ins, _mac_rate(target, cycles, ins.ifm)[0], ins.ofm.size, **counts)
    if isinstance(ins, isa.DepthwiseConv2D):
        kh, kw, c = ins.weights.shape
        oh, ow, _ = ins.ofm.shape
        cycles = _ceil(c, lanes.ofm_lanes) * _ceil(oh * ow, lanes.pixel_lanes) * kh * kw
        return _compute(target, ins, _mac_rate(target, cycles, ins.ifm)[0], ins.ofm.size, **counts)
    if isinstance(ins, (isa.FullyConnected, isa.MatMul)):
        ifm = ins.ifm if isinstance(ins, isa.FullyConnected) else ins.a
        m, k = ifm.shape
        n = ins.ofm.shape[-1]
        cycles = _ceil(n, lanes.ofm_lanes) * _ceil(k, lanes.ifm_lanes) * _ceil(m, lanes.pixel_lanes)
        return _compute(target, ins, _mac_rate(target, cycles, ifm)[0], ins.ofm.size, **counts)
    if isinstance(ins, isa.Pool):
        return _compute(target, ins, _ceil(counts["elementwise_ops"], target.elementwise_width), 0, **counts)
    if isinstance(ins, isa.Lut):
        return _compute(target, ins, _ceil(ins.ofm.size, target.lut_width), 0, **counts)
    if isinstance(ins, isa.Softmax):     # the element-wise sequence it stands for, each step an instruction
        steps = isa.Softmax.FULL_PASSES + isa.Softmax.ROW_STEPS
        cycles = (_ceil(counts["elementwise_ops"], target.elementwise_width) + _ceil(ins.ofm.size, target.lut_width)
                  + (steps - 1) * target.overhead_cycles)
        return _compute(target, ins, cycles, 0, **counts)
    return _compute(target, ins, _ceil(ins.ofm.size, target.elementwise_width), 0, **counts)


def _pair(values) -> tuple[int, int]:
    return int(values[0]), int(values[1])


def _hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    dims = (1, 1, *shape)[-3:]
    return int(dims[0]), int(dims[1]), int(dims[2])


def _clamped(requant, dtype: str) -> bool:
    """A fused ReLU-family activation: the requant clamps inside the output dtype's range."""
    if requant is None:
        return False
    lo, hi = isa.dtype_range(dtype)
    return requant.lo > lo or requant.hi < hi


def _vela_bilinear(ins) -> bool:
    """A 2x bilinear upscale with half-pixel centres: Vela's four-depthwise-convolution form."""
    if not (isinstance(ins, isa.Resize) and ins.mode == "bilinear" and ins.half_pixel_centers):
        return False
    (h, w, _), (oh, ow, _) = _hwc(ins.ifm.shape), _hwc(ins.ofm.shape)
    return (oh, ow) == (2 * h, 2 * w) and min(h, w) >= 2


def block_op(ins: Compute, linear: Linear = _never_linear) -> block_model.BlockOp:
    """The instruction as the block model sees it (shapes, kernel, output class, formats)."""
    bits = 8 * ins.ofm.itemsize
    common: dict[str, Any] = {"ofm_bits": bits, "ofm_linear": linear(ins.ofm)}
    if isinstance(ins, (isa.Conv2D, isa.DepthwiseConv2D)):
        return block_model.BlockOp(
            "conv" if isinstance(ins, isa.Conv2D) else "depthwise", _hwc(ins.ifm.shape), _hwc(ins.ofm.shape),
            kernel=_pair(ins.weights.shape), stride=_pair(ins.stride), dilation=_pair(ins.dilation),
            ifm_bits=8 * ins.ifm.itemsize, relu=_clamped(ins.requant, ins.ofm.dtype), bias=True,
            ifm_linear=linear(ins.ifm), **common)
    if isinstance(ins, (isa.FullyConnected, isa.MatMul)):
        ifm = ins.ifm if isinstance(ins, isa.FullyConnected) else ins.a
        return block_model.BlockOp(
            "vector", (1, ifm.shape[0], ifm.shape[1]), (1, ins.ofm.shape[0], ins.ofm.shape[1]),
            ifm_bits=8 * ifm.itemsize, relu=_clamped(ins.requant, ins.ofm.dtype),
            bias=isinstance(ins, isa.FullyConnected), ifm_linear=linear(ifm), **common)
    if isinstance(ins, isa.Pool) and ins.kind == "avg" and not ins.divide and _hwc(ins.ofm.shape)[:2] == (1, 1) \
            and tuple(ins.kernel) == _hwc(ins.ifm.shape)[:2] and ins.kernel[0] * ins.kernel[1] > 1:
        # a mean over the whole feature map (TFLite MEAN, a global average pool): Vela runs it as a
        # depthwise convolution with an H x W kernel of ones, the scale in its output stage
        return block_model.BlockOp(
            "depthwise", _hwc(ins.ifm.shape), _hwc(ins.ofm.shape), kernel=_pair(ins.kernel), stride=(1, 1),
            ifm_bits=8 * ins.ifm.itemsize, relu=_clamped(ins.requant, ins.ofm.dtype), bias=True,
            ifm_linear=linear(ins.ifm), **common)
    if isinstance(ins, isa.Resize) and _vela_bilinear(ins):
        # one of the four 2 x 2 depthwise convolutions Vela writes a 2x half-pixel bilinear resize
        # as: each runs over the (2H - 1) x (2W - 1) grid of the upscaled, edge-padded input and
        # fills one phase of the output through doubled strides (Vela 5.2's per-layer figures)
        oh, ow, c = _hwc(ins.ofm.shape)
        return block_model.BlockOp(
            "depthwise", (oh, ow, c), (oh - 1, ow - 1, c), kernel=(2, 2), stride=(1, 1),
            ifm_bits=8 * ins.ifm.itemsize, bias=True, ifm_linear=linear(ins.ifm), **common)
    if isinstance(ins, isa.Pool):
        return block_model.BlockOp(
            "pool", _hwc(ins.ifm.shape), _hwc(ins.ofm.shape), kernel=_pair(ins.kernel), stride=_pair(ins.stride),
            ifm_bits=8 * ins.ifm.itemsize, output="max_pool" if ins.kind == "max" else "default",
            relu=_clamped(ins.requant, ins.ofm.dtype), ifm_linear=linear(ins.ifm), **common)
    if isinstance(ins, isa.Elementwise):
        b_full = ins.b.size == ins.ofm.size
        return block_model.BlockOp(
            "elementwise", _hwc(ins.a.shape), _hwc(ins.ofm.shape), ifm_bits=8 * ins.a.itemsize,
            output={"add": "add", "sub": "add", "mul": "mul"}.get(ins.op, "default"),
            relu=_clamped(ins.requant, ins.ofm.dtype), ifm2=_hwc(ins.b.shape) if b_full else None,
            scalar=ins.b.size == 1, ifm_linear=linear(ins.a), **common)
    # LUT, RESCALE, RESIZE: a 1 x 1 pooling pass with the output stage doing the work (Vela's
    # avg-pool NOP carrying the activation)
    ifm = ins.ifm
    return block_model.BlockOp("pool", _hwc(ifm.shape), _hwc(ins.ofm.shape), ifm_bits=8 * ifm.itemsize,
                               ifm_linear=linear(ifm), **common)


def _block_cycles(target: Target, ins: Compute, continues: bool, linear: Linear) -> InstructionCost:
    blocks = target.blocks
    assert blocks is not None
    if isinstance(ins, isa.Softmax):
        return _block_softmax(target, ins)
    op = block_op(ins, linear)
    timed = block_model.op_cycles(
        blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, op, sram_latency=target.sram_latency_cycles,
        sram_bytes_per_cycle=target.sram_bytes_per_cycle, sram_burst=target.sram_burst_bytes,
        weight_latency=target.dram_latency_cycles)
    npu = timed.continuing() if continues else timed.total
    if _vela_bilinear(ins):        # four such convolutions, each its own operation
        npu = timed.total + 3 * (timed.total + target.overhead_cycles)
    weights = getattr(ins, "weights", None)
    bias = getattr(ins, "bias", None)
    weight_bytes = sum(o.nbytes for o in (weights, bias) if isinstance(o, Operand) and o.mem == "sram")
    moved = block_model.sram_bytes(op, timed.config, weight_bytes, target.sram_burst_bytes)
    cycles = target.overhead_cycles + max(npu, _ceil(moved, target.sram_bytes_per_cycle))
    table = LUT_TABLE_BYTES if isinstance(ins, isa.Lut) and not continues else 0
    if table:               # the LUT's table comes from off-chip memory, as Vela's MemToMemCycles
        cycles += target.dram_latency_cycles + _ceil(table, target.dram_bytes_per_cycle)
    reads, writes = ins.reads(), ins.writes()
    return InstructionCost(ins.engine(), cycles, sram_read=_sram_bytes(reads), sram_write=_sram_bytes(writes),
                           dram_read=table, **_counts(ins))


def _block_softmax(target: Target, ins: isa.Softmax) -> InstructionCost:
    """Vela's int8 softmax graph (``blocks.softmax_cycles``) plus its exp table's load from DRAM."""
    assert target.blocks is not None
    rows = _softmax_rows(ins)
    steps = block_model.softmax_cycles(
        target.blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, rows, ins.ofm.shape[-1],
        sram_latency=target.sram_latency_cycles, sram_bytes_per_cycle=target.sram_bytes_per_cycle,
        sram_burst=target.sram_burst_bytes, weight_latency=target.dram_latency_cycles,
        off_chip_bytes_per_cycle=target.dram_bytes_per_cycle)
    constants = block_model.SOFTMAX_CONSTANT_BYTES * ins.ofm.size
    cycles = target.overhead_cycles + steps + target.dram_latency_cycles + _ceil(LUT_TABLE_BYTES,
                                                                                 target.dram_bytes_per_cycle)
    reads, writes = ins.reads(), ins.writes()
    return InstructionCost(ins.engine(), cycles, sram_read=_sram_bytes(reads), sram_write=_sram_bytes(writes),
                           dram_read=LUT_TABLE_BYTES + constants, **_counts(ins))


def instruction_cost(target: Target, ins: Instruction, continues: bool = False,
                     linear: Linear = _never_linear) -> InstructionCost:
    """Cycles and counted actions of one instruction on ``target`` (shapes already validated).

    ``continues``: the instruction carries on the work of the one before it on its engine (see
    ``time_program``): a HOST instruction pays no hand-over, a block-model instruction no
    first-block fill. ``linear(operand)``: the operand is stored NHWC (a graph input or output)."""
    if isinstance(ins, (isa.DmaIn, isa.DmaOut)):
        dram_side = ins.src if isinstance(ins, isa.DmaIn) else ins.dst
        sram_side = ins.dst if isinstance(ins, isa.DmaIn) else ins.src
        encoded = getattr(ins, "encoded_bytes", 0)
        if encoded:          # one contiguous stream (16-byte aligned): no burst padding, as in Vela
            nbytes = padded = encoded
        else:
            nbytes = dram_side.nbytes
            padded = burst_bytes(dram_side, target.dram_burst_bytes)
        return InstructionCost(
            ins.engine(), _ceil(padded, target.dram_bytes_per_cycle), latency=target.dram_latency_cycles,
            bus_bytes=padded,
            dram_read=nbytes if isinstance(ins, isa.DmaIn) else 0,
            dram_write=nbytes if isinstance(ins, isa.DmaOut) else 0,
            sram_write=sram_side.nbytes if isinstance(ins, isa.DmaIn) else 0,
            sram_read=sram_side.nbytes if isinstance(ins, isa.DmaOut) else 0)
    if isinstance(ins, isa.HostOp):
        from . import host  # local: host imports onnxruntime lazily, keep cost importable alone

        ops = int(host.count_ops(ins.op, ins.attrs, [o.shape for o in ins.inputs],
                                 [o.shape for o in ins.outputs]))
        seconds = (0.0 if continues else target.host_overhead_us * 1e-6) + ops / target.host_ops_per_second
        cycles = max(1, int(math.ceil(seconds * target.clock_mhz * 1e6)))
        return InstructionCost("host", cycles, host_ops=ops,
                               dram_read=sum(o.nbytes for o in ins.inputs if o.mem == "dram"),
                               dram_write=sum(o.nbytes for o in ins.outputs if o.mem == "dram"))
    if isinstance(ins, COMPUTE):
        if target.blocks is not None:
            return _block_cycles(target, ins, continues, linear)
        return _lane_cycles(target, ins)
    raise EmulatorFault(f"no cost model for opcode {ins.opcode}", kind="unsupported")


@dataclass
class Timing:
    """The schedule of one program on one target: what ``Execution.trace``/``summary`` report."""

    trace: list[TraceRow]
    summary: Summary
    costs: list[InstructionCost]
    bus_windows: list[tuple[int, int]]   # per instruction: its DRAM-bus data phase (0, 0 if none)


@dataclass
class Schedule:
    """Start/end of every instruction, its bus window, and who it waited for.

    ``waited[i]`` = (time i's critical part starts, the instruction whose end that is, or -1 for
    the start of the program): the engine's previous instruction, a dependency, or (a DMA whose
    data phase queued for the bus) the bus's previous transfer."""

    start: list[int]
    end: list[int]
    bus: list[tuple[int, int]]
    waited: list[tuple[int, int]]


def schedule(program: Program, costs: list[InstructionCost]) -> Schedule:
    """Start and end cycle of every instruction, the DRAM-bus window of every DMA, and the wait.

    Every engine runs its instructions in program order, and the DRAM bus serves DMA data phases
    in program order (the order the compiler issued them). Deps point backwards, so one pass in
    program order is the whole simulation: ``start = max(engine free, deps done)``; a DMA's data
    phase starts at ``max(start + latency, bus free)``. Each time is a max of sums of durations,
    so shortening any duration (more lanes, more bandwidth) can never delay anything: the model
    has no list-scheduling anomalies, which is what lets budgets gate on it.
    """
    n = len(program.instructions)
    start, end = [0] * n, [0] * n
    bus = [(0, 0)] * n
    waited = [(0, -1)] * n
    engine_last: dict[str, int] = {}
    bus_last = -1
    for i, (ins, c) in enumerate(zip(program.instructions, costs)):
        begin, by = 0, -1
        for j in (engine_last.get(c.engine, -1), *deps_of(ins)):
            if j >= 0 and end[j] > begin:
                begin, by = end[j], j
        if c.engine.startswith("dma"):
            bus_free = end[bus_last] if bus_last >= 0 else 0
            data_start = max(begin + c.latency, bus_free)
            if bus_free > begin + c.latency:
                waited[i] = (bus_free, bus_last)
            else:
                waited[i] = (begin, by)
            finish = data_start + c.cycles
            bus[i] = (data_start, finish)
            bus_last = i
        else:
            finish = begin + c.cycles
            waited[i] = (begin, by)
        start[i], end[i] = begin, finish
        engine_last[c.engine] = i
    return Schedule(start, end, bus, waited)


def critical_path(sched: Schedule) -> list[tuple[int, int, int]]:
    """The segments ``(from, to, instruction)`` of the critical path, in time order: walking back
    from the last instruction to finish through whatever each one waited for covers ``[0,
    makespan)`` exactly once."""
    n = len(sched.end)
    if not n:
        return []
    segments = []
    i = max(range(n), key=lambda k: (sched.end[k], -k))
    while i >= 0:
        since, before = sched.waited[i]
        if sched.end[i] > since:
            segments.append((since, sched.end[i], i))
        i = before
    return segments[::-1]


def charge(sched: Schedule, working: list[bool]) -> list[int]:
    """Cycles of the run charged to each instruction; they sum to the makespan.

    While any working instruction (compute or host) runs, the time is charged to the first of them
    in program order: a layer's compute owns its duration even when a later layer's weights load
    underneath, as Vela charges an operation for the time its own work takes. When nothing works,
    the NPU is waiting, and the time goes to the instruction on the critical path (the weight DMA
    the next layer waits for, a host hand-over)."""
    n = len(sched.end)
    charged = [0] * n
    segments = critical_path(sched)
    events = sorted({0, *(t for i in range(n) if working[i] for t in (sched.start[i], sched.end[i])),
                     *(t for a, b, _ in segments for t in (a, b))})
    starts = sorted((sched.start[i], i) for i in range(n) if working[i] and sched.end[i] > sched.start[i])
    active: list[int] = []          # heap of working instruction indices running now
    k = seg = 0
    for a, b in zip(events, events[1:]):
        while k < len(starts) and starts[k][0] <= a:
            heapq.heappush(active, starts[k][1])
            k += 1
        while active and sched.end[active[0]] <= a:
            heapq.heappop(active)
        if active:
            owner = active[0]
        else:
            while seg < len(segments) and segments[seg][1] <= a:
                seg += 1
            owner = segments[seg][2]
        charged[owner] += b - a
    return charged


def _continues(program: Program, costs_engine: list[str]) -> list[bool]:
    """Does each instruction carry on its engine's previous instruction's work?

    HOST: the previous instruction in program order is HOST too (one turn of the host pays one
    hand-over). Compute: the engine's previous instruction is the same opcode of the same layer
    (a stripe or channel slice the compiler cut from one operation)."""
    out = [False] * len(program.instructions)
    last: dict[str, Instruction] = {}
    for i, (ins, engine) in enumerate(zip(program.instructions, costs_engine)):
        if isinstance(ins, isa.HostOp):
            out[i] = bool(i) and isinstance(program.instructions[i - 1], isa.HostOp)
        elif ins.unit != "dma":
            prev = last.get(engine)
            out[i] = prev is not None and prev.opcode == ins.opcode and layer_of(prev) == layer_of(ins) != ""
        last[engine] = ins
    return out


def _io_linear(program: Program) -> Linear:
    """Graph inputs and outputs are NHWC (the application's layout); the block model stores every
    other feature map in 16-channel bricks, as Vela does. Operands carry their tensor's name."""
    names = set(program.inputs) | set(program.outputs)

    def linear(op: Operand) -> bool:
        return op.name in names
    return linear


def time_program(program: Program, target: Target) -> Timing:
    """Schedule, check hazards, and summarise (trace rows, energy, utilisation, roofline)."""
    engine_of = [ins.engine() for ins in program.instructions]
    continues = _continues(program, engine_of)
    linear = _io_linear(program)
    costs = [instruction_cost(target, ins, continues[i], linear) for i, ins in enumerate(program.instructions)]
    sched = schedule(program, costs)
    start, end, bus = sched.start, sched.end, sched.bus
    check_hazards(program, start, end, [c.engine for c in costs])
    charged = charge(sched, [not c.engine.startswith("dma") for c in costs])
    rows = []
    totals = dict.fromkeys(ENERGY_CLASSES, 0.0)
    for i, (ins, c) in enumerate(zip(program.instructions, costs)):
        parts = c.energy_pj(target)
        for k, v in parts.items():
            totals[k] += v
        rows.append(TraceRow(i, ins.opcode, c.engine, layer_of(ins), start[i], end[i], macs=c.macs,
                             sram_read=c.sram_read, sram_write=c.sram_write, dram_read=c.dram_read,
                             dram_write=c.dram_write, elementwise_ops=c.elementwise_ops,
                             lut_lookups=c.lut_lookups, host_ops=c.host_ops, energy_pj=sum(parts.values()),
                             charged=charged[i]))
    return Timing(rows, summarise(program, target, rows, costs, totals, bus), costs, bus)


def summarise(program: Program, target: Target, rows: list[TraceRow], costs: list[InstructionCost],
              totals_pj: dict[str, float], bus: list[tuple[int, int]]) -> Summary:
    cycles = max((r.end for r in rows), default=0)
    latency_ms = target.cycles_to_ms(cycles)
    breakdown = {k: totals_pj[k] * 1e-9 for k in ENERGY_CLASSES if k != "static"}
    breakdown["static"] = target.energy.static_mw * latency_ms * 1e-3   # mW x ms = uJ -> mJ
    energy = 0.0
    for v in breakdown.values():
        energy += v
    busy: dict[str, int] = dict.fromkeys(engines(target), 0)
    for r in rows:
        busy[r.engine] = busy.get(r.engine, 0) + r.cycles
    busy["dram_bus"] = sum(b - a for a, b in bus)
    utilisation = {e: (b / cycles if cycles else 0.0) for e, b in busy.items()}
    macs = sum(r.macs for r in rows)
    bus_bytes = sum(c.dram_read + c.dram_write for c in costs if c.engine.startswith("dma"))
    roofline = max(_ceil(macs, target.macs_per_cycle), _ceil(bus_bytes, target.dram_bytes_per_cycle))
    sram_peak = 0
    for ins in program.instructions:
        for op in ins.operands().values():
            if op.mem == "sram":
                sram_peak = max(sram_peak, operand_span(op)[1])
    return Summary(
        cycles=cycles, latency_ms=latency_ms, energy_mj=energy, energy_breakdown_mj=breakdown, macs=macs,
        utilisation=utilisation, sram_peak_bytes=sram_peak,
        dram_read_bytes=sum(r.dram_read for r in rows), dram_write_bytes=sum(r.dram_write for r in rows),
        roofline_cycles=roofline, efficiency=(roofline / cycles if cycles else 1.0),
        host_cycles=busy.get("host", 0))


# ---------------------------------------------------------------------------------------------
# hazards
def _is_dense(op: Operand) -> bool:
    return op.strides is None or tuple(op.strides) == Operand(op.mem, 0, op.shape, op.dtype).byte_strides()


def contiguous_runs(op: Operand) -> tuple[np.ndarray, int]:
    """The view as runs of back-to-back bytes: (start offsets, bytes per run).

    Trailing dimensions laid out contiguously merge into one run, so a channel slice of an HWC
    tensor is H*W runs, not H*W*C elements: the exact overlap test stays cheap.
    """
    shape, strides = list(op.shape), list(op.byte_strides())
    run, dim = op.itemsize, len(shape) - 1
    while dim >= 0 and (shape[dim] == 1 or strides[dim] == run):
        run *= shape[dim]
        dim -= 1
    starts = np.array([op.offset], np.int64)
    for size, stride in zip(shape[:dim + 1], strides[:dim + 1]):
        starts = (starts[:, None] + np.arange(size, dtype=np.int64) * stride).ravel()
    return starts, run


def operands_overlap(a: Operand, b: Operand) -> bool:
    """Do two views share a byte? Extents first; for strided views an exact test on their runs."""
    if a.mem != b.mem or a.size == 0 or b.size == 0:
        return False
    (alo, ahi), (blo, bhi) = operand_span(a), operand_span(b)
    if ahi <= blo or bhi <= alo:
        return False
    if _is_dense(a) and _is_dense(b):
        return True
    a_starts, a_len = contiguous_runs(a)
    b_starts, b_len = contiguous_runs(b)
    a_starts.sort()
    reach = np.maximum.accumulate(a_starts + a_len)         # furthest byte covered by runs so far
    last = np.searchsorted(a_starts, b_starts + b_len, side="left") - 1   # last a-run starting before b ends
    hit = last >= 0
    return bool(np.any(reach[last[hit]] > b_starts[hit]))


def check_hazards(program: Program, start: list[int], end: list[int], engine_of: list[str]) -> None:
    """Fault unless every pair of instructions on different engines that touch a common byte (at
    least one writing it) runs in program order: ``end[i] <= start[j]`` for ``i < j``.

    Two ways to break it: the windows overlap (caught by an interval sweep that compares only the
    instructions still running, O(n * engines) pairs), or a later instruction finished before an
    earlier one started (compared against the finished instructions with a higher index, few in
    compiler output). The second matters as much: the emulator executes in program order, so a
    missing WAR/RAW dependency that the schedule reorders would otherwise go unnoticed.
    """
    order = sorted(range(len(start)), key=lambda i: (start[i], i))
    active: list[tuple[int, int]] = []   # heap of (end, index) of running instructions
    finished: list[int] = []             # sorted indices of instructions that have ended
    for j in order:
        while active and active[0][0] <= start[j]:
            bisect.insort(finished, heapq.heappop(active)[1])
        for later in finished[bisect.bisect_right(finished, j):]:
            if engine_of[later] != engine_of[j]:
                _check_pair(program, j, later, start, end)
        for _, i in active:
            if engine_of[i] != engine_of[j]:
                _check_pair(program, i, j, start, end)
        if end[j] > start[j]:
            heapq.heappush(active, (end[j], j))
        else:
            bisect.insort(finished, j)


def _check_pair(program: Program, i: int, j: int, start: list[int], end: list[int]) -> None:
    first, second = sorted((i, j))
    a, b = program.instructions[first], program.instructions[second]
    a_writes, b_writes = a.writes(), b.writes()
    for a_name, a_op in a.operands().items():
        for b_name, b_op in b.operands().items():
            if (a_name in a_writes or b_name in b_writes) and operands_overlap(a_op, b_op):
                layer = f" (layer {layer_of(b)})" if layer_of(b) else ""
                when = ("at the same time" if start[second] < end[first] and start[first] < end[second] else
                        f"in the reverse of program order (instruction {second} ends at cycle {end[second]}, "
                        f"before instruction {first} starts at cycle {start[first]})")
                raise EmulatorFault(
                    f"hazard: instruction {second} {b.opcode}{layer} operand {b_name!r} "
                    f"({b_op.describe()}) and instruction {first} {a.opcode} operand {a_name!r} "
                    f"({a_op.describe()}) touch the same bytes {when} on engines "
                    f"{b.engine()} and {a.engine()}, and one of them writes; add {first} to the deps "
                    f"of instruction {second} (or move one of the buffers)",
                    index=second, operand=b_name, kind="hazard")
