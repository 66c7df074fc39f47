"""The block model against the figures Vela 5.2.0 printed, and its invariants over random shapes.

The Vela figures below are its OFM block and its estimate of the operation on its own
(``est_op_cycles_without_buffering`` in ``vela --enable-debug-db``) for single-layer int8 TFLite
models; ``benchmarks/vela_layers.py`` makes the models, reruns Vela and prints the comparison for
40 layers x 2 targets (all 80 blocks equal Vela's; cycles 1.00-1.13x).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu import targets
from pytest_npu.npu import blocks

# (target, kind, ifm, ofm, kernel, stride, Vela's cycles, Vela's OFM block) -- printed by Vela 5.2.0
VELA = [
    ("u55-256", "conv", (32, 32, 16), (32, 32, 16), (3, 3), (1, 1), 14038, (12, 16, 16)),
    ("u55-256", "conv", (49, 10, 1), (25, 5, 64), (10, 4), (2, 2), 14351, (14, 6, 32)),
    ("u55-256", "conv", (12, 12, 128), (12, 12, 128), (1, 1), (1, 1), 10624, (4, 12, 64)),
    ("u55-256", "conv", (96, 96, 3), (48, 48, 8), (3, 3), (2, 2), 9655, (16, 16, 8)),
    ("u55-256", "conv", (4, 4, 128), (4, 4, 256), (3, 3), (1, 1), 42352, (4, 4, 128)),
    ("u55-256", "depthwise", (24, 24, 32), (12, 12, 32), (3, 3), (2, 2), 4346, (8, 8, 32)),
    ("u55-256", "vector", (1, 1, 640), (1, 1, 128), (1, 1), (1, 1), 12980, (2, 2, 128)),
    ("u55-256", "pool", (32, 32, 16), (16, 16, 16), (2, 2), (2, 2), 2336, (4, 4, 16)),
    ("u55-128", "conv", (32, 32, 16), (32, 32, 16), (3, 3), (1, 1), 25715, (5, 16, 16)),
    ("u55-128", "conv", (12, 12, 128), (12, 12, 128), (1, 1), (1, 1), 19072, (3, 12, 48)),
    ("u55-128", "depthwise", (3, 3, 256), (3, 3, 256), (3, 3), (1, 1), 3766, (3, 4, 80)),
    ("u55-128", "pool", (25, 5, 64), (1, 1, 64), (25, 5), (1, 1), 5408, (1, 2, 64)),
]


def _timed(target, op):
    return blocks.op_cycles(target.blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, op,
                            sram_latency=target.sram_latency_cycles,
                            sram_bytes_per_cycle=target.sram_bytes_per_cycle,
                            sram_burst=target.sram_burst_bytes, weight_latency=target.dram_latency_cycles)


@pytest.mark.parametrize(("name", "kind", "ifm", "ofm", "kernel", "stride", "cycles", "block"), VELA)
def test_block_and_cycles_agree_with_vela(name, kind, ifm, ofm, kernel, stride, cycles, block):
    target = targets.load(name)
    max_pool = kind == "pool" and kernel == (2, 2)
    op = blocks.BlockOp(kind, ifm, ofm, kernel=kernel, stride=stride, relu=kind != "pool",
                        bias=kind != "pool", output="max_pool" if max_pool else "default",
                        ifm_linear=True, ofm_linear=True)
    timed = _timed(target, op)
    assert timed.config.ofm == block
    assert 1.0 <= timed.total / cycles <= 1.08


def test_add_runs_at_the_output_units_rate():
    """Vela: an int8 add of 32x32x16 takes 12288 cycles on U55-256 (0.75 cycles/element), 24576 on U55-128."""
    for name, expected in (("u55-256", 12288), ("u55-128", 24576)):
        target = targets.load(name)
        op = blocks.BlockOp("elementwise", (32, 32, 16), (32, 32, 16), ifm2=(32, 32, 16), output="add",
                            ifm_linear=True, ofm_linear=True)
        assert _timed(target, op).total == expected


CONV = st.fixed_dictionaries({
    "h": st.integers(1, 64), "w": st.integers(1, 64), "cin": st.integers(1, 300), "cout": st.integers(1, 300),
    "k": st.sampled_from([1, 3, 5]), "s": st.sampled_from([1, 2]), "bits": st.sampled_from([8, 16]),
    "kind": st.sampled_from(["conv", "depthwise", "pool"]), "target": st.sampled_from(["u55-128", "u55-256"])})


@settings(max_examples=60, deadline=None)
@given(CONV)
def test_chosen_block_fits_the_buffer_and_the_array_never_beats_its_peak(spec):
    target = targets.load(spec["target"])
    kind, k, s = spec["kind"], spec["k"], spec["s"]
    cin = spec["cout"] if kind in ("depthwise", "pool") else spec["cin"]
    ifm = (spec["h"], spec["w"], cin)
    ofm = (-(-spec["h"] // s), -(-spec["w"] // s), spec["cout"])
    op = blocks.BlockOp(kind, ifm, ofm, kernel=(k, k), stride=(s, s), ifm_bits=spec["bits"], bias=kind != "pool")
    cfg = blocks.block_config(target.blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, op)
    uh, uw = target.blocks.micro_block
    assert cfg.ofm[0] % uh == 0 and cfg.ofm[1] % uw == 0 and cfg.ofm[2] % target.mac.ofm_lanes == 0
    assert all(b <= m for b, m in zip(cfg.ofm, target.blocks.max_block))
    acc = {16: 0, 32: 1, 40: 2}[cfg.acc_bits]
    used = tuple(min(b, o) for b, o in zip(cfg.ofm, ofm))     # the part of the block the OFM fills
    assert blocks._fits(target.blocks, False, False, used, cfg.ifm, spec["bits"],
                        target.blocks.ifm_granules[{8: 0, 16: 1}[spec["bits"]]], cfg.acc_bits,
                        target.blocks.accumulator_granules[acc])
    timed = _timed(target, op)
    macs = ofm[0] * ofm[1] * ofm[2] * k * k * (cin if kind == "conv" else 1)
    if kind != "pool":
        assert timed.total >= math.ceil(macs / target.macs_per_cycle)
    assert timed.continuing() >= 0 and timed.total >= timed.startup


def test_sram_bytes_count_ifm_refetch_and_burst_waste():
    """A 1x1 conv reads its IFM once per OFM depth block and its weights once per OFM block
    position; an NHWC IFM of 3 channels moves whole 32-byte bursts for 8-byte runs, bricks do not."""
    target = targets.load("u55-256")
    op = blocks.BlockOp("conv", (8, 8, 64), (8, 8, 256), ifm_linear=False, ofm_linear=False)
    cfg = blocks.block_config(target.blocks, 8, 8, op)
    depth_blocks = -(-256 // cfg.ofm[2])
    positions = -(-8 // cfg.ofm[0]) * -(-8 // cfg.ofm[1])
    assert depth_blocks > 1
    assert blocks.sram_bytes(op, cfg, 1000, 32) == depth_blocks * 8 * 8 * 64 + 1000 * positions + 8 * 8 * 256
    rgb = blocks.BlockOp("conv", (32, 32, 3), (32, 32, 8), kernel=(3, 3), ifm_linear=True)
    cfg = blocks.block_config(target.blocks, 8, 8, rgb)
    fetch = min(32, cfg.ifm[0]) * min(32, cfg.ifm[1]) * 3 * -(-32 // cfg.ofm[0]) * -(-32 // cfg.ofm[1])
    ofm_bricks = 32 * 32 * 16                       # 8 channels stored as one 16-channel brick
    assert blocks.sram_bytes(rgb, cfg, 0, 32) == 4 * fetch + ofm_bricks


@pytest.mark.parametrize(("name", "classes", "vela"), [
    ("u55-256", 10, 887), ("u55-256", 100, 2091), ("u55-256", 1000, 15589),
    ("u55-128", 10, 985), ("u55-128", 100, 2275), ("u55-128", 1000, 16559)])
def test_softmax_costs_what_velas_softmax_graph_costs(name, classes, vela):
    """Vela 5.2.0 runs an int8 softmax over one row of ``classes`` values in ``vela`` cycles (the sum
    of its ~28 operations in its per-layer output); the block model composes the same steps, plus
    the exp table's load from flash."""
    t = targets.load(name)
    cycles = blocks.softmax_cycles(t.blocks, t.mac.ofm_lanes, t.mac.ifm_lanes, 1, classes,
                                   sram_latency=t.sram_latency_cycles, sram_bytes_per_cycle=t.sram_bytes_per_cycle,
                                   sram_burst=t.sram_burst_bytes, weight_latency=t.dram_latency_cycles,
                                   off_chip_bytes_per_cycle=t.dram_bytes_per_cycle)
    table = t.dram_latency_cycles + 256 / t.dram_bytes_per_cycle
    assert 0.9 <= (cycles + table) / vela <= 1.15
