"""The emulator's per-program memory plan keeps the memory semantics while skipping work.

It zeroes only the bytes a program reads before writing them, loads the constants once unless
the program writes over them, and copies sample 0 only for DMAs whose bytes are read solely as
weights/bias. Each test builds a program where a wrong plan gives a different answer, and runs
it twice on one emulator (cached buffers) with a batch > 1.
"""

from __future__ import annotations

import numpy as np

from pytest_npu.npu import Emulator, kernels
from pytest_npu.npu.isa import DmaIn, DmaOut, FullyConnected, Operand
from pytest_npu.npu.program import ProgramBuilder
from pytest_npu.npu.requant import requant_for


def test_bytes_read_before_any_write_read_as_zero_on_every_run(u55):
    """A DMA fills the middle rows of an SRAM block; the block goes out whole, so its border rows
    are memory nobody wrote yet: zeros, even though the end of the previous run wrote the input
    over the block's first rows (same cached buffers)."""
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, y, again = b.input("x", (4, 8)), b.output("y", (6, 8)), b.output("again", (4, 8))
    block = b.sram("block", (6, 8))
    middle = Operand("sram", block.offset + 8, (4, 8), "int8", name="block.middle")
    top = Operand("sram", block.offset, (4, 8), "int8", name="block.top")
    first = b.emit(DmaIn(x, middle))
    out = b.emit(DmaOut(block, y, deps=(first,)))
    reload = b.emit(DmaIn(x, top, deps=(out,)))
    b.emit(DmaOut(top, again, deps=(reload,)))
    program = b.build()
    emulator = Emulator(u55)
    rng = np.random.default_rng(0)
    for _ in range(2):
        xs = rng.integers(-128, 128, size=(3, 4, 8), dtype=np.int8)
        out = emulator.run(program, {"x": xs}).outputs["y"]
        np.testing.assert_array_equal(out[:, 1:5], xs)
        assert not out[:, [0, 5]].any()
        np.testing.assert_array_equal(emulator.run(program, {"x": xs}).outputs["again"], xs)


def test_constant_read_as_weights_and_as_data_reaches_every_sample(u55):
    """The same SRAM weights feed a FULLY_CONNECTED and then leave through a DMA: the DMA-in must
    copy every sample, or samples 1.. would output stale bytes."""
    rng = np.random.default_rng(1)
    weights = rng.integers(-128, 128, size=(16, 8), dtype=np.int8)
    bias = rng.integers(-500, 500, size=8).astype(np.int32)
    requant = requant_for(np.full(8, 1 / 300), 1.0, 3, "int8")
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, y, w_out = b.input("x", (2, 16)), b.output("y", (2, 8)), b.output("w_copy", (16, 8))
    w_dram, b_dram = b.constant("w", weights), b.constant("b", bias)
    xs_s, w_s, b_s, y_s = b.sram("x.s", (2, 16)), b.sram("w.s", (16, 8)), b.sram("b.s", (8,), "int32"), \
        b.sram("y.s", (2, 8))
    d = [b.emit(DmaIn(x, xs_s)), b.emit(DmaIn(w_dram, w_s)), b.emit(DmaIn(b_dram, b_s))]
    fc = b.emit(FullyConnected(xs_s, w_s, b_s, y_s, ifm_zp=-2, requant=requant, deps=tuple(d)))
    b.emit(DmaOut(y_s, y, deps=(fc,)))
    b.emit(DmaOut(w_s, w_out, deps=(d[1],)))
    program = b.build()
    emulator = Emulator(u55)
    for seed in (2, 3):
        xs = np.random.default_rng(seed).integers(-128, 128, size=(4, 2, 16), dtype=np.int8)
        run = emulator.run(program, {"x": xs})
        np.testing.assert_array_equal(run.outputs["w_copy"], np.broadcast_to(weights, (4, 16, 8)))
        acc = kernels.fully_connected(xs, weights, bias, ifm_zp=-2)
        want = kernels.rescale(acc, np.array(requant.multiplier), np.array(requant.shift), ofm_zp=requant.ofm_zp,
                               lo=requant.lo, hi=requant.hi, rounding=u55.rounding)
        np.testing.assert_array_equal(run.outputs["y"], want)


