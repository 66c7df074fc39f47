"""Shared fixtures for the emulator, cost-model, program and host tests."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pytest_npu import targets
from pytest_npu.npu.isa import Conv2D, DmaIn, DmaOut
from pytest_npu.npu.program import ProgramBuilder
from pytest_npu.npu.requant import requant_for


@pytest.fixture(scope="session")
def u55():
    return targets.load("u55-256")


@pytest.fixture(scope="session")
def edge():
    return targets.load("edge-3core")


def retarget(target, **changes):
    """A copy of ``target`` with fields changed; lane counts go into the nested MacArray. New lane
    counts time the array by the lane formula: a block-model target's micro-block is its lanes."""
    lanes = {k: changes.pop(k) for k in ("ofm_lanes", "ifm_lanes", "pixel_lanes") if k in changes}
    if lanes:
        changes["mac"] = dataclasses.replace(target.mac, **lanes)
        changes.setdefault("blocks", None)
    return dataclasses.replace(target, **changes)


@pytest.fixture(scope="session")
def lanes_u55(u55):
    """u55-256 timed by the lane formula (no [blocks] table)."""
    return dataclasses.replace(u55, blocks=None, overhead_cycles=32)


@pytest.fixture(scope="session")
def make_target():
    return retarget


def conv_layers_program(target, layers, *, seed=0, name="conv"):
    """Independent conv layers, each: DMA ifm/weights/bias in, CONV2D, DMA out.

    ``layers`` is a list of dicts with h, w, cin, cout, k, stride; layers go round-robin over the
    target's DMA channels and cores, so the schedule has real overlap. Returns (program, inputs).
    """
    rng = np.random.default_rng(seed)
    b = ProgramBuilder(target.name, target.content_hash())
    inputs = {}
    for n, spec in enumerate(layers):
        h, w, cin, cout, k, s = (spec[key] for key in ("h", "w", "cin", "cout", "k", "stride"))
        pad = k // 2
        oh, ow = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        x = b.input(f"{name}{n}.x", (h, w, cin))
        y = b.output(f"{name}{n}.y", (oh, ow, cout))
        wt = b.constant(f"{name}{n}.w", rng.integers(-127, 128, size=(k, k, cin, cout), dtype=np.int8))
        bias = b.constant(f"{name}{n}.b", rng.integers(-1000, 1000, size=cout, dtype=np.int32))
        sx, sw, sb = (b.sram(f"{name}{n}.{t}.sram", op.shape, op.dtype) for t, op in (("x", x), ("w", wt), ("b", bias)))
        sy = b.sram(f"{name}{n}.y.sram", (oh, ow, cout))
        ch = n % target.dma_channels
        deps = tuple(b.emit(DmaIn(src, dst, channel=ch, layer=f"{name}{n}")) for src, dst in ((x, sx), (wt, sw), (bias, sb)))
        rq = requant_for(np.full(cout, 1e-4), 0.05, 3, "int8")
        conv = b.emit(Conv2D(sx, sw, sb, sy, stride=(s, s), padding=(pad,) * 4, ifm_zp=-2, requant=rq,
                             core=n % target.cores, deps=deps, layer=f"{name}{n}"))
        b.emit(DmaOut(sy, y, channel=ch, deps=(conv,), layer=f"{name}{n}"))
        inputs[f"{name}{n}.x"] = rng.integers(-128, 128, size=(2, h, w, cin), dtype=np.int8)
    return b.build(), inputs


@pytest.fixture(scope="session")
def conv_program():
    return conv_layers_program
