"""The cycle and energy model: hand-computed cases of each formula, then properties over random
programs and targets (hypothesis): never below the roofline, monotone in resources, energy that
adds up, deterministic traces, and DMA channels that overlap but share the DRAM bus."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_npu import targets
from pytest_npu.npu import Emulator
from pytest_npu.npu.cost import burst_bytes, engines, instruction_cost
from pytest_npu.npu.isa import Conv2D, DepthwiseConv2D, DmaIn, FullyConnected, Operand, Requant
from pytest_npu.npu.program import ProgramBuilder

RQ = Requant((1 << 30,), (31,), 0, -128, 127)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sram(shape, dtype="int8", offset=0):
    return Operand("sram", offset, shape, dtype)


# ---------------------------------------------------------------------------------------------
# the formulas, on numbers worked out by hand
def test_conv_cycles_follow_the_lane_formula(lanes_u55):
    """Cout=20, Cin=10, 3x3 over a 5x5 ifm (valid) -> 3x3x20 on 8x8x4 lanes."""
    u55 = lanes_u55
    ins = Conv2D(_sram((5, 5, 10)), _sram((3, 3, 10, 20)), _sram((20,), "int32"), _sram((3, 3, 20)), requant=RQ)
    cost = instruction_cost(u55, ins)
    array = math.ceil(20 / 8) * math.ceil(10 / 8) * math.ceil(9 / 4) * 9            # 3 * 2 * 3 * 9 = 162
    sram = 5 * 5 * 10 + 3 * 3 * 10 * 20 + 20 * 4 + 3 * 3 * 20                      # 2310 bytes
    output = math.ceil(3 * 3 * 20 / u55.elementwise_width)
    assert cost.cycles == u55.overhead_cycles + max(array, math.ceil(sram / u55.sram_bytes_per_cycle), output)
    assert cost.macs == 3 * 3 * 20 * 9 * 10 and cost.sram_read == 2310 - 180 and cost.sram_write == 180


def test_depthwise_leaves_ifm_lanes_idle_and_int16_halves_the_rate(lanes_u55, make_target):
    u55 = lanes_u55
    fast_sram = make_target(u55, sram_bytes_per_cycle=1e6, overhead_cycles=0, elementwise_width=1 << 20)
    dw8 = DepthwiseConv2D(_sram((10, 10, 16)), _sram((3, 3, 16)), _sram((16,), "int32"), _sram((8, 8, 16)), requant=RQ)
    dw16 = DepthwiseConv2D(_sram((10, 10, 16), "int16"), _sram((3, 3, 16)), _sram((16,), "int32"),
                           _sram((8, 8, 16), "int16"), requant=RQ)
    assert instruction_cost(fast_sram, dw8).cycles == 2 * 16 * 9                   # ceil(16/8) * ceil(64/4) * 9
    assert instruction_cost(fast_sram, dw16).cycles == math.ceil(2 * 16 * 9 / u55.int16_factor)
    assert instruction_cost(fast_sram, dw16).int16
    e8, e16 = instruction_cost(u55, dw8).energy_pj(u55), instruction_cost(u55, dw16).energy_pj(u55)
    assert e16["mac"] / e8["mac"] == pytest.approx(u55.energy.mac_int16_pj / u55.energy.mac_int8_pj)


def test_fully_connected_uses_rows_as_pixels(lanes_u55, make_target):
    u55 = lanes_u55
    fast_sram = make_target(u55, sram_bytes_per_cycle=1e6, overhead_cycles=0)
    fc = FullyConnected(_sram((3, 100)), _sram((100, 10)), _sram((10,), "int32"), _sram((3, 10)), requant=RQ)
    assert instruction_cost(fast_sram, fc).cycles == math.ceil(10 / 8) * math.ceil(100 / 8) * math.ceil(3 / 4)
    assert instruction_cost(fast_sram, fc).macs == 3000


def test_strided_dma_pays_whole_bursts_per_contiguous_run(u55):
    rows = Operand("dram", 0, (4, 10), "int8", strides=(100, 1))                    # 4 runs of 10 bytes
    assert burst_bytes(rows, 32) == 4 * 32
    dense = Operand("dram", 0, (4, 10), "int8")                                     # one run of 40 bytes
    assert burst_bytes(dense, 32) == 64
    channel_slice = Operand("dram", 0, (2, 3, 4), "int16", strides=(96, 32, 2))    # runs of 8 bytes
    assert burst_bytes(channel_slice, 16) == 6 * 16
    cost = instruction_cost(u55, DmaIn(rows, _sram((4, 10))))
    assert cost.latency == u55.dram_latency_cycles
    assert cost.cycles == math.ceil(4 * u55.dram_burst_bytes / u55.dram_bytes_per_cycle)
    assert cost.dram_read == 40 and cost.sram_write == 40


def test_summary_energy_and_roofline_by_hand(u55, conv_program):
    program, inputs = conv_program(u55, [dict(h=8, w=8, cin=8, cout=16, k=3, stride=1)])
    run = Emulator(u55).run(program, inputs)
    s, trace = run.summary, run.trace
    assert s.cycles == max(r.end for r in trace)
    assert s.latency_ms == pytest.approx(s.cycles / (u55.clock_mhz * 1e3))
    assert s.energy_breakdown_mj["static"] == pytest.approx(u55.energy.static_mw * s.latency_ms * 1e-3)
    assert s.macs == 8 * 8 * 16 * 9 * 8
    dram = 8 * 8 * 8 + 3 * 3 * 8 * 16 + 16 * 4 + 8 * 8 * 16
    assert s.dram_read_bytes + s.dram_write_bytes == dram
    assert s.roofline_cycles == max(math.ceil(s.macs / u55.macs_per_cycle), math.ceil(dram / u55.dram_bytes_per_cycle))
    assert s.efficiency == pytest.approx(s.roofline_cycles / s.cycles)
    assert set(s.utilisation) == set(engines(u55))
    assert s.sram_peak_bytes == max(i.ofm.extent()[1] for i in program.instructions if isinstance(i, Conv2D))


# ---------------------------------------------------------------------------------------------
# properties over random programs and targets
LAYER = st.fixed_dictionaries({
    "h": st.integers(1, 12), "w": st.integers(1, 12), "cin": st.integers(1, 40), "cout": st.integers(1, 40),
    "k": st.sampled_from([1, 3]), "stride": st.integers(1, 2)})
TARGET = st.fixed_dictionaries({
    "base": st.sampled_from(["u55-128", "u55-256", "u65-512", "edge-3core"]),
    "ofm_lanes": st.sampled_from([4, 8, 16]), "ifm_lanes": st.sampled_from([4, 8, 16]),
    "pixel_lanes": st.sampled_from([1, 2, 4]), "dram_bytes_per_cycle": st.sampled_from([0.5, 1.0, 3.75, 16.0]),
    "dram_latency_cycles": st.integers(0, 500), "dram_burst_bytes": st.sampled_from([16, 64, 128]),
    "dma_channels": st.integers(1, 3), "cores": st.integers(1, 3), "overhead_cycles": st.integers(0, 64)})


def _target(retarget, spec):
    spec = dict(spec)
    return retarget(targets.load(spec.pop("base")), **spec)


def _timing(target, program):
    return Emulator(target).timing(program)


@PROPERTY
@given(TARGET, st.lists(LAYER, min_size=1, max_size=4))
def test_cycles_never_beat_the_roofline(make_target, conv_program, spec, layers):
    target = _target(make_target, spec)
    program, _ = conv_program(target, layers)
    s = _timing(target, program).summary
    assert s.cycles >= s.roofline_cycles > 0
    assert 0 < s.efficiency <= 1


@PROPERTY
@given(TARGET, st.lists(LAYER, min_size=1, max_size=4), st.sampled_from(["ofm_lanes", "ifm_lanes", "pixel_lanes"]))
def test_more_mac_lanes_is_never_slower(make_target, conv_program, spec, layers, lane):
    target = _target(make_target, spec)
    wider = make_target(target, **{lane: getattr(target.mac, lane) * 2})
    program, _ = conv_program(target, layers)
    assert _timing(wider, program).summary.cycles <= _timing(target, program).summary.cycles


@PROPERTY
@given(TARGET, st.lists(LAYER, min_size=1, max_size=4), st.sampled_from([1.5, 2.0, 8.0]))
def test_more_dram_bandwidth_is_never_slower(make_target, conv_program, spec, layers, factor):
    target = _target(make_target, spec)
    faster = make_target(target, dram_bytes_per_cycle=target.dram_bytes_per_cycle * factor)
    program, _ = conv_program(target, layers)
    assert _timing(faster, program).summary.cycles <= _timing(target, program).summary.cycles


@PROPERTY
@given(TARGET, st.lists(LAYER, min_size=1, max_size=3))
def test_energy_is_the_sum_of_its_parts(make_target, conv_program, spec, layers):
    target = _target(make_target, spec)
    program, _ = conv_program(target, layers)
    timing = _timing(target, program)
    s = timing.summary
    total = 0.0
    for value in s.energy_breakdown_mj.values():
        total += value
    assert total == s.energy_mj
    assert set(s.energy_breakdown_mj) == {"mac", "sram", "dram", "elementwise", "lut", "host", "static"}
    dynamic = math.fsum(r.energy_pj for r in timing.trace) * 1e-9
    assert math.isclose(dynamic, s.energy_mj - s.energy_breakdown_mj["static"], rel_tol=1e-9)
    e = target.energy
    assert math.isclose(s.energy_breakdown_mj["mac"], s.macs * e.mac_int8_pj * 1e-9, rel_tol=1e-9)
    dram = sum(r.dram_read + r.dram_write for r in timing.trace)
    assert math.isclose(s.energy_breakdown_mj["dram"], dram * e.dram_pj_per_byte * 1e-9, rel_tol=1e-9)


@settings(max_examples=25, deadline=None)
@given(TARGET, st.lists(LAYER, min_size=1, max_size=3), st.integers(0, 2**16))
def test_same_program_gives_an_identical_trace_twice(make_target, conv_program, spec, layers, seed):
    target = _target(make_target, spec)
    program, inputs = conv_program(target, layers, seed=seed)
    first, second = Emulator(target).run(program, inputs), Emulator(target).run(program, inputs)
    assert first.trace == second.trace and first.summary == second.summary
    for name in program.outputs:
        np.testing.assert_array_equal(first.outputs[name], second.outputs[name])


def _two_loads(target, rows):
    b = ProgramBuilder(target.name)
    for n in range(2):
        src = b.input(f"x{n}", (rows, 256))
        b.emit(DmaIn(src, b.sram(f"x{n}.s", (rows, 256)), channel=n % target.dma_channels))
    return b.build()


@PROPERTY
@given(st.integers(1, 64), st.integers(1, 2000), st.sampled_from([1.0, 3.75, 16.0]))
def test_two_dma_channels_overlap_yet_share_the_dram_bus(make_target, rows, latency, bandwidth):
    base = make_target(targets.load("u65-512"), dram_latency_cycles=latency, dram_bytes_per_cycle=bandwidth)
    one, two = make_target(base, dma_channels=1), make_target(base, dma_channels=2)
    t1, t2 = _timing(one, _two_loads(one, rows)), _timing(two, _two_loads(two, rows))
    data = math.ceil(rows * 256 / bandwidth)               # one load's bus cycles (rows are whole bursts)
    assert t1.summary.cycles == 2 * (latency + data)        # one channel: everything in series
    assert t2.summary.cycles == latency + 2 * data          # latencies overlap, data phases do not
    assert t2.summary.cycles < t1.summary.cycles
    (a0, a1), (b0, b1) = t2.bus_windows
    assert a1 <= b0 or b1 <= a0                             # the bus serves one channel at a time
    assert t2.summary.utilisation["dram_bus"] == pytest.approx(2 * data / t2.summary.cycles)


@PROPERTY
@given(TARGET, st.lists(LAYER, min_size=1, max_size=4))
def test_every_cycle_is_charged_to_exactly_one_instruction(make_target, conv_program, spec, layers):
    """Per-instruction charges add up to the makespan; an instruction is never charged more than
    from its start (or its predecessor's end) to its end, and compute that runs is never hidden."""
    target = _target(make_target, spec)
    program, _ = conv_program(target, layers)
    timing = _timing(target, program)
    assert sum(r.charged for r in timing.trace) == timing.summary.cycles
    assert all(0 <= r.charged <= r.end for r in timing.trace)
    first_compute = min((r for r in timing.trace if not r.engine.startswith("dma")), key=lambda r: r.start)
    assert first_compute.charged > 0
