"""The emulator's fast paths are exact: the float64 RESCALE equals the int64 apply_scale, and the
prepared float32 MAC kernels equal the general (validating, chunked) kernels, at dtype extremes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.npu import kernels


def _int_rescale(acc, multiplier, shift, zp, lo, hi, double):
    scaled = kernels.apply_scale(acc.astype(np.int64), multiplier, shift, double_round=double, scale32=True)
    return np.clip(scaled + zp, lo, hi)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 6), zp=st.integers(-128, 127),
       low_shift=st.integers(2, 40), double=st.booleans())
def test_float_rescale_equals_int_apply_scale(seed, channels, zp, low_shift, double):
    """Accumulators at the float path's own limit, at 0/+-1, and on exact .5 ties."""
    rng = np.random.default_rng(seed)
    multiplier = rng.integers(1 << 30, 1 << 31, size=channels)
    shift = rng.integers(low_shift, low_shift + 8, size=channels)
    rq = kernels.Requantizer(multiplier, shift, ofm_zp=zp, lo=-128, hi=127,
                             rounding="double" if double else "single", channels=channels)
    if rq.float_peak < 1:
        return                                    # the int64 path only: nothing to compare
    peak = rq.float_peak
    acc = rng.integers(-peak, peak + 1, size=(40, channels))
    acc[:3] = [[peak], [-peak], [0]]
    for case, m in ((rq, multiplier),):
        got = case(acc.astype(np.float32 if peak < (1 << 24) else np.float64), peak=case.float_peak)
        np.testing.assert_array_equal(got, _int_rescale(acc, m, shift, zp, -128, 127, double))
        bias = rng.integers(-(peak // 4), peak // 4 + 1, size=channels)
        half = (acc // 2)
        got = case(half, bias=bias, peak=int(np.abs(half).max()) + int(np.abs(bias).max()))
        np.testing.assert_array_equal(got, _int_rescale(half + bias, m, shift, zp, -128, 127, double))


@settings(max_examples=25, deadline=None)
@given(shift=st.integers(31, 45), zp=st.integers(-128, 127), double=st.booleans())
def test_float_rescale_rounds_exact_ties_like_apply_scale(shift, zp, double):
    """m = 2**30: v * m / 2**s = v / 2**(s-30), a tie (x.5) for odd multiples of 2**(s-31)."""
    multiplier, shifts = np.array([1 << 30]), np.array([shift])
    rq = kernels.Requantizer(multiplier, shifts, ofm_zp=zp, lo=-128, hi=127,
                             rounding="double" if double else "single")
    odd = np.arange(-301, 302, 2)[:, None]
    acc = odd << (shift - 31)
    acc = acc[np.abs(acc[:, 0]) <= max(rq.float_peak, 0)]
    got = rq(acc.astype(np.float64), peak=rq.float_peak)
    np.testing.assert_array_equal(got, _int_rescale(acc, multiplier, shifts, zp, -128, 127, double))
    assert double and shift > 31 or len(acc) > 100      # the float path ran on many ties


_DTYPE = st.sampled_from([("int8", np.int8), ("uint8", np.uint8)])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["conv2d", "depthwise", "fc"]), dtype=_DTYPE,
       kernel=st.integers(1, 3), stride=st.integers(1, 2), pad=st.integers(0, 1), zp=st.integers(-128, 255),
       dilation=st.integers(1, 2))
def test_prepared_mac_equals_general_kernel(seed, kind, dtype, kernel, stride, pad, zp, dilation):
    name, np_dtype = dtype
    info = np.iinfo(np_dtype)
    zp = int(np.clip(zp, info.min, info.max))
    rng = np.random.default_rng(seed)
    batch, cin, cout = 2, int(rng.integers(1, 9)), int(rng.integers(1, 9))
    ifm = rng.integers(info.min, info.max + 1, size=(batch, 5, 6, cin)).astype(np_dtype)
    ifm[0, 0, 0, 0], ifm[-1, -1, -1, -1] = info.min, info.max
    if kind == "fc":
        ifm = ifm.reshape(batch, 30, cin)
        weights = rng.integers(-128, 128, size=(cin, cout)).astype(np.int8)
        run = kernels.prepare_mac("fc", batch, ifm.shape[1:], name, weights.shape, "int8", ifm_zp=zp, weight_zp=3)
        want = kernels.fully_connected(ifm, weights, None, ifm_zp=zp, weight_zp=3)
    else:
        shape = (kernel, kernel, cin) if kind == "depthwise" else (kernel, kernel, cin, cout)
        weights = rng.integers(-128, 128, size=shape).astype(np.int8)
        weights.flat[0] = -128
        geometry = dict(stride=(stride, stride), dilation=(dilation, 1), padding=(pad, pad, pad, 0))
        run = kernels.prepare_mac(kind, batch, ifm.shape[1:], name, weights.shape, "int8", ifm_zp=zp,
                                  weight_zp=0, **geometry)
        general = kernels.depthwise_conv2d if kind == "depthwise" else kernels.conv2d
        want = general(ifm, weights, None, ifm_zp=zp, weight_zp=0, **geometry)
    assert run is not None, "int8 shapes this small always fit one exact float32 GEMM"
    for _ in range(2):                 # the buffers are reused: a second call must not see the first
        acc, bound = run(ifm, weights)
        np.testing.assert_array_equal(acc.astype(np.int64).reshape(want.shape), want)
        assert np.abs(want).max() <= bound


def test_batch_split_into_cache_sized_chunks_equals_whole_batch(u55, monkeypatch):
    """MAC instructions run the batch in L2-sized chunks (the last one shorter); the outputs must
    equal the general kernels over the whole batch."""
    from pytest_npu.npu import Emulator
    from pytest_npu.npu import emulator as emulator_module
    from pytest_npu.npu.isa import Conv2D, DmaIn, DmaOut
    from pytest_npu.npu.program import ProgramBuilder
    from pytest_npu.npu.requant import requant_for

    rng = np.random.default_rng(7)
    weights = rng.integers(-128, 128, size=(3, 3, 5, 6), dtype=np.int8)
    bias = rng.integers(-1000, 1000, size=6, dtype=np.int32)
    rq = requant_for(np.full(6, 1e-4), 0.05, 3, "int8")
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, y = b.input("x", (9, 7, 5)), b.output("y", (5, 4, 6))
    w_d, b_d = b.constant("w", weights), b.constant("b", bias)
    sx, sw, sb, sy = b.sram("x.s", (9, 7, 5)), b.sram("w.s", weights.shape), b.sram("b.s", (6,), "int32"), \
        b.sram("y.s", (5, 4, 6))
    deps = tuple(b.emit(DmaIn(src, dst)) for src, dst in ((x, sx), (w_d, sw), (b_d, sb)))
    conv = b.emit(Conv2D(sx, sw, sb, sy, stride=(2, 2), padding=(1, 1, 1, 1), ifm_zp=-2, requant=rq, deps=deps))
    b.emit(DmaOut(sy, y, deps=(conv,)))
    program = b.build()
    xs = rng.integers(-128, 128, size=(5, 9, 7, 5), dtype=np.int8)
    monkeypatch.setattr(emulator_module, "_CACHE_BYTES", 13000)   # 6300 bytes a sample
    assert emulator_module._batch_chunk(program.instructions[conv], 5) == 2     # chunks of 2, 2, 1
    got = Emulator(u55).run(program, {"x": xs}).outputs["y"]
    acc = kernels.conv2d(xs, weights, bias, stride=(2, 2), padding=(1, 1, 1, 1), ifm_zp=-2)
    want = kernels.rescale(acc, np.array(rq.multiplier), np.array(rq.shift), ofm_zp=rq.ofm_zp, lo=rq.lo, hi=rq.hi,
                           rounding=u55.rounding)
    np.testing.assert_array_equal(got, want)
