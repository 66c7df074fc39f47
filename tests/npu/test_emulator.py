"""The emulator end to end: hand-built programs give exactly what the kernels give when composed
directly, on every built-in target, for a batch and sample by sample; and the demo network
matches onnxruntime running the equivalent QDQ model."""

from __future__ import annotations

import numpy as np
import pytest
from conv_program import build_conv_program, conv_qdq_model, make_conv_net
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu import targets
from pytest_npu.errors import EmulatorFault
from pytest_npu.npu import Emulator, kernels
from pytest_npu.npu import host as npu_host
from pytest_npu.npu.isa import (
    Conv2D,
    DmaIn,
    DmaOut,
    Elementwise,
    HostOp,
    Lut,
    MatMul,
    Operand,
    Pool,
    Rescale,
    Resize,
)
from pytest_npu.npu.program import ProgramBuilder
from pytest_npu.npu.requant import requant_for


@pytest.fixture(scope="module")
def small_net():
    return make_conv_net(size=8, cin=8, cmid=12, classes=5, seed=3)


def _demo_by_kernels(net, x, rounding):
    """The demo network composed from the kernels, with no emulator in between."""
    def rq(acc, r):
        return kernels.rescale(acc, np.array(r.multiplier), np.array(r.shift), ofm_zp=r.ofm_zp, lo=r.lo,
                               hi=r.hi, rounding=rounding, out_dtype="int8")

    rq1 = requant_for(net.x_scale * net.w1_scale, net.y1_scale, net.y1_zp, "int8", clamp=(net.y1_zp, 127))
    rq2 = requant_for(net.y1_scale * net.w2_scale, net.y2_scale, net.y2_zp, "int8", clamp=(net.y2_zp, 127))
    rq3 = requant_for(net.y2_scale * net.w3_scale, net.y3_scale, net.y3_zp, "int8")
    y1 = rq(kernels.conv2d(x, net.w1, net.b1, padding=(1, 1, 1, 1), ifm_zp=net.x_zp), rq1)
    y2 = rq(kernels.depthwise_conv2d(y1, net.w2, net.b2, padding=(1, 1, 1, 1), ifm_zp=net.y1_zp), rq2)
    y3 = kernels.pool(y2, kind="max", kernel=(2, 2), stride=(2, 2)).astype(np.int8)
    flat = y3.reshape(len(x), 1, -1)
    return rq(kernels.fully_connected(flat, net.w3, net.b3, ifm_zp=net.y2_zp), rq3)


@pytest.mark.parametrize("name", targets.available())
def test_demo_program_equals_kernels_composed_directly(name, small_net):
    target = targets.load(name)
    program = build_conv_program(target, small_net)
    x = small_net.random_input(5, seed=7)
    got = Emulator(target).run(program, {"x": x}).outputs["logits"]
    np.testing.assert_array_equal(got, _demo_by_kernels(small_net, x, target.rounding))


def test_batch_equals_samples_run_one_by_one(edge, small_net):
    program = build_conv_program(edge, small_net)
    emulator = Emulator(edge)
    x = small_net.random_input(4, seed=11)
    batch = emulator.run(program, {"x": x}).outputs["logits"]
    singles = np.concatenate([emulator.run(program, {"x": x[i:i + 1]}).outputs["logits"] for i in range(4)])
    np.testing.assert_array_equal(batch, singles)