def test_a_program_writing_over_its_constants_sees_them_fresh_each_run(u55):
    """The input is stored over the constants image after the constant was loaded: the next run
    must start from the original constants again."""
    constant = np.arange(-8, 8, dtype=np.int8).reshape(2, 8)
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, y = b.input("x", (2, 8)), b.output("y", (2, 8))
    c_dram = b.constant("c", constant)
    c_s, x_s = b.sram("c.s", (2, 8)), b.sram("x.s", (2, 8))
    load_c = b.emit(DmaIn(c_dram, c_s))
    load_x = b.emit(DmaIn(x, x_s))
    store = b.emit(DmaOut(x_s, c_dram, deps=(load_x, load_c)))
    b.emit(DmaOut(c_s, y, deps=(load_c, store)))
    program = b.build()
    emulator = Emulator(u55)
    for value in (5, -7):
        run = emulator.run(program, {"x": np.full((3, 2, 8), value, np.int8)})
        np.testing.assert_array_equal(run.outputs["y"], np.broadcast_to(constant, (3, 2, 8)))


def test_weights_loaded_from_an_input_are_read_afresh_each_run(u55):
    """Only weights that are constants-image bytes are converted once; weights a run brings in
    (here: an input DMA'd over the constant weights' SRAM) must be the new values every run."""
    rng = np.random.default_rng(4)
    constant_w = rng.integers(-128, 128, size=(16, 8), dtype=np.int8)
    bias = np.zeros(8, np.int32)
    requant = requant_for(np.full(8, 1 / 300), 1.0, 0, "int8")
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, wx = b.input("x", (2, 16)), b.input("wx", (16, 8))
    y_const, y_input = b.output("y_const", (2, 8)), b.output("y_input", (2, 8))
    w_dram, b_dram = b.constant("w", constant_w), b.constant("b", bias)
    xs_s, w_s, b_s = b.sram("x.s", (2, 16)), b.sram("w.s", (16, 8)), b.sram("b.s", (8,), "int32")
    y1, y2 = b.sram("y1.s", (2, 8)), b.sram("y2.s", (2, 8))
    d = [b.emit(DmaIn(x, xs_s)), b.emit(DmaIn(w_dram, w_s)), b.emit(DmaIn(b_dram, b_s))]
    fc1 = b.emit(FullyConnected(xs_s, w_s, b_s, y1, requant=requant, deps=tuple(d)))
    reload = b.emit(DmaIn(wx, w_s, deps=(fc1,)))
    fc2 = b.emit(FullyConnected(xs_s, w_s, b_s, y2, requant=requant, deps=(reload, *d)))
    b.emit(DmaOut(y1, y_const, deps=(fc1,)))
    b.emit(DmaOut(y2, y_input, deps=(fc2,)))
    program = b.build()
    emulator = Emulator(u55)
    assert emulator.plan(program).memory.fixed_weights == frozenset({fc1})
    for seed in (5, 6):
        data = np.random.default_rng(seed)
        xs = data.integers(-128, 128, size=(3, 2, 16), dtype=np.int8)
        ws = data.integers(-128, 128, size=(3, 16, 8), dtype=np.int8)
        run = emulator.run(program, {"x": xs, "wx": ws})
        for name, weights in (("y_const", constant_w), ("y_input", ws[0])):   # weights: sample 0's
            acc = kernels.fully_connected(xs, weights, bias)
            want = kernels.rescale(acc, np.array(requant.multiplier), np.array(requant.shift),
                                   ofm_zp=requant.ofm_zp, lo=requant.lo, hi=requant.hi, rounding=u55.rounding)
            np.testing.assert_array_equal(run.outputs[name], want)
