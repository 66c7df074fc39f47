"""One test per fault kind: the emulator refuses, and the message names the instruction index,
its opcode and the operand at fault (so a compiler bug is found at the instruction, not later)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conv_program import build_conv_program, make_conv_net
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import EmulatorFault
from pytest_npu.npu import Emulator
from pytest_npu.npu.cost import operands_overlap
from pytest_npu.npu.isa import (
    Conv2D,
    DmaIn,
    DmaOut,
    Elementwise,
    FullyConnected,
    HostOp,
    Lut,
    MatMul,
    Operand,
    Rescale,
)
from pytest_npu.npu.program import ProgramBuilder
from pytest_npu.npu.requant import requant_for


def _fault(target, program, inputs=None):
    inputs = inputs if inputs is not None else {
        name: np.zeros((1, *program.tensors[name].shape), program.tensors[name].dtype) for name in program.inputs}
    with pytest.raises(EmulatorFault) as info:
        Emulator(target).run(program, inputs)
    return info.value


def _assert_names(fault, index, opcode, operand, kind):
    assert fault.kind == kind, fault
    assert fault.index == index and fault.operand == operand, fault
    text = str(fault)
    assert re.search(rf"instruction {index} {opcode}\b", text), text
    assert f"'{operand}'" in text, text


def _copy_program(target, *, src=None, dst=None, deps=()):
    b = ProgramBuilder(target.name, target.content_hash())
    x = b.input("x", (4, 16))
    y = b.output("y", (4, 16))
    s = b.sram("x.s", (4, 16))
    b.emit(DmaIn(src or x, dst or s, layer="copy"))
    b.emit(DmaOut(s, y, deps=deps or (0,), layer="copy"))
    return b.build()


def test_bounds_dram_operand_outside_dram(u55):
    beyond = Operand("dram", u55.dram_bytes - 32, (4, 16), "int8", name="x.beyond")
    fault = _fault(u55, _copy_program(u55, src=beyond))
    _assert_names(fault, 0, "DMA_IN", "src", "bounds")
    assert "outside DRAM" in str(fault)


def test_bounds_negative_strides_reaching_below_zero(u55):
    backwards = Operand("sram", 8, (4, 16), "int8", strides=(-16, 1), name="x.s.rev")
    fault = _fault(u55, _copy_program(u55, dst=backwards))
    _assert_names(fault, 0, "DMA_IN", "dst", "bounds")


def test_sram_overflow_on_a_smaller_target(u55, make_target):
    program = build_conv_program(u55, make_conv_net(size=16))
    small = make_target(u55, sram_bytes=16 * 1024)
    fault = _fault(small, program)
    assert fault.kind == "sram_overflow"
    assert f"instruction {fault.index} " in str(fault) and f"'{fault.operand}'" in str(fault)
    assert "16384 bytes" in str(fault) and f"needs {program.memory_needed('sram')} bytes" in str(fault)


def test_unsupported_operation_not_in_the_instruction_set(u55):
    assert not u55.supports("matmul")
    b = ProgramBuilder(u55.name)
    a, c = b.sram("a", (4, 8)), b.sram("b", (8, 4))
    out = b.sram("out", (4, 4))
    b.emit(MatMul(a, c, out, requant=requant_for(0.01, 1.0, 0, "int8"), layer="attn"))
    fault = _fault(u55, b.build(), {})
    assert fault.kind == "unsupported" and fault.index == 0
    assert "instruction 0 MATMUL (layer attn)" in str(fault) and "'matmul'" in str(fault)


def test_unsupported_dtype(u55, make_target):
    int8_only = make_target(u55, dtypes=frozenset({"int8"}))
    b = ProgramBuilder(u55.name)
    x, y = b.sram("x", (16,), "int16"), b.sram("y", (16,), "int8")
    b.emit(Rescale(x, y, requant=requant_for(0.5, 1.0, 0, "int8"), layer="narrow"))
    fault = _fault(int8_only, b.build(), {})
    _assert_names(fault, 0, "RESCALE", "ifm", "unsupported")
    assert "int16 activations" in str(fault)


def test_unsupported_host_op_when_fallback_is_error(u55, make_target):
    strict = make_target(u55, fallback="error")
    b = ProgramBuilder(u55.name)
    x, y = b.input("x", (10,)), b.output("y", (10,))
    q = {"scale": [0.1], "zero_point": [0], "dtype": "int8", "axis": None}
    b.emit(HostOp("softmax", (x,), (y,), attrs={"in_quant": [q], "out_quant": [q]}, layer="sm"))
    fault = _fault(strict, b.build())
    assert fault.kind == "unsupported" and fault.index == 0 and "fallback='error'" in str(fault)


def test_unsupported_host_op_name(u55):
    b = ProgramBuilder(u55.name)
    x, y = b.input("x", (10,)), b.output("y", (10,))
    b.emit(HostOp("fft", (x,), (y,), attrs={}, layer="spectrum"))
    fault = _fault(u55, b.build())
    _assert_names(fault, 0, "HOST", "op", "unsupported")
    assert "host op 'fft'" in str(fault)


def test_hazard_two_dma_channels_write_the_same_bytes(edge):
    b = ProgramBuilder(edge.name, edge.content_hash())
    x1, x2 = b.input("x1", (64, 64)), b.input("x2", (64, 64))
    y = b.output("y", (64, 64))
    s = b.sram("shared", (64, 64))
    b.emit(DmaIn(x1, s, channel=0, layer="a"))
    b.emit(DmaIn(x2, s, channel=1, layer="b"))          # no dep on 0: both write `shared` at once
    b.emit(DmaOut(s, y, channel=2, deps=(0, 1)))
    fault = _fault(edge, b.build())
    _assert_names(fault, 1, "DMA_IN", "dst", "hazard")
    assert "instruction 0 DMA_IN operand 'dst'" in str(fault) and "add 0 to the deps" in str(fault)


def test_hazard_a_later_write_the_schedule_runs_before_an_earlier_read(edge):
    """A WAR bug the overlap sweep alone would miss: instruction 2 overwrites what instruction 1
    reads, without a dep, and the schedule runs 2 entirely before 1 (core1 is free while core0 is
    still busy with 0). Executed in program order the results would look right; the hardware's
    would not."""
    b = ProgramBuilder(edge.name)
    big_in, big_out = b.sram("big.in", (256, 256)), b.sram("big.out", (256, 256))
    a, c, out = b.sram("a", (16,)), b.sram("c", (16,)), b.sram("out", (16,))
    rq = requant_for(1 / (1 << 20), 1.0, 0, "int8")
    b.emit(Lut(big_in, big_out, table=tuple(range(-128, 128)), layer="slow"))
    b.emit(Elementwise(a, a, out, op="max", requant=rq, deps=(0,), layer="reader"))
    b.emit(Elementwise(c, c, a, op="max", requant=rq, core=1, layer="writer"))
    fault = _fault(edge, b.build(), {})
    _assert_names(fault, 2, "ELEMENTWISE", "ofm", "hazard")
    assert "reverse of program order" in str(fault) and "add 1 to the deps of instruction 2" in str(fault)


def test_no_hazard_once_the_dependency_is_declared(edge):
    b = ProgramBuilder(edge.name, edge.content_hash())
    x1, x2 = b.input("x1", (64, 64)), b.input("x2", (64, 64))
    y = b.output("y", (64, 64))
    s = b.sram("shared", (64, 64))
    b.emit(DmaIn(x1, s, channel=0))
    b.emit(DmaIn(x2, s, channel=1, deps=(0,)))
    b.emit(DmaOut(s, y, channel=2, deps=(1,)))
    x2_data = np.full((1, 64, 64), 7, np.int8)
    run = Emulator(edge).run(b.build(), {"x1": np.zeros((1, 64, 64), np.int8), "x2": x2_data})
    np.testing.assert_array_equal(run.outputs["y"], x2_data)


def test_interleaved_channel_slices_written_in_parallel_are_not_a_hazard(edge):
    """Cores writing disjoint channel slices of one tensor overlap in extent, not in bytes."""
    program = build_conv_program(edge, make_conv_net(size=8, cmid=12))
    conv = [i for i, ins in enumerate(program.instructions) if isinstance(ins, Conv2D)]
    assert len(conv) == 3
    run = Emulator(edge).run(program, {"x": np.zeros((1, 8, 8, 16), np.int8)})
    rows = [run.trace[i] for i in conv]
    assert max(r.start for r in rows) < min(r.end for r in rows)      # really concurrent


def test_dependency_pointing_forward(u55):
    fault = _fault(u55, _copy_program(u55, deps=(5,)))
    _assert_names(fault, 1, "DMA_OUT", "deps", "dependency")
    assert "dependency 5" in str(fault)


def test_shape_inconsistent_with_the_instruction(u55):
    b = ProgramBuilder(u55.name)
    x, w, bias = b.sram("x", (6, 6, 4)), b.sram("w", (3, 3, 4, 8)), b.sram("b", (8,), "int32")
    wrong = b.sram("y", (6, 6, 8))          # valid padding gives 4x4, not 6x6
    b.emit(Conv2D(x, w, bias, wrong, requant=requant_for(np.full(8, 0.01), 1.0, 0, "int8"), layer="conv1"))
    fault = _fault(u55, b.build(), {})
    _assert_names(fault, 0, "CONV2D", "ofm", "shape")
    assert "ofm must be [4, 4, 8]" in str(fault)


def test_shape_dma_with_different_shapes(u55):
    fault = _fault(u55, _copy_program(u55, dst=Operand("sram", 0, (2, 32), "int8", name="flat")))
    _assert_names(fault, 0, "DMA_IN", "dst", "shape")


def test_kernel_fault_gains_the_instruction_index(u55):
    """A fault raised inside a kernel (an accumulator too wide for a 32-bit multiplier) is
    re-raised naming the instruction, its layer and kind."""
    b = ProgramBuilder(u55.name)
    x, y = b.input("x", (1, 2048), "int16"), b.output("y", (1, 4))
    w = b.constant("w", np.full((2048, 4), -128, np.int8))
    bias = b.constant("b", np.zeros(4, np.int32))
    sx, sw, sb, sy = (b.sram(n, o.shape, o.dtype) for n, o in (("x.s", x), ("w.s", w), ("b.s", bias), ("y.s", y)))
    loads = tuple(b.emit(DmaIn(s, d)) for s, d in ((x, sx), (w, sw), (bias, sb)))
    fc = b.emit(FullyConnected(sx, sw, sb, sy, requant=requant_for(np.full(4, 0.9), 1.0, 0, "int8"),
                               deps=loads, layer="fc"))
    b.emit(DmaOut(sy, y, deps=(fc,)))
    fault = _fault(u55, b.build(), {"x": np.full((1, 1, 2048), -32768, np.int16)})
    assert fault.index == 3 and "instruction 3 FULLY_CONNECTED (layer fc)" in str(fault), fault


def _bytes_of(op):
    addr = {op.offset}
    for size, stride in zip(op.shape, op.byte_strides()):
        addr = {a + i * stride for a in addr for i in range(size)}
    return {a + k for a in addr for k in range(op.itemsize)}


VIEW = st.builds(
    lambda shape, strides, offset, dtype: Operand("sram", offset, tuple(shape), dtype,
                                                  tuple(s * (2 if dtype == "int16" else 1) for s in strides[:len(shape)])),
    st.lists(st.integers(1, 5), min_size=1, max_size=3), st.lists(st.integers(-12, 24), min_size=3, max_size=3),
    st.integers(60, 120), st.sampled_from(["int8", "int16"]))


@settings(max_examples=60, deadline=None)
@given(VIEW, VIEW)
def test_hazard_overlap_test_is_exact(a, b):
    """The run-based overlap test agrees with brute-force byte sets (strided, negative, aliasing)."""
    assert operands_overlap(a, b) == bool(_bytes_of(a) & _bytes_of(b))