@pytest.mark.parametrize("name", ["u55-256", "edge-3core"])
def test_demo_matches_onnxruntime_qdq_model(name, small_net):
    ort = pytest.importorskip("onnxruntime")
    target = targets.load(name)
    x = small_net.random_input(16, seed=5)
    got = Emulator(target).run(build_conv_program(target, small_net), {"x": x}).outputs["logits"][:, 0]
    session = ort.InferenceSession(conv_qdq_model(small_net).SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    diff = np.abs(got.astype(int) - want.astype(int))
    # onnxruntime requantises in float32 with round-half-even; an exact integer NPU may differ by 1 LSB.
    assert diff.max() <= 1, diff
    assert (diff == 0).mean() >= 0.75
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9


def _every_opcode_program(target, rng):
    """DMA (incl. a transposing strided store), ELEMENTWISE (broadcast), LUT, RESCALE to int16 and
    back, avg POOL, RESIZE, MATMUL, and the parameters needed to recompute it by hand."""
    b = ProgramBuilder(target.name, target.content_hash())
    a_in, b_in = b.input("a", (8, 8, 16)), b.input("b", (8, 8, 16))
    out_t = b.output("mm_t", (16, 64))
    out_r = b.output("resized", (8, 8, 16))
    gain = b.constant("gain", rng.integers(-128, 128, size=16, dtype=np.int8))
    table = tuple(int(v) for v in rng.integers(-128, 128, size=256))
    sa, sb, sg = b.sram("a.s", (8, 8, 16)), b.sram("b.s", (8, 8, 16)), b.sram("gain.s", (16,))
    add, looked, wide, narrow = (b.sram(n, (8, 8, 16), d) for n, d in
                                 (("add", "int8"), ("lut", "int8"), ("wide", "int16"), ("narrow", "int8")))
    pooled, resized, scaled = b.sram("pool", (4, 4, 16)), b.sram("resize", (8, 8, 16)), b.sram("mul", (8, 8, 16))
    mm = b.sram("mm", (64, 16))
    ch = 1 % target.dma_channels
    d_a = b.emit(DmaIn(a_in, sa, channel=0))
    d_b = b.emit(DmaIn(b_in, sb, channel=ch))
    d_g = b.emit(DmaIn(gain, sg, channel=0))
    p = {
        "add": dict(op="add", a_zp=3, b_zp=-7, a_multiplier=1 << 30, a_shift=31, b_multiplier=1518500250, b_shift=31,
                    requant=requant_for(1 / (1 << 20), 1.0, -1, "int8")),
        "wide": requant_for(np.linspace(20, 60, 16), 1.0, 5, "int16"),
        "narrow": requant_for(np.full(16, 1 / 40), 1.0, 0, "int8"),
        "avg": requant_for(np.full(16, 1 / 4), 1.0, 2, "int8"),
        "mul": requant_for(1 / 64, 1.0, 0, "int8"),
        "mm": requant_for(1 / 256, 1.0, 0, "int8"),
        "table": table,
    }
    e1 = b.emit(Elementwise(sa, sb, add, deps=(d_a, d_b), **p["add"]))
    e2 = b.emit(Lut(add, looked, table=table, deps=(e1,)))
    e3 = b.emit(Rescale(looked, wide, ifm_zp=0, requant=p["wide"], deps=(e2,)))
    e4 = b.emit(Rescale(wide, narrow, ifm_zp=5, requant=p["narrow"], deps=(e3,)))
    e5 = b.emit(Pool(narrow, pooled, kind="avg", kernel=(2, 2), stride=(2, 2), ifm_zp=0, requant=p["avg"], deps=(e4,)))
    e6 = b.emit(Resize(pooled, resized, scale=(2, 2), deps=(e5,)))
    e7 = b.emit(Elementwise(resized, sg, scaled, op="mul", a_zp=2, b_zp=0, requant=p["mul"], deps=(e6, d_g)))
    a_mat = Operand("sram", sa.offset, (64, 16), "int8", name="a.flat")
    b_mat = Operand("sram", pooled.offset, (16, 16), "int8", name="pool.flat")
    e8 = b.emit(MatMul(a_mat, b_mat, mm, a_zp=1, b_zp=2, requant=p["mm"], deps=(e5, d_a)))
    transposed = Operand("dram", out_t.offset, (64, 16), "int8", strides=(1, 64), name="mm_t.T")
    b.emit(DmaOut(mm, transposed, channel=0, deps=(e8,)))
    b.emit(DmaOut(scaled, out_r, channel=ch, deps=(e7,)))
    return b.build(), p


def _every_opcode_by_kernels(a, b, gain, p, rounding):
    def rq(acc, r, dtype="int8"):
        return kernels.rescale(acc, np.array(r.multiplier), np.array(r.shift), ofm_zp=r.ofm_zp, lo=r.lo, hi=r.hi,
                               rounding=rounding, out_dtype=dtype)

    add_p = {k: v for k, v in p["add"].items() if k != "requant"}
    added = rq(kernels.elementwise(a, b, rounding=rounding, **add_p), p["add"]["requant"])
    looked = kernels.lut(added, np.array(p["table"]))
    wide = rq(looked.astype(np.int64), p["wide"], "int16")
    narrow = rq(wide.astype(np.int64) - 5, p["narrow"])
    pooled = rq(kernels.pool(narrow, kind="avg", kernel=(2, 2), stride=(2, 2)), p["avg"])
    resized = kernels.resize_nearest(pooled, (2, 2))
    scaled = rq(kernels.elementwise(resized, gain, op="mul", a_zp=2, b_zp=0, rounding=rounding), p["mul"])
    mm = rq(kernels.matmul(a.reshape(len(a), 64, 16), pooled.reshape(len(a), 16, 16), a_zp=1, b_zp=2), p["mm"])
    return mm.transpose(0, 2, 1), scaled


@pytest.mark.parametrize("name", ["edge-3core", "u65-512"])
def test_every_opcode_equals_kernels_composed_directly(name):
    target = targets.load(name)
    rng = np.random.default_rng(42)
    program, params = _every_opcode_program(target, rng)
    a = rng.integers(-128, 128, size=(3, 8, 8, 16), dtype=np.int8)
    b = rng.integers(-128, 128, size=(3, 8, 8, 16), dtype=np.int8)
    gain = np.frombuffer(program.constants, np.int8, count=16, offset=program.tensors["gain"].offset)
    run = Emulator(target).run(program, {"a": a, "b": b})
    mm_t, scaled = _every_opcode_by_kernels(a, b, gain, params, target.rounding)
    np.testing.assert_array_equal(run.outputs["mm_t"], mm_t)
    np.testing.assert_array_equal(run.outputs["resized"], scaled)
    assert len(set(np.unique(run.outputs["resized"]))) > 3   # not saturated to a constant


def test_host_op_runs_in_dram_and_is_costed(u55):
    quant = {"scale": [0.1], "zero_point": [-3], "dtype": "int8", "axis": None}
    out_quant = {"scale": [1 / 256], "zero_point": [-128], "dtype": "int8", "axis": None}
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, y = b.input("x", (4, 10)), b.output("y", (4, 10))
    attrs = {"axis": -1, "in_quant": [quant], "out_quant": [out_quant]}
    b.emit(HostOp("softmax", (x,), (y,), attrs=attrs, reason="Softmax is not in the instruction set", layer="sm"))
    program = b.build()
    xs = np.random.default_rng(0).integers(-128, 128, size=(6, 4, 10), dtype=np.int8)
    run = Emulator(u55).run(program, {"x": xs})
    np.testing.assert_array_equal(run.outputs["y"], npu_host.execute("softmax", attrs, [xs])[0])
    real = (xs.astype(np.float64) + 3) * 0.1
    probs = np.exp(real - real.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    want = np.clip(np.rint(probs * 256) - 128, -128, 127)
    assert np.abs(run.outputs["y"] - want).max() <= 1
    ops = npu_host.count_ops("softmax", attrs, [(4, 10)], [(4, 10)])
    seconds = u55.host_overhead_us * 1e-6 + ops / u55.host_ops_per_second
    assert run.summary.host_cycles == int(np.ceil(seconds * u55.clock_mhz * 1e6))
    assert run.trace[0].engine == "host" and run.trace[0].host_ops == ops


def test_run_twice_gives_identical_outputs_and_trace(edge, small_net):
    program = build_conv_program(edge, small_net)
    x = small_net.random_input(3)
    first = Emulator(edge).run(program, {"x": x})
    second = Emulator(edge).run(program, {"x": x})
    np.testing.assert_array_equal(first.outputs["logits"], second.outputs["logits"])
    assert first.trace == second.trace and first.summary == second.summary


def test_memory_is_cleared_between_runs(u55, small_net):
    """A second run must not see the first run's SRAM contents (same cached buffers)."""
    program = build_conv_program(u55, small_net)
    emulator = Emulator(u55)
    x = small_net.random_input(2, seed=1)
    first = emulator.run(program, {"x": x}).outputs["logits"]
    emulator.run(program, {"x": small_net.random_input(2, seed=2)})
    np.testing.assert_array_equal(emulator.run(program, {"x": x}).outputs["logits"], first)


@pytest.mark.parametrize("bad, match", [
    ({}, "missing \\['x'\\]"),
    ({"x": np.zeros((8, 8, 8), np.int8)}, "leading batch axis"),
    ({"x": np.zeros((1, 8, 8, 8), np.float32)}, "quantise it first"),
    ({"x": np.full((1, 8, 8, 8), 300, np.int16)}, "outside int8"),
])
def test_bad_inputs_name_the_input(u55, small_net, bad, match):
    program = build_conv_program(u55, small_net)
    with pytest.raises(EmulatorFault, match=match) as info:
        Emulator(u55).run(program, bad)
    assert info.value.kind == "input" and info.value.operand == "x"


def _conv_by_kernels(program, name, x, rounding):
    conv = next(i for i in program.instructions if getattr(i, "layer", "") == name and isinstance(i, Conv2D))
    const = {t.name: np.frombuffer(program.constants, t.dtype, count=int(np.prod(t.shape)), offset=t.offset).reshape(t.shape)
             for t in program.tensors.values() if t.kind == "constant"}
    acc = kernels.conv2d(x, const[f"{name}.w"], const[f"{name}.b"], stride=conv.stride, padding=conv.padding,
                         ifm_zp=conv.ifm_zp)
    r = conv.requant
    return kernels.rescale(acc, np.array(r.multiplier), np.array(r.shift), ofm_zp=r.ofm_zp, lo=r.lo, hi=r.hi,
                           rounding=rounding, out_dtype="int8")


LAYER = st.fixed_dictionaries({
    "h": st.integers(1, 9), "w": st.integers(1, 9), "cin": st.integers(1, 20), "cout": st.integers(1, 20),
    "k": st.sampled_from([1, 3]), "stride": st.integers(1, 2)})


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(targets.available()), st.lists(LAYER, min_size=1, max_size=3), st.integers(0, 1000))
def test_random_conv_programs_equal_kernels(conv_program, name, layers, seed):
    target = targets.load(name)
    program, inputs = conv_program(target, layers, seed=seed)
    run = Emulator(target).run(program, inputs)
    for n in range(len(layers)):
        want = _conv_by_kernels(program, f"conv{n}", inputs[f"conv{n}.x"], target.rounding)
        np.testing.assert_array_equal(run.outputs[f"conv{n}.y"], want)


def test_row_tiles_with_halo_equal_the_whole_conv(edge):
    """Two row stripes DMA'd with their halo rows, each convolved with its edges' padding on its
    own core into row slices of one ofm, give exactly the untiled convolution."""
    rng = np.random.default_rng(5)
    h, w, cin, cout = 10, 8, 4, 6
    weights = rng.integers(-127, 128, size=(3, 3, cin, cout), dtype=np.int8)
    bias = rng.integers(-300, 300, size=cout, dtype=np.int32)
    rq = requant_for(np.full(cout, 2e-3), 1.0, -4, "int8")
    b = ProgramBuilder(edge.name, edge.content_hash())
    x, y = b.input("x", (h, w, cin)), b.output("y", (h, w, cout))
    wt, bt = b.constant("w", weights), b.constant("b", bias)
    sw, sb = b.sram("w.s", wt.shape), b.sram("b.s", (cout,), "int32")
    ofm = b.sram("y.s", (h, w, cout))
    loads = (b.emit(DmaIn(wt, sw, channel=2)), b.emit(DmaIn(bt, sb, channel=2)))
    row = w * cin                                  # bytes per ifm row
    convs = []
    for tile, (r0, r1, in0, in1, pad) in enumerate([(0, 5, 0, 6, (1, 0, 1, 1)), (5, 10, 4, 10, (0, 1, 1, 1))]):
        stripe = Operand("dram", x.offset + in0 * row, (in1 - in0, w, cin), "int8", name=f"x.rows{in0}-{in1}")
        buf = b.sram(f"x.tile{tile}", stripe.shape)
        load = b.emit(DmaIn(stripe, buf, channel=tile, layer="conv"))
        out_rows = Operand("sram", ofm.offset + r0 * w * cout, (r1 - r0, w, cout), "int8", name=f"y.rows{r0}-{r1}")
        convs.append(b.emit(Conv2D(buf, sw, sb, out_rows, padding=pad, ifm_zp=7, requant=rq, core=tile,
                                   deps=(load, *loads), layer="conv")))
    b.emit(DmaOut(ofm, y, channel=0, deps=tuple(convs)))
    program = b.build()
    xs = rng.integers(-128, 128, size=(3, h, w, cin), dtype=np.int8)
    run = Emulator(edge).run(program, {"x": xs})
    whole = kernels.rescale(kernels.conv2d(xs, weights, bias, padding=(1, 1, 1, 1), ifm_zp=7),
                            np.array(rq.multiplier), np.array(rq.shift), ofm_zp=rq.ofm_zp, lo=rq.lo, hi=rq.hi,
                            rounding=edge.rounding, out_dtype="int8")
    np.testing.assert_array_equal(run.outputs["y"], whole)
    a, c = (run.trace[i] for i in convs)
    assert a.engine != c.engine and max(a.start, c.start) < min(a.end, c.end)   # the tiles ran in parallel
