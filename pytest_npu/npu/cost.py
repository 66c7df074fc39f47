"""Cycles, counted actions and energy of an NPU program: an event-driven model of the target.

Timing is data-independent, so it is computed once per (program, target) and every run of the
program reuses it. The model (docs/guide/isa-and-cost-model.md derives each term):

* Engines: ``dma0..dma{k-1}``, the shared ``dram_bus``, per core ``core{c}.mac``,
  ``core{c}.elementwise``, ``core{c}.lut``, and ``host``. Each engine runs its instructions in
  program order; an instruction starts when its engine is free and all its deps have finished
  (see :func:`schedule`: in-order queues make the event simulation a single pass).
* DMA: a latency phase (``dram_latency_cycles``), then a data phase holding the shared DRAM bus
  for ``ceil(bytes_touched / dram_bytes_per_cycle)`` cycles, where ``bytes_touched`` rounds every
  contiguous run of the DRAM-side view up to whole bursts. Several channels overlap their latency
  phases but share the bus bandwidth, served in program order.
* Compute: ``overhead_cycles + max(array cycles, SRAM bytes / sram_bytes_per_cycle, output-stage
  cycles)``; SRAM bytes count each operand once (ideal on-chip reuse of windows and weights). MAC array (Vela / SCALE-Sim style, lanes idle on ragged edges):
  CONV2D ``ceil(Cout/ofm) * ceil(Cin/ifm) * ceil(OH*OW/pix) * KH*KW``; DEPTHWISE
  ``ceil(C/ofm) * ceil(OH*OW/pix) * KH*KW`` (ifm lanes idle); FC/MATMUL rows M as pixels; int16
  activations divide the rate by ``int16_factor``. The output stage requantises every output
  element at ``elementwise_width`` per cycle (counted as element-wise ops). POOL (kernel elements
  per output), ELEMENTWISE, RESCALE, RESIZE: ``ceil(elements / elementwise_width)``; LUT:
  ``ceil(elements / lut_width)``.
* HOST: ``host_overhead_us + npu.host.count_ops(...) / host_ops_per_second``, in cycles; a HOST
  instruction right after another HOST instruction continues the same hand-over and pays no
  overhead. The host reads and writes DRAM through its own port, not the NPU's DMA bus.
* Roofline: ``max(MACs / peak MACs per cycle, DMA bytes / dram_bytes_per_cycle)``; host DRAM
  traffic is counted in the summary's DRAM bytes and energy but not in the bound (it does not
  use the NPU's bus).
* Energy: counted actions times the target's table (int16 MACs at ``mac_int16_pj``; DRAM read
  and write both at ``dram_pj_per_byte``) plus ``static_mw`` x latency.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..errors import EmulatorFault
from ..targets.model import Target
from . import isa
from .execution import Summary, TraceRow
from .isa import Instruction, Operand
from .program import Program, deps_of, layer_of, operand_span

ENERGY_CLASSES = ("mac", "sram", "dram", "elementwise", "lut", "host", "static")


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


def instruction_cost(target: Target, ins: Instruction, handover: bool = True) -> InstructionCost:
    """Cycles and counted actions of one instruction on ``target`` (shapes already validated).

    ``handover=False``: a HOST instruction that continues the host's turn (see ``time_program``)
    pays no ``host_overhead_us``."""
    lanes = target.mac
    if isinstance(ins, (isa.DmaIn, isa.DmaOut)):
        dram_side = ins.src if isinstance(ins, isa.DmaIn) else ins.dst
        sram_side = ins.dst if isinstance(ins, isa.DmaIn) else ins.src
        padded = burst_bytes(dram_side, target.dram_burst_bytes)
        nbytes = dram_side.nbytes
        return InstructionCost(
            ins.engine(), _ceil(padded, target.dram_bytes_per_cycle), latency=target.dram_latency_cycles,
            bus_bytes=padded,
            dram_read=nbytes if isinstance(ins, isa.DmaIn) else 0,
            dram_write=nbytes if isinstance(ins, isa.DmaOut) else 0,
            sram_write=sram_side.nbytes if isinstance(ins, isa.DmaIn) else 0,
            sram_read=sram_side.nbytes if isinstance(ins, isa.DmaOut) else 0)
    if isinstance(ins, isa.Conv2D):
        kh, kw, cin, cout = ins.weights.shape
        oh, ow, _ = ins.ofm.shape
        cycles = (_ceil(cout, lanes.ofm_lanes) * _ceil(cin, lanes.ifm_lanes)
                  * _ceil(oh * ow, lanes.pixel_lanes) * kh * kw)
        cycles, int16 = _mac_rate(target, cycles, ins.ifm)
        out = ins.ofm.size
        return _compute(target, ins, cycles, out, macs=out * kh * kw * cin, elementwise_ops=out, int16=int16)
    if isinstance(ins, isa.DepthwiseConv2D):
        kh, kw, c = ins.weights.shape
        oh, ow, _ = ins.ofm.shape
        cycles = _ceil(c, lanes.ofm_lanes) * _ceil(oh * ow, lanes.pixel_lanes) * kh * kw
        cycles, int16 = _mac_rate(target, cycles, ins.ifm)
        out = ins.ofm.size
        return _compute(target, ins, cycles, out, macs=out * kh * kw, elementwise_ops=out, int16=int16)
    if isinstance(ins, (isa.FullyConnected, isa.MatMul)):
        ifm = ins.ifm if isinstance(ins, isa.FullyConnected) else ins.a
        m, k = ifm.shape
        n = ins.ofm.shape[-1]
        cycles = _ceil(n, lanes.ofm_lanes) * _ceil(k, lanes.ifm_lanes) * _ceil(m, lanes.pixel_lanes)
        cycles, int16 = _mac_rate(target, cycles, ifm)
        out = ins.ofm.size
        return _compute(target, ins, cycles, out, macs=m * k * n, elementwise_ops=out, int16=int16)
    if isinstance(ins, isa.Pool):
        elements = ins.ofm.size * ins.kernel[0] * ins.kernel[1]
        return _compute(target, ins, _ceil(elements, target.elementwise_width), 0, elementwise_ops=elements)
    if isinstance(ins, (isa.Elementwise, isa.Rescale, isa.Resize)):
        elements = ins.ofm.size
        return _compute(target, ins, _ceil(elements, target.elementwise_width), 0, elementwise_ops=elements)
    if isinstance(ins, isa.Lut):
        elements = ins.ofm.size
        return _compute(target, ins, _ceil(elements, target.lut_width), 0, lut_lookups=elements)
    if isinstance(ins, isa.Softmax):
        # the element-wise sequence it stands for: each step is an instruction with its overhead
        elements = ins.ofm.size
        rows = elements // max(ins.ofm.shape[-1], 1)
        ops = isa.Softmax.FULL_PASSES * elements + isa.Softmax.ROW_STEPS * rows
        steps = isa.Softmax.FULL_PASSES + isa.Softmax.ROW_STEPS
        cycles = (_ceil(ops, target.elementwise_width) + _ceil(elements, target.lut_width)
                  + (steps - 1) * target.overhead_cycles)
        return _compute(target, ins, cycles, 0, elementwise_ops=ops, lut_lookups=elements)
    if isinstance(ins, isa.HostOp):
        from . import host  # local: host imports onnxruntime lazily, keep cost importable alone

        ops = int(host.count_ops(ins.op, ins.attrs, [o.shape for o in ins.inputs],
                                 [o.shape for o in ins.outputs]))
        seconds = (target.host_overhead_us * 1e-6 if handover else 0.0) + ops / target.host_ops_per_second
        cycles = max(1, int(math.ceil(seconds * target.clock_mhz * 1e6)))
        return InstructionCost("host", cycles, host_ops=ops,
                               dram_read=sum(o.nbytes for o in ins.inputs if o.mem == "dram"),
                               dram_write=sum(o.nbytes for o in ins.outputs if o.mem == "dram"))
    raise EmulatorFault(f"no cost model for opcode {ins.opcode}", kind="unsupported")


@dataclass
class Timing:
    """The schedule of one program on one target: what ``Execution.trace``/``summary`` report."""

    trace: list[TraceRow]
    summary: Summary
    costs: list[InstructionCost]
    bus_windows: list[tuple[int, int]]   # per instruction: its DRAM-bus data phase (0, 0 if none)


def schedule(program: Program, costs: list[InstructionCost]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Start and end cycle of every instruction, and the DRAM-bus window of every DMA.

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
    engine_free: dict[str, int] = defaultdict(int)
    bus_free = 0
    for i, (ins, c) in enumerate(zip(program.instructions, costs)):
        begin = max([engine_free[c.engine], *(end[d] for d in deps_of(ins))])
        if c.engine.startswith("dma"):
            data_start = max(begin + c.latency, bus_free)
            bus_free = data_start + c.cycles
            bus[i] = (data_start, bus_free)
            finish = bus_free
        else:
            finish = begin + c.cycles
        start[i], end[i] = begin, finish
        engine_free[c.engine] = finish
    return start, end, bus


def time_program(program: Program, target: Target) -> Timing:
    """Schedule, check hazards, and summarise (trace rows, energy, utilisation, roofline)."""
    # A run of consecutive HOST instructions (a float tail, a dynamically quantised layer) is one
    # turn of the host: the hand-over overhead is paid by the first of them only.
    costs = [instruction_cost(target, ins, handover=not (i and isinstance(ins, isa.HostOp)
                                                         and isinstance(program.instructions[i - 1], isa.HostOp)))
             for i, ins in enumerate(program.instructions)]
    start, end, bus = schedule(program, costs)
    check_hazards(program, start, end, [c.engine for c in costs])
    rows = []
    totals = dict.fromkeys(ENERGY_CLASSES, 0.0)
    for i, (ins, c) in enumerate(zip(program.instructions, costs)):
        parts = c.energy_pj(target)
        for k, v in parts.items():
            totals[k] += v
        rows.append(TraceRow(i, ins.opcode, c.engine, layer_of(ins), start[i], end[i], macs=c.macs,
                             sram_read=c.sram_read, sram_write=c.sram_write, dram_read=c.dram_read,
                             dram_write=c.dram_write, elementwise_ops=c.elementwise_ops,
                             lut_lookups=c.lut_lookups, host_ops=c.host_ops, energy_pj=sum(parts.values())))
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
