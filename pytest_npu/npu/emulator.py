"""The emulated NPU: runs a Program on a batch of inputs with exact integer semantics.

``Emulator(target).run(program, inputs) -> Execution``. Memory is real: DRAM and SRAM are
``(N, bytes)`` uint8 buffers, one row per inference of the batch (the N inferences run the same
program in lock-step), and every operand is a strided view of a buffer. Before anything runs the
program is checked against the target (bounds, SRAM capacity, supported operations and dtypes,
operand shapes, dependencies) and scheduled by :mod:`npu.cost`, which also checks hazards; any
violation is an :class:`~pytest_npu.errors.EmulatorFault` naming the instruction and operand.

Constant operands (weights, bias) are read from sample 0 of the batch: they come from the
constants image, identical in every sample. SRAM and DRAM buffers are sized to what the program
touches (the target's capacities are enforced by the checks, not by allocating them).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EmulatorFault, NpuError, ProgramError
from ..targets.model import Target
from . import fixedpoint, host, kernels
from .cost import Timing, time_program
from .execution import Execution
from .isa import (
    DTYPES,
    FLOAT_DTYPES,
    Conv2D,
    DepthwiseConv2D,
    DmaIn,
    DmaOut,
    Elementwise,
    FullyConnected,
    HostOp,
    Instruction,
    Lut,
    MatMul,
    Operand,
    Pool,
    Requant,
    Rescale,
    Resize,
    Softmax,
    dtype_range,
)
from .program import Program, check_program, format_operand, operand_span, where

_ACTIVATION_CLASS = {"int8": "int8", "uint8": "int8", "int16": "int16"}
_PLAN_CACHE_SIZE = 8


def _fault(index: int, ins: Instruction, operand: str | None, kind: str, message: str) -> EmulatorFault:
    return EmulatorFault(f"{where(index, ins, operand)}: {message}", index=index, operand=operand, kind=kind)


# ---------------------------------------------------------------------------------------------
# static checks that need the target
def _check_target(index: int, ins: Instruction, target: Target) -> None:
    if isinstance(ins, HostOp):
        if ins.op not in host.OPS:
            raise _fault(index, ins, "op", "unsupported",
                         f"host op {ins.op!r} is not implemented by the host fallback (known: "
                         f"{', '.join(sorted(host.OPS))}); use float_op to run an ONNX operator")
        if target.fallback != "host":
            raise _fault(index, ins, None, "unsupported",
                         f"host fallback op {ins.op!r} but target {target.name} has fallback="
                         f"{target.fallback!r}; run it on a target with fallback = \"host\"")
    else:
        missing = [op for op in ins.required_operations() if not target.supports(op)]
        if missing:
            raise _fault(index, ins, None, "unsupported",
                         f"operation {'/'.join(missing)!r} is not in target {target.name}'s instruction set "
                         f"({', '.join(sorted(target.operations))}); recompile for this target")
    engine = ins.engine()
    if engine.startswith("dma") and not 0 <= getattr(ins, "channel", 0) < target.dma_channels:
        raise _fault(index, ins, "channel", "unsupported",
                     f"DMA channel {getattr(ins, 'channel', 0)} but target {target.name} has {target.dma_channels}")
    if engine.startswith("core") and not 0 <= getattr(ins, "core", 0) < target.cores:
        raise _fault(index, ins, "core", "unsupported",
                     f"core {getattr(ins, 'core', 0)} but target {target.name} has {target.cores} core(s)")
    for name, op in ins.operands().items():
        if op.dtype in FLOAT_DTYPES and not isinstance(ins, HostOp):
            raise _fault(index, ins, name, "unsupported",
                         f"{format_operand(op)} is {op.dtype}: the NPU's engines move and compute "
                         "integers only; float tensors stay in DRAM and only HOST instructions touch them")
        cls = _ACTIVATION_CLASS.get(op.dtype)
        if name in ("weights", "bias") or cls is None or isinstance(ins, (DmaIn, DmaOut, HostOp)):
            continue
        if cls not in target.dtypes:
            raise _fault(index, ins, name, "unsupported",
                         f"{op.dtype} activations are not supported by target {target.name} "
                         f"(dtypes: {', '.join(sorted(target.dtypes))})")
    _check_memories(index, ins)


def _check_memories(index: int, ins: Instruction) -> None:
    if isinstance(ins, (DmaIn, DmaOut)):
        want = {"src": "dram", "dst": "sram"} if isinstance(ins, DmaIn) else {"src": "sram", "dst": "dram"}
        for name, mem in want.items():
            if getattr(ins, name).mem != mem:
                raise _fault(index, ins, name, "unsupported",
                             f"{ins.opcode} moves DRAM<->SRAM: {name} must be in {mem.upper()}, got "
                             f"{format_operand(getattr(ins, name))}")
        return
    want_mem = "dram" if isinstance(ins, HostOp) else "sram"
    for name, op in ins.operands().items():
        if op.mem != want_mem:
            what = "the host reads and writes DRAM" if want_mem == "dram" else "compute engines address SRAM only"
            raise _fault(index, ins, name, "unsupported",
                         f"{format_operand(op)}: {what}; move the tensor with a DMA first")


def _check_sram_capacity(program: Program, target: Target) -> None:
    need = program.memory_needed("sram")
    if need <= target.sram_bytes:
        return
    for index, ins in enumerate(program.instructions):
        for name, op in ins.operands().items():
            if op.mem == "sram" and operand_span(op)[1] > target.sram_bytes:
                raise _fault(index, ins, name, "sram_overflow",
                             f"{format_operand(op)} ends at byte {operand_span(op)[1]}, beyond target "
                             f"{target.name}'s SRAM of {target.sram_bytes} bytes: the program's SRAM plan "
                             f"needs {need} bytes; recompile it for this target (or a smaller sram_limit_bytes)")
    raise EmulatorFault(f"program tensors need {need} bytes of SRAM, target {target.name} has "
                        f"{target.sram_bytes}; recompile the program for this target", kind="sram_overflow")


def _conv_out(size: int, pad: int, kernel: int, stride: int, dilation: int) -> int:
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def _check_requant(index, ins, requant: Requant | None, ofm: Operand, channels: int) -> None:
    if requant is None:
        if ofm.dtype != "int32":
            raise _fault(index, ins, "requant", "shape",
                         f"no requant but ofm is {ofm.dtype}: give a Requant, or write the raw "
                         "accumulator to an int32 ofm")
        return
    n = len(requant.multiplier)
    if n != len(requant.shift) or n not in (1, channels):
        raise _fault(index, ins, "requant", "shape",
                     f"requant has {n} multipliers and {len(requant.shift)} shifts; need 1 (per tensor) "
                     f"or {channels} (per channel), the same number of each")


def _check_shapes(index: int, ins: Instruction) -> None:
    def expect(ok: bool, operand: str, message: str) -> None:
        if not ok:
            raise _fault(index, ins, operand, "shape", message)

    if isinstance(ins, (DmaIn, DmaOut)):
        expect(ins.src.shape == ins.dst.shape and ins.src.dtype == ins.dst.dtype, "dst",
               f"DMA copies element by element: dst {ins.dst.dtype}{list(ins.dst.shape)} must equal "
               f"src {ins.src.dtype}{list(ins.src.shape)}")
    elif isinstance(ins, (Conv2D, DepthwiseConv2D)):
        depthwise = isinstance(ins, DepthwiseConv2D)
        expect(len(ins.ifm.shape) == 3, "ifm", f"ifm must be (H, W, C), got {list(ins.ifm.shape)}")
        expect(len(ins.weights.shape) == (3 if depthwise else 4), "weights",
               f"weights must be {'(KH, KW, C)' if depthwise else '(KH, KW, Cin, Cout)'}, got {list(ins.weights.shape)}")
        expect(len(ins.ofm.shape) == 3, "ofm", f"ofm must be (OH, OW, C), got {list(ins.ofm.shape)}")
        h, w, cin = ins.ifm.shape
        kh, kw = ins.weights.shape[:2]
        cout = ins.weights.shape[2] if depthwise else ins.weights.shape[3]
        expect(ins.weights.shape[2] == cin, "weights",
               f"weights {list(ins.weights.shape)} do not match the ifm's {cin} channels")
        expect(ins.bias.shape == (cout,), "bias", f"bias must be ({cout},), got {list(ins.bias.shape)}")
        expect(min(ins.stride) >= 1 and min(ins.dilation) >= 1 and min(ins.padding) >= 0 and len(ins.padding) == 4,
               "stride", f"stride {ins.stride} / dilation {ins.dilation} must be >= 1, padding {ins.padding} 4 values >= 0")
        t, b, left, r = ins.padding
        oh = _conv_out(h, t + b, kh, ins.stride[0], ins.dilation[0])
        ow = _conv_out(w, left + r, kw, ins.stride[1], ins.dilation[1])
        expect(ins.ofm.shape == (oh, ow, cout), "ofm",
               f"ofm must be {[oh, ow, cout]} for ifm {list(ins.ifm.shape)}, kernel {kh}x{kw}, stride "
               f"{ins.stride}, dilation {ins.dilation}, padding {ins.padding}; got {list(ins.ofm.shape)}")
        _check_requant(index, ins, ins.requant, ins.ofm, cout)
    elif isinstance(ins, FullyConnected):
        expect(len(ins.ifm.shape) == 2, "ifm", f"ifm must be (M, K), got {list(ins.ifm.shape)}")
        expect(len(ins.weights.shape) == 2 and ins.weights.shape[0] == ins.ifm.shape[-1], "weights",
               f"weights must be (K={ins.ifm.shape[-1]}, N), got {list(ins.weights.shape)}")
        n = ins.weights.shape[1]
        expect(ins.bias.shape == (n,), "bias", f"bias must be ({n},), got {list(ins.bias.shape)}")
        expect(ins.ofm.shape == (ins.ifm.shape[0], n), "ofm",
               f"ofm must be {[ins.ifm.shape[0], n]}, got {list(ins.ofm.shape)}")
        _check_requant(index, ins, ins.requant, ins.ofm, n)
    elif isinstance(ins, MatMul):
        expect(len(ins.a.shape) == 2 and len(ins.b.shape) == 2 and ins.a.shape[1] == ins.b.shape[0], "b",
               f"a (M, K) x b (K, N): got a {list(ins.a.shape)}, b {list(ins.b.shape)}")
        expect(ins.ofm.shape == (ins.a.shape[0], ins.b.shape[-1]), "ofm",
               f"ofm must be {[ins.a.shape[0], ins.b.shape[-1]]}, got {list(ins.ofm.shape)}")
        _check_requant(index, ins, ins.requant, ins.ofm, 1)
    elif isinstance(ins, Pool):
        expect(ins.kind in ("max", "avg"), "kind", f"pool kind {ins.kind!r}; use 'max' or 'avg'")
        expect(len(ins.ifm.shape) == 3 and len(ins.ofm.shape) == 3, "ofm", "pool ifm and ofm must be (H, W, C)")
        h, w, c = ins.ifm.shape
        t, b, left, r = ins.padding
        oh = _conv_out(h, t + b, ins.kernel[0], ins.stride[0], 1)
        ow = _conv_out(w, left + r, ins.kernel[1], ins.stride[1], 1)
        expect(ins.ofm.shape == (oh, ow, c), "ofm",
               f"ofm must be {[oh, ow, c]} for ifm {list(ins.ifm.shape)}, kernel {ins.kernel}, stride "
               f"{ins.stride}, padding {ins.padding}; got {list(ins.ofm.shape)}")
        if ins.kind == "avg":
            _check_requant(index, ins, ins.requant, ins.ofm, c)
        expect(not ins.divide or (ins.kind == "avg" and ins.requant is not None
                                  and ins.requant.ofm_zp == ins.ifm_zp), "divide",
               "divide=True is TFLite's average pool: kind 'avg', with a requant whose ofm_zp equals ifm_zp "
               "(its clamp bounds the output)")
    elif isinstance(ins, Elementwise):
        expect(ins.op in ("add", "sub", "mul", "min", "max"), "op", f"op {ins.op!r}; use add, sub, mul, min, max")
        expect(ins.a.shape == ins.ofm.shape, "ofm", f"ofm {list(ins.ofm.shape)} must equal a {list(ins.a.shape)}")
        channels = ins.a.shape[-1] if ins.a.shape else 1
        expect(0 <= ins.left_shift <= 30, "left_shift",
               f"left_shift {ins.left_shift} must be in 0..30 (20 for int8, <= 15 for int16 inputs)")
        expect(ins.b.shape == ins.a.shape or ins.b.shape in ((1,), (channels,)), "b",
               f"b {list(ins.b.shape)} must equal a {list(ins.a.shape)} or be (1,) or ({channels},)")
        _check_requant(index, ins, ins.requant, ins.ofm, channels)
    elif isinstance(ins, Lut):
        expect(ins.ifm.shape == ins.ofm.shape, "ofm", f"ofm {list(ins.ofm.shape)} must equal ifm {list(ins.ifm.shape)}")
        expect(ins.ifm.dtype == "int8" and ins.ofm.dtype == "int8", "ifm", "LUT maps int8 to int8")
        expect(len(ins.table) == 256, "table", f"table has {len(ins.table)} entries; need 256")
    elif isinstance(ins, Rescale):
        expect(ins.ifm.shape == ins.ofm.shape, "ofm", f"ofm {list(ins.ofm.shape)} must equal ifm {list(ins.ifm.shape)}")
        _check_requant(index, ins, ins.requant, ins.ofm, ins.ofm.shape[-1] if ins.ofm.shape else 1)
    elif isinstance(ins, Resize):
        expect(len(ins.ifm.shape) == 3 and min(ins.scale) >= 1, "ifm", "resize ifm must be (H, W, C), scale >= 1")
        expect(ins.mode in ("nearest", "bilinear") and len(ins.size) in (0, 2), "mode",
               f"resize mode {ins.mode!r} with size {ins.size}: use nearest/bilinear and () or (OH, OW)")
        expect(ins.ifm.dtype == ins.ofm.dtype, "ofm", "resize keeps the dtype")
        h, w, c = ins.ifm.shape
        want = (*ins.size, c) if ins.size else (h * ins.scale[0], w * ins.scale[1], c)
        expect(ins.ofm.shape == want, "ofm", f"ofm must be {list(want)}, got {list(ins.ofm.shape)}")
    elif isinstance(ins, Softmax) and ins.int16_scaling:
        expect(ins.ifm.shape == ins.ofm.shape, "ofm", f"ofm {list(ins.ofm.shape)} must equal ifm {list(ins.ifm.shape)}")
        expect(ins.ifm.dtype == ins.ofm.dtype == "int16" and ins.requant is None and len(ins.int16_scaling) == 2,
               "int16_scaling", "an int16 SOFTMAX maps int16 to int16 (Q0.15) with (multiplier, shift) and no requant")
    elif isinstance(ins, Softmax):
        expect(ins.ifm.shape == ins.ofm.shape, "ofm", f"ofm {list(ins.ofm.shape)} must equal ifm {list(ins.ifm.shape)}")
        expect(ins.ifm.dtype == "int8" and (ins.ofm.dtype == "int8" or ins.requant is not None), "ifm",
               "SOFTMAX maps int8 to int8 (TFLite's output), or to any integer dtype through a requant")
        if ins.requant is not None:
            _check_requant(index, ins, ins.requant, ins.ofm, 1)
        expect(len(ins.exp_table) == 256, "exp_table", f"exp_table has {len(ins.exp_table)} entries; need 256")


# ---------------------------------------------------------------------------------------------
# execution
@dataclass
class _Plan:
    """What a program needs at run time, computed once: checks passed, timing, memory sizes."""

    program: Program
    timing: Timing
    dram_size: int
    sram_size: int
    memory: _MemoryPlan
    bound: OrderedDict = field(default_factory=OrderedDict)   # batch N -> (dram, sram, steps)


@dataclass
class _MemoryPlan:
    """What a run must (re)initialise, found once by following every byte through the program.

    Zeroing both memories and copying the constants into every sample on every run cost more
    than the whole computation for small models (autoencoder, batch 32: 26 MB of memset and
    copies for 8 MB of weights). Semantics are unchanged: memory starts at zero, so only the
    bytes some instruction reads before anything wrote them in this run are zeroed, and a run
    that writes the constants region rewrites it each time.
    """

    zero_ranges: dict[str, list[tuple[int, int]]]   # mem -> [lo, hi) read before written
    constants_each_run: bool                        # an input or instruction writes into them
    row0_dmas: frozenset[int]                       # DMA_IN whose dst is read only as weights/bias
    fixed_weights: frozenset[int] = frozenset()     # MACs whose weights are constants-image bytes


def _byte_view(buffer: np.ndarray, op: Operand) -> np.ndarray:
    """Every byte of ``op`` in a one-row byte-indexed ``buffer`` (an extra item-byte axis)."""
    itemsize = np.dtype(DTYPES[op.dtype]).itemsize
    return np.ndarray(shape=(*op.shape, itemsize), dtype=buffer.dtype, buffer=buffer,
                      offset=op.offset * buffer.itemsize,
                      strides=(*(s * buffer.itemsize for s in op.byte_strides()), buffer.itemsize))


def _ranges(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _memory_plan(program: Program, sizes: dict[str, int]) -> _MemoryPlan:
    """Last writer of every byte, in program order (-1 never written, -2 loaded before the run).

    A read of a ``-1`` byte needs the zero fill. A DMA_IN may copy sample 0 only when every later
    read of its bytes, until something overwrites them, is a MAC's ``weights``/``bias`` operand:
    those are read from sample 0 (they are constants, identical in every sample). A byte mask
    follows the constants image through DMAs (any other write clears it): a MAC whose weights are
    all image bytes reads the same values on every run, so its kernel converts them once.
    """
    writer = {mem: np.full(size, -1, np.int32) for mem, size in sizes.items()}
    unset = {mem: np.zeros(size, bool) for mem, size in sizes.items()}
    lo, hi = program.constants_offset, program.constants_offset + len(program.constants)
    preloaded = [program.tensors[name].operand() for name in program.inputs]
    constants_each_run = any(ins_op.mem == "dram" and operand_span(ins_op)[0] < hi and operand_span(ins_op)[1] > lo
                             for ins in program.instructions for ins_op in ins.writes().values()) or \
        any(op.mem == "dram" and operand_span(op)[0] < hi and operand_span(op)[1] > lo for op in preloaded)
    writer["dram"][lo:hi] = -2
    for op in preloaded:
        _byte_view(writer[op.mem], op)[...] = -2
    image = {mem: np.zeros(size, bool) for mem, size in sizes.items()}
    image["dram"][lo:hi] = True
    for op in preloaded:
        _byte_view(image[op.mem], op)[...] = False
    fixed: set[int] = set()
    full: set[int] = set()
    dmas = {i for i, ins in enumerate(program.instructions) if isinstance(ins, DmaIn)}

    def read(op: Operand, by_weights: bool) -> None:
        last = _byte_view(writer[op.mem], op)
        never = last == -1
        if never.any():
            _byte_view(unset[op.mem], op)[never] = True
        if not by_weights:
            full.update(int(w) for w in np.unique(last) if w >= 0)

    for index, ins in enumerate(program.instructions):
        mac = isinstance(ins, (Conv2D, DepthwiseConv2D, FullyConnected))
        for name, op in ins.reads().items():
            read(op, mac and name in ("weights", "bias"))
        if isinstance(ins, (Conv2D, DepthwiseConv2D, FullyConnected)) and \
                _byte_view(image[ins.weights.mem], ins.weights).all():
            fixed.add(index)
        copied = _byte_view(image[ins.src.mem], ins.src).copy() if isinstance(ins, (DmaIn, DmaOut)) else False
        for op in ins.writes().values():
            _byte_view(writer[op.mem], op)[...] = index
            _byte_view(image[op.mem], op)[...] = copied
    for name in program.outputs:
        read(program.tensors[name].operand(), False)
    return _MemoryPlan({mem: _ranges(mask) for mem, mask in unset.items()}, constants_each_run,
                       frozenset(dmas - full), frozenset(fixed))


class Emulator:
    """Runs programs on one target. Reuse the instance: plans and buffers are cached per program."""

    def __init__(self, target: Target, *, blas_threads: int | None = 1):
        self.target = target
        self.blas_threads = blas_threads
        self._plans: OrderedDict[int, _Plan] = OrderedDict()

    # -- public -------------------------------------------------------------------------------
    def run(self, program: Program, inputs: dict[str, np.ndarray]) -> Execution:
        with _blas_limit(self.blas_threads):
            return self._run(program, inputs)

    def _run(self, program: Program, inputs: dict[str, np.ndarray]) -> Execution:
        plan = self.plan(program)
        batch = self._batch_size(program, inputs)
        dram, sram, steps = self._bind(plan, batch)
        memory = plan.memory
        for buffer, mem in ((dram, "dram"), (sram, "sram")):
            for lo, hi in memory.zero_ranges[mem]:
                buffer[:, lo:hi] = 0
        if program.constants and memory.constants_each_run:
            _load_constants(dram, program)
        memories = {"dram": dram, "sram": sram}
        for name in program.inputs:      # the application writes inputs where the program reads them
            info = program.tensors[name]
            self._view(memories[info.mem], info.operand())[...] = inputs[name]
        for index, step in steps:
            try:
                step()
            except EmulatorFault as exc:
                if exc.index is not None:
                    raise
                ins = program.instructions[index]
                raise EmulatorFault(f"{where(index, ins, exc.operand)}: {exc}", index=index,
                                    operand=exc.operand, kind=exc.kind) from exc
            except NpuError:
                raise
            except (ValueError, TypeError, IndexError, FloatingPointError) as exc:
                ins = program.instructions[index]
                raise _fault(index, ins, None, "kernel", f"failed: {exc}") from exc
        outputs = {name: np.array(self._view(memories[program.tensors[name].mem], program.tensors[name].operand()))
                   for name in program.outputs}
        return Execution(outputs, list(plan.timing.trace), plan.timing.summary, extra={"batch": batch})

    def plan(self, program: Program) -> _Plan:
        """Check and time ``program`` (cached by identity; a Program is not modified after build)."""
        key = id(program)
        plan = self._plans.get(key)
        if plan is not None and plan.program is program:
            self._plans.move_to_end(key)
            return plan
        plan = self._make_plan(program)
        self._plans[key] = plan
        while len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def timing(self, program: Program) -> Timing:
        """Trace and summary without running (timing does not depend on data)."""
        return self.plan(program).timing

    # -- internals ----------------------------------------------------------------------------
    def _make_plan(self, program: Program) -> _Plan:
        target = self.target
        for name in list(program.inputs) + list(program.outputs):
            info = program.tensors.get(name)
            if info is None:
                raise ProgramError(f"program input/output {name!r} is not a tensor of the memory map")
        check_program(program, memory_sizes={"dram": target.dram_bytes, "sram": 1 << 62})
        dram_size = max(program.memory_needed("dram"), 1)
        if dram_size > target.dram_bytes:
            raise ProgramError(f"program tensors or constants need {dram_size} bytes of DRAM, target "
                               f"{target.name} has {target.dram_bytes}")
        _check_sram_capacity(program, target)
        for index, ins in enumerate(program.instructions):
            _check_target(index, ins, target)
            _check_shapes(index, ins)
        timing = time_program(program, target)
        sram_size = max(program.memory_needed("sram"), 1)
        return _Plan(program, timing, dram_size, sram_size,
                     _memory_plan(program, {"dram": dram_size, "sram": sram_size}))

    @staticmethod
    def _batch_size(program: Program, inputs: dict[str, np.ndarray]) -> int:
        if not isinstance(inputs, dict):
            raise EmulatorFault(f"inputs must be a dict name -> array for {program.inputs}",
                                kind="input")
        missing = [n for n in program.inputs if n not in inputs]
        extra = [n for n in inputs if n not in program.inputs]
        if missing or extra:
            raise EmulatorFault(f"inputs {sorted(inputs)} do not match the program's inputs {program.inputs}"
                                f" (missing {missing}, unexpected {extra})",
                                operand=(missing or extra)[0], kind="input")
        batch = None
        for name in program.inputs:
            info = program.tensors[name]
            arr = np.asarray(inputs[name])
            if arr.shape[1:] != tuple(info.shape) or arr.ndim != len(info.shape) + 1:
                raise EmulatorFault(f"input {name!r} has shape {arr.shape}; the program expects "
                                    f"(N, {', '.join(map(str, info.shape))}) with a leading batch axis",
                                    operand=name, kind="input")
            if info.dtype in FLOAT_DTYPES:
                if arr.dtype.kind not in "fiu":
                    raise EmulatorFault(f"input {name!r} is {arr.dtype}; the program takes {info.dtype} "
                                        "(the host quantises it)", operand=name, kind="input")
            elif arr.dtype.kind not in "iu":
                raise EmulatorFault(f"input {name!r} is {arr.dtype}; the NPU takes quantised integers "
                                    f"({info.dtype}): quantise it first", operand=name, kind="input")
            elif arr.size and (int(arr.min()) < dtype_range(info.dtype)[0]
                               or int(arr.max()) > dtype_range(info.dtype)[1]):
                lo, hi = dtype_range(info.dtype)
                raise EmulatorFault(f"input {name!r} has values in [{arr.min()}, {arr.max()}], outside "
                                    f"{info.dtype} [{lo}, {hi}]", operand=name, kind="input")
            if batch is None:
                batch = arr.shape[0]
            elif arr.shape[0] != batch:
                raise EmulatorFault(f"input {name!r} has batch {arr.shape[0]}, another input has {batch}; "
                                    "all inputs need the same leading batch size", operand=name, kind="input")
        if batch is None or batch < 1:
            raise EmulatorFault("a run needs at least one input sample (batch >= 1)", kind="input")
        return batch

    @staticmethod
    def _view(buffer: np.ndarray, op: Operand) -> np.ndarray:
        return np.ndarray(shape=(buffer.shape[0], *op.shape), dtype=DTYPES[op.dtype], buffer=buffer,
                          offset=op.offset, strides=(buffer.strides[0], *op.byte_strides()))

    def _bind(self, plan: _Plan, batch: int):
        bound = plan.bound.get(batch)
        if bound is not None:
            return bound
        dram = np.zeros((batch, plan.dram_size), np.uint8)
        sram = np.zeros((batch, plan.sram_size), np.uint8)
        if plan.program.constants:      # once per buffer; again each run only if the program writes them
            _load_constants(dram, plan.program)
        memories = {"dram": dram, "sram": sram}

        def view(op: Operand) -> np.ndarray:
            return self._view(memories[op.mem], op)

        steps = []
        for i, ins in enumerate(plan.program.instructions):
            try:
                steps.append((i, _step(ins, view, self.target.rounding, row0=i in plan.memory.row0_dmas,
                                       fixed_weights=i in plan.memory.fixed_weights)))
            except EmulatorFault as exc:      # e.g. a requant multiplier out of range, found once here
                raise EmulatorFault(f"{where(i, ins, exc.operand)}: {exc}", index=i, operand=exc.operand,
                                    kind=exc.kind) from exc
        plan.bound[batch] = (dram, sram, steps)
        while len(plan.bound) > 2:
            plan.bound.popitem(last=False)
        return plan.bound[batch]


def _load_constants(dram: np.ndarray, program: Program) -> None:
    dram[:, program.constants_offset:program.constants_offset + len(program.constants)] = \
        np.frombuffer(program.constants, np.uint8)


_BLAS: list = []   # [ThreadpoolController or None], created on first use (it scans loaded libraries)


def _blas_limit(threads: int | None):
    """Cap BLAS threads for the duration of a run.

    The kernels' GEMMs are small (a layer is ~1-40 MFLOP). Multi-threaded OpenBLAS on a busy
    machine -- pytest-xdist workers already use every core -- spins and waits: measured on the
    2-core CI host, a 1024x144x32 GEMM took 20 ms with 2 BLAS threads under load and 1.4 ms with
    one. ``threadpoolctl`` (installed with scikit-learn) does the capping; without it, or with
    ``threads=None``, BLAS keeps its own setting (set OPENBLAS_NUM_THREADS=1 instead).
    """
    if threads is None:
        return contextlib.nullcontext()
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())
        except ImportError:
            _BLAS.append(None)
    controller = _BLAS[0]
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=threads, user_api="blas")


def _requantiser(requant: Requant | None, ofm: Operand, rounding: str) -> Callable[..., np.ndarray]:
    """``(acc, bias=None, peak=None) -> ofm values``; the RESCALE constants are checked here, once."""
    if requant is None:       # raw accumulator into an int32 ofm (validated)
        lo, hi = dtype_range("int32")

        def raw(acc, bias=None, peak=None, out=None):
            acc = np.asarray(acc).astype(np.int64)
            result = np.clip(acc if bias is None else acc + bias, lo, hi)
            if out is not None:
                out[...] = result
            return result
        return raw
    return kernels.Requantizer(np.asarray(requant.multiplier, np.int64), np.asarray(requant.shift, np.int64),
                               ofm_zp=requant.ofm_zp, lo=requant.lo, hi=requant.hi,
                               rounding=requant.rule or rounding,
                               out_dtype=ofm.dtype, channels=ofm.shape[-1] if ofm.shape else 1)


def _mac_step(ins: Conv2D | DepthwiseConv2D | FullyConnected, view: Callable[[Operand], np.ndarray], rounding: str,
              fixed_weights: bool = False) -> Callable[[], None]:
    """CONV2D, DEPTHWISE_CONV2D, FULLY_CONNECTED: the prepared exact float32 kernel when the dtypes
    allow it (:func:`kernels.prepare_mac`), else the general kernel. The accumulator and the
    bias go to the requantiser unsummed, with the a-priori bound that lets it skip range passes."""
    ifm, weights, bias, ofm = view(ins.ifm), view(ins.weights)[0], view(ins.bias)[0], view(ins.ofm)
    requant = _requantiser(ins.requant, ins.ofm, rounding)
    if isinstance(ins, FullyConnected):
        kind, geometry = "fc", {}
        general = lambda: kernels.fully_connected(ifm, weights, bias, ifm_zp=ins.ifm_zp,  # noqa: E731
                                                  weight_zp=ins.weight_zp)
    else:
        kind = "conv2d" if isinstance(ins, Conv2D) else "depthwise"
        geometry = dict(stride=ins.stride, dilation=ins.dilation, padding=ins.padding)
        kernel = kernels.conv2d if isinstance(ins, Conv2D) else kernels.depthwise_conv2d
        general = lambda: kernel(ifm, weights, bias, ifm_zp=ins.ifm_zp,  # noqa: E731
                                 weight_zp=ins.weight_zp, **geometry)
    batch = ifm.shape[0]
    chunk = _batch_chunk(ins, batch)
    fast = {size: kernels.prepare_mac(kind, size, ins.ifm.shape, ins.ifm.dtype, ins.weights.shape,
                                      ins.weights.dtype, ifm_zp=ins.ifm_zp, weight_zp=ins.weight_zp,
                                      fixed_weights=fixed_weights, **geometry)
            for size in {chunk, batch % chunk} - {0}}
    bits = 48 if "int16" in (ins.ifm.dtype, ins.weights.dtype) else 32

    def mac() -> None:
        if None not in fast.values():
            peak = int(np.abs(bias).max()) if bias.size else 0
            for lo in range(0, batch, chunk):
                hi = min(lo + chunk, batch)
                acc, bound = fast[hi - lo](ifm[lo:hi], weights)
                if bound + peak >= (1 << (bits - 1)):   # the accumulator might overflow: checked below
                    break
                out = ofm[lo:hi]
                requant(acc.reshape(out.shape), bias, bound + peak, out=out)   # acc is contiguous: a view
            else:
                return
        ofm[...] = requant(general()).reshape(ofm.shape)
    return mac


_CACHE_BYTES = 4 << 20    # a few MB per pass: measured best of 0.25/1/4 MB and whole-batch passes


def _batch_chunk(ins: Conv2D | DepthwiseConv2D | FullyConnected, batch: int) -> int:
    """Samples per pass of a MAC instruction so that its float buffers (padded input, im2col
    patches, accumulator, requant work) stay in L2: whole-batch passes over 20 MB im2col
    matrices ran at memory speed."""
    ifm_values = int(np.prod(ins.ifm.shape))
    out_values = int(np.prod(ins.ofm.shape))
    if isinstance(ins, Conv2D):
        depth = int(np.prod(ins.weights.shape[:3]))
        per_sample = 4 * ifm_values + out_values // ins.weights.shape[3] * depth * 4 + 12 * out_values
    elif isinstance(ins, DepthwiseConv2D):
        per_sample = 4 * ifm_values + 20 * out_values
    else:
        per_sample = 4 * ifm_values + 12 * out_values
    return max(1, min(batch, _CACHE_BYTES // max(per_sample, 1)))


def _step(ins: Instruction, view: Callable[[Operand], np.ndarray], rounding: str,
          row0: bool = False, fixed_weights: bool = False) -> Callable[[], None]:
    """A closure executing ``ins`` on pre-built views (no per-run lookups).

    ``row0``: the DMA's destination is only ever read as weights/bias, from sample 0 (see
    :func:`_memory_plan`), so copying the other samples would be wasted work."""
    if isinstance(ins, (DmaIn, DmaOut)):
        src, dst = view(ins.src), view(ins.dst)
        if row0:
            src, dst = src[:1], dst[:1]

        def copy() -> None:
            dst[...] = src
        return copy
    if isinstance(ins, (Conv2D, DepthwiseConv2D, FullyConnected)):
        return _mac_step(ins, view, rounding, fixed_weights)
    if isinstance(ins, MatMul):
        a, b, ofm = view(ins.a), view(ins.b), view(ins.ofm)
        requant = _requantiser(ins.requant, ins.ofm, rounding)

        def mm() -> None:
            ofm[...] = requant(kernels.matmul(a, b, a_zp=ins.a_zp, b_zp=ins.b_zp))
        return mm
    if isinstance(ins, Pool):
        ifm, ofm = view(ins.ifm), view(ins.ofm)
        kw: dict[str, Any] = dict(kind=ins.kind, kernel=ins.kernel, stride=ins.stride, padding=ins.padding,
                                  ifm_zp=ins.ifm_zp)
        if ins.divide and ins.requant is not None:       # checked: divide needs the clamp's requant
            lo, hi = ins.requant.lo, ins.requant.hi

            def average() -> None:   # isa.Pool divide: TFLite's rounded average, then the clamp
                ofm[...] = np.clip(kernels.pool(ifm, divide=True, **kw), lo, hi)
            return average
        if ins.kind == "avg":
            requant = _requantiser(ins.requant, ins.ofm, rounding)

            def avg_pool() -> None:
                ofm[...] = requant(kernels.pool(ifm, **kw))
            return avg_pool
        rq = ins.requant
        if rq is None:           # equal scales and zero points: the max itself
            def max_pool() -> None:
                ofm[...] = kernels.pool(ifm, **kw)
            return max_pool

        def max_pool_clamped() -> None:   # isa.Pool: clamp(x - ifm_zp + ofm_zp, lo, hi)
            ofm[...] = np.clip(kernels.pool(ifm, **kw) - ins.ifm_zp + rq.ofm_zp, rq.lo, rq.hi)
        return max_pool_clamped
    if isinstance(ins, Elementwise):
        a, b, ofm = view(ins.a), view(ins.b), view(ins.ofm)
        if ins.b.shape != ins.a.shape:   # (C,) or (1,) per sample: broadcast over the other axes
            b = np.broadcast_to(b.reshape(b.shape[0], *([1] * (len(ins.a.shape) - 1)), b.shape[-1]), a.shape)
        requant = _requantiser(ins.requant, ins.ofm, rounding)
        input_rule = (ins.requant.rule if ins.requant is not None else "") or rounding
        kw = dict(op=ins.op, a_zp=ins.a_zp, b_zp=ins.b_zp, a_multiplier=ins.a_multiplier, a_shift=ins.a_shift,
                  b_multiplier=ins.b_multiplier, b_shift=ins.b_shift, rounding=input_rule,
                  left_shift=ins.left_shift)

        def ew() -> None:
            ofm[...] = requant(kernels.elementwise(a, b, **kw))
        return ew
    if isinstance(ins, Lut):
        ifm, ofm = view(ins.ifm), view(ins.ofm)
        table = np.asarray(ins.table, np.int64)

        def lut() -> None:
            ofm[...] = kernels.lut(ifm, table)
        return lut
    if isinstance(ins, Rescale):
        ifm, ofm = view(ins.ifm), view(ins.ofm)
        requant = _requantiser(ins.requant, ins.ofm, rounding)

        def rescale() -> None:
            ofm[...] = requant(ifm.astype(np.int64) - ins.ifm_zp)
        return rescale
    if isinstance(ins, Resize):
        ifm, ofm = view(ins.ifm), view(ins.ofm)
        geometry: dict[str, Any] = dict(mode=ins.mode, size=ins.size, scale=ins.scale,
                                        align_corners=ins.align_corners, half_pixel_centers=ins.half_pixel_centers)

        def resize() -> None:
            ofm[...] = kernels.resize(ifm, **geometry)
        return resize
    if isinstance(ins, Softmax) and ins.int16_scaling:
        ifm, ofm = view(ins.ifm), view(ins.ofm)
        multiplier, shift = (int(v) for v in ins.int16_scaling)

        def softmax_int16() -> None:
            ofm[...] = fixedpoint.softmax_int16(ifm, multiplier, shift)
        return softmax_int16
    if isinstance(ins, Softmax):
        ifm, ofm = view(ins.ifm), view(ins.ofm)
        exp_table = np.asarray(ins.exp_table, np.int64)
        if ins.requant is not None:
            requant = _requantiser(ins.requant, ins.ofm, rounding)

            def softmax_requantised() -> None:
                ofm[...] = requant(kernels.softmax(ifm, exp_table, probability=True))
            return softmax_requantised

        def softmax() -> None:
            ofm[...] = kernels.softmax(ifm, exp_table)
        return softmax
    if isinstance(ins, HostOp):
        ins_views = [view(o) for o in ins.inputs]
        out_views = [view(o) for o in ins.outputs]

        def host_op() -> None:
            results = host.execute(ins.op, ins.attrs, ins_views)
            if len(results) != len(out_views):
                raise EmulatorFault(f"host op {ins.op!r} returned {len(results)} outputs, the instruction "
                                    f"has {len(out_views)}", operand="outputs", kind="shape")
            for k, (res, dst) in enumerate(zip(results, out_views)):
                if res.shape != dst.shape:
                    raise EmulatorFault(f"host op {ins.op!r} output {k} has shape {res.shape[1:]}, the "
                                        f"operand out{k} is {list(dst.shape[1:])}", operand=f"out{k}", kind="shape")
                dst[...] = res
        return host_op
    raise EmulatorFault(f"opcode {ins.opcode} has no implementation", kind="unsupported")
