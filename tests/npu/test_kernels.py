"""Kernels == the plain int64 reference, exactly, on random and edge inputs."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pytest_npu.errors import EmulatorFault
from pytest_npu.npu import kernels
from pytest_npu.npu.kernels import _gemm_plan
from pytest_npu.npu.requant import requant_for

FEATURE_DTYPES = (np.int8, np.uint8, np.int16)
PROPERTY = settings(max_examples=40, deadline=None)


def _range(dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


@st.composite
def int_tensor(draw, dtype, shape):
    """Random values, or the whole tensor at one extreme (saturation edges)."""
    lo, hi = _range(dtype)
    fill = draw(st.sampled_from(["random", "random", "random", "min", "max"]))
    if fill == "min":
        return np.full(shape, lo, dtype)
    if fill == "max":
        return np.full(shape, hi, dtype)
    return draw(arrays(dtype, shape, elements=st.integers(lo, hi)))


@st.composite
def zero_point(draw, dtype):
    lo, hi = _range(dtype)
    return draw(st.one_of(st.just(0), st.just(lo), st.just(hi), st.integers(lo, hi)))


@st.composite
def conv_case(draw, depthwise: bool):
    dtype = draw(st.sampled_from(FEATURE_DTYPES))
    n = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    need_h = max(1, (kh - 1) * dilation[0] + 1 - padding[0] - padding[1])
    need_w = max(1, (kw - 1) * dilation[1] + 1 - padding[2] - padding[3])
    h, w = draw(st.integers(need_h, need_h + 5)), draw(st.integers(need_w, need_w + 5))
    cin = draw(st.integers(1, 5))
    cout = cin if depthwise else draw(st.integers(1, 4))
    wshape = (kh, kw, cin) if depthwise else (kh, kw, cin, cout)
    bias = draw(st.one_of(st.none(), arrays(np.int32, (cout,), elements=st.integers(-(1 << 20), 1 << 20))))
    return dict(
        ifm=draw(int_tensor(dtype, (n, h, w, cin))), weights=draw(int_tensor(np.int8, wshape)), bias=bias,
        stride=stride, dilation=dilation, padding=padding,
        ifm_zp=draw(zero_point(dtype)), weight_zp=draw(zero_point(np.int8)))


@PROPERTY
@given(conv_case(depthwise=False))
def test_conv2d_matches_reference(case):
    got = kernels.conv2d(**case)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ref.conv2d(**case))


@PROPERTY
@given(conv_case(depthwise=True))
def test_depthwise_conv2d_matches_reference(case):
    np.testing.assert_array_equal(kernels.depthwise_conv2d(**case), ref.depthwise_conv2d(**case))


@PROPERTY
@given(conv_case(depthwise=False), st.data())
def test_conv2d_then_rescale_matches_reference(case, data):
    """The emulator's CONV2D path end to end: per-channel scales -> requant_for -> rescale(acc)."""
    cout = case["weights"].shape[3]
    bits = 16 if case["ifm"].dtype == np.int16 else 32
    out_dtype = "int16" if bits == 16 else "int8"
    scales = data.draw(arrays(np.float64, (cout,), elements=st.floats(1e-7, 1e-2)))
    rounding = data.draw(st.sampled_from(["single", "double"]))
    rq = requant_for(scales, 1.0, data.draw(st.integers(-100, 100)), out_dtype, bits=bits)
    args = dict(multiplier=rq.multiplier, shift=rq.shift, ofm_zp=rq.ofm_zp, lo=rq.lo, hi=rq.hi)
    got = kernels.rescale(kernels.conv2d(**case), **args, rounding=rounding, out_dtype=out_dtype)
    expected = ref.rescale(ref.conv2d(**case), **args, rounding=rounding, scale32=bits == 32)
    np.testing.assert_array_equal(got.astype(np.int64), expected)


@st.composite
def gemm_case(draw, max_depth: int = 40, min_depth: int = 1):
    dtype = draw(st.sampled_from(FEATURE_DTYPES))
    lead = draw(st.sampled_from([(1,), (2,), (2, 3)]))
    m, k, nout = draw(st.integers(1, 4)), draw(st.integers(min_depth, max_depth)), draw(st.integers(1, 4))
    bias = draw(st.one_of(st.none(), arrays(np.int32, (nout,), elements=st.integers(-(1 << 30), 1 << 30))))
    return dict(ifm=draw(int_tensor(dtype, (*lead, m, k))), weights=draw(int_tensor(np.int8, (k, nout))),
                bias=bias, ifm_zp=draw(zero_point(dtype)), weight_zp=draw(zero_point(np.int8)))


@PROPERTY
@given(gemm_case())
def test_fully_connected_matches_reference(case):
    np.testing.assert_array_equal(kernels.fully_connected(**case), ref.fully_connected(**case))


@settings(max_examples=25, deadline=None)
@given(gemm_case(max_depth=1100, min_depth=1000))
def test_fully_connected_deep_chunked_matches_reference(case):
    """Depths around the int8 float32 split (1024) and beyond the asymmetric one (258)."""
    np.testing.assert_array_equal(kernels.fully_connected(**case), ref.fully_connected(**case))


@st.composite
def matmul_case(draw):
    a_dtype, b_dtype = draw(st.sampled_from(FEATURE_DTYPES)), draw(st.sampled_from(FEATURE_DTYPES))
    n, m, k, p = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 30)),
                  draw(st.integers(1, 4)))
    return dict(a=draw(int_tensor(a_dtype, (n, m, k))), b=draw(int_tensor(b_dtype, (n, k, p))),
                a_zp=draw(zero_point(a_dtype)), b_zp=draw(zero_point(b_dtype)))


@PROPERTY
@given(matmul_case())
def test_matmul_matches_reference(case):
    np.testing.assert_array_equal(kernels.matmul(**case), ref.matmul(**case))


@st.composite
def pool_case(draw):
    dtype = draw(st.sampled_from(FEATURE_DTYPES))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # padding < kernel: no window consists of padding only
    padding = (draw(st.integers(0, kernel[0] - 1)), draw(st.integers(0, kernel[0] - 1)),
               draw(st.integers(0, kernel[1] - 1)), draw(st.integers(0, kernel[1] - 1)))
    h, w = draw(st.integers(kernel[0], kernel[0] + 5)), draw(st.integers(kernel[1], kernel[1] + 5))
    return dict(ifm=draw(int_tensor(dtype, (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 4))))),
                kind=draw(st.sampled_from(["max", "avg"])), kernel=kernel, stride=stride, padding=padding,
                ifm_zp=draw(zero_point(dtype)))


@PROPERTY
@given(pool_case())
def test_pool_matches_reference(case):
    np.testing.assert_array_equal(kernels.pool(**case), ref.pool(**case))


# ----------------------------------------------------------------------------- rescale

TIE_MULTIPLIERS = (1 << 30, 3 << 29, (1 << 31) - 1)   # exact .5 ties are frequent with these


@st.composite
def rescale_case(draw, scale32: bool = True):
    channels = draw(st.integers(1, 4))
    per_channel = draw(st.booleans())
    count = channels if per_channel else 1
    if scale32:
        mult = draw(st.lists(st.one_of(st.sampled_from(TIE_MULTIPLIERS), st.integers(0, (1 << 31) - 1)),
                             min_size=count, max_size=count))
        shifts = draw(st.lists(st.integers(2, 62), min_size=count, max_size=count))
        bound = 1 << (min(min(shifts), 32) - 1)          # TOSA: v in [-2**(s-1), 2**(s-1)) and int32
    else:
        mult = draw(st.lists(st.integers(0, (1 << 15) - 1), min_size=count, max_size=count))
        shifts = draw(st.lists(st.integers(16, 62), min_size=count, max_size=count))
        bound = 1 << min(47, min(shifts) + 15)           # int48, and the result stays inside int32
    rows = draw(st.integers(1, 6))
    edge = st.sampled_from([-bound, bound - 1, 0, -1, 1])
    acc = draw(arrays(np.int64, (rows, channels), elements=st.one_of(edge, st.integers(-bound, bound - 1))))
    out_dtype = draw(st.sampled_from(["int8", "uint8", "int16", "int32"]))
    lo, hi = _range(np.dtype(out_dtype))
    clamp_lo = draw(st.integers(lo, hi))
    clamp_hi = draw(st.integers(clamp_lo, hi))
    return dict(acc=acc, multiplier=mult, shift=shifts, ofm_zp=draw(st.integers(lo, hi)), lo=clamp_lo,
                hi=clamp_hi, rounding=draw(st.sampled_from(["single", "double"])), out_dtype=out_dtype)


@settings(max_examples=60, deadline=None)
@given(rescale_case())
def test_rescale32_matches_tosa_and_gemmlowp(case):
    """Single rounding vs TOSA's formula; double rounding (kernel: TOSA) vs gemmlowp (reference)."""
    got = kernels.rescale(**case)
    assert got.dtype == np.dtype(case["out_dtype"])
    expected = ref.rescale(case["acc"], case["multiplier"], case["shift"], ofm_zp=case["ofm_zp"],
                           lo=case["lo"], hi=case["hi"], rounding=case["rounding"])
    np.testing.assert_array_equal(got.astype(np.int64), expected)


@settings(max_examples=40, deadline=None)
@given(rescale_case(scale32=False))
def test_rescale16_takes_48_bit_accumulators(case):
    got = kernels.rescale(**case)        # 16-bit multipliers select apply_scale_16 (no double rounding)
    expected = ref.rescale(case["acc"], case["multiplier"], case["shift"], ofm_zp=case["ofm_zp"],
                           lo=case["lo"], hi=case["hi"], rounding=case["rounding"], scale32=False)
    np.testing.assert_array_equal(got.astype(np.int64), expected)


def test_double_and_single_rounding_differ_where_expected():
    """Not a tautology: the two modes must disagree on ties below bit 31 (shift > 31)."""
    acc = np.arange(-4096, 4096, dtype=np.int64).reshape(-1, 1)
    single = kernels.rescale(acc, [1 << 30], [40], ofm_zp=0, lo=-128, hi=127, rounding="single")
    double = kernels.rescale(acc, [1 << 30], [40], ofm_zp=0, lo=-128, hi=127, rounding="double")
    assert np.any(single != double) and np.abs(single.astype(int) - double.astype(int)).max() == 1
    # shift <= 31: TOSA double rounding adds nothing
    single = kernels.rescale(acc, [3 << 29], [20], ofm_zp=0, lo=-(1 << 31), hi=(1 << 31) - 1,
                             rounding="single", out_dtype="int32")
    double = kernels.rescale(acc, [3 << 29], [20], ofm_zp=0, lo=-(1 << 31), hi=(1 << 31) - 1,
                             rounding="double", out_dtype="int32")
    np.testing.assert_array_equal(single, double)


def test_single_rounding_is_round_half_up():
    acc = np.array([[-3], [-2], [-1], [1], [2], [3]], np.int64)   # x / 2 exactly: ties everywhere
    out = kernels.rescale(acc, [1 << 30], [31], ofm_zp=0, lo=-128, hi=127)
    assert out.ravel().tolist() == [-1, -1, 0, 1, 1, 2]


@pytest.mark.parametrize("acc, shift", [(1 << 31, 40), (-(1 << 31) - 1, 40), (1 << 9, 10), (-(1 << 9) - 1, 10)])
def test_rescale32_refuses_out_of_range_values(acc, shift):
    with pytest.raises(EmulatorFault) as info:
        kernels.rescale(np.array([[acc]]), [1 << 30], [shift], ofm_zp=0, lo=-128, hi=127)
    assert info.value.kind == "overflow" and str(acc) in str(info.value)


def test_rescale32_range_is_checked_per_channel():
    """Channel 0's shift of 10 admits |v| < 512 only; channel 1's shift of 40 admits any int32."""
    ok = np.array([[511, 1 << 30], [-512, -(1 << 31)]], np.int64)
    kernels.rescale(ok, [1 << 30, 1 << 30], [10, 40], ofm_zp=0, lo=-128, hi=127)
    with pytest.raises(EmulatorFault, match="value 512 at index \\(1, 0\\)") as info:
        kernels.rescale(np.array([[0, 5], [512, 5]], np.int64), [1 << 30, 1 << 30], [10, 40], ofm_zp=0,
                        lo=-128, hi=127)
    assert info.value.kind == "overflow"


def test_rescale_boundary_values_are_accepted():
    acc = np.array([[-(1 << 31)], [(1 << 31) - 1]], np.int64)
    out = kernels.rescale(acc, [1 << 30], [40], ofm_zp=0, lo=-(1 << 31), hi=(1 << 31) - 1, out_dtype="int32")
    assert out.ravel().tolist() == [-(1 << 21), 1 << 21]      # 2**31 * 2**30 / 2**40
    saturated = kernels.rescale(acc, [1 << 30], [40], ofm_zp=5, lo=-(1 << 15), hi=(1 << 15) - 1,
                                out_dtype="int16")
    assert saturated.ravel().tolist() == [-(1 << 15), (1 << 15) - 1]


@pytest.mark.parametrize("kwargs, kind", [
    (dict(multiplier=[1 << 30], shift=[1]), "requant"),
    (dict(multiplier=[1 << 30], shift=[63]), "requant"),
    (dict(multiplier=[-1], shift=[31]), "requant"),
    (dict(multiplier=[1 << 30, 1 << 30], shift=[31, 31, 31]), "requant"),
])
def test_rescale_rejects_bad_parameters(kwargs, kind):
    with pytest.raises(EmulatorFault) as info:
        kernels.rescale(np.zeros((2, 4), np.int64), ofm_zp=0, lo=-128, hi=127, **kwargs)
    assert info.value.kind == kind


def test_rescale_rejects_clamp_outside_dtype_and_unknown_rounding():
    with pytest.raises(EmulatorFault, match="inside int8"):
        kernels.rescale(np.zeros((1, 1), np.int64), [1 << 30], [31], ofm_zp=0, lo=-200, hi=127)
    with pytest.raises(EmulatorFault, match="rounding"):
        kernels.rescale(np.zeros((1, 1), np.int64), [1 << 30], [31], ofm_zp=0, lo=-128, hi=127,
                        rounding="nearest")


# ----------------------------------------------------------------------------- exactness edges of the GEMM split

def test_gemm_plan_uses_value_bounds():
    assert _gemm_plan(1024, 128, 128) == (np.float32, 1024)
    assert _gemm_plan(1025, 128, 128) == (np.float32, 1024)
    assert _gemm_plan(600, 255, 255) == (np.float32, 258)
    assert _gemm_plan(600, 65535, 255)[0] == np.float64        # int16 with a zero point


@pytest.mark.parametrize("depth", [1023, 1024, 1025, 2049])
@pytest.mark.parametrize("value", [-128, 127])
def test_fc_extremes_at_the_float32_split(depth, value):
    ifm = np.full((1, 2, depth), value, np.int8)
    weights = np.full((depth, 3), -128, np.int8)
    got = kernels.fully_connected(ifm, weights, None)
    assert (got == depth * value * -128).all()


def test_fc_sum_beyond_float32_mantissa_is_exact():
    """An odd total above 2**24 has no float32 representation: one unsplit float32 GEMM must miss it."""
    depth = 1100
    ifm = np.full((1, 1, depth), 127, np.int8)
    weights = np.full((depth, 1), 127, np.int8)
    weights[0, 0] = 126
    exact = (depth - 1) * 127 * 127 + 127 * 126
    assert exact > 1 << 24 and exact % 2 == 1
    naive = int((ifm.astype(np.float32) @ weights.astype(np.float32))[0, 0, 0])
    assert naive != exact
    assert int(kernels.fully_connected(ifm, weights, None)[0, 0, 0]) == exact


@pytest.mark.parametrize("value", [-32768, 32767])
def test_int16_extremes_use_an_exact_path(value):
    depth = 3000
    ifm = np.full((1, 1, depth), value, np.int16)
    weights = np.full((depth, 2), -128, np.int8)
    weights[0] = 127
    exact = (depth - 1) * value * -128 + value * 127
    assert int(kernels.fully_connected(ifm, weights, None)[0, 0, 0]) == exact


def test_conv_with_int8_extremes_and_asymmetric_zero_points_is_exact():
    ifm = np.full((1, 9, 9, 128), 127, np.uint8)                   # centred -128 everywhere... almost
    ifm[0, 0, 0, 0] = 0
    weights = np.full((3, 3, 128, 2), -128, np.int8)
    case = dict(ifm=ifm, weights=weights, bias=np.array([7, -7], np.int32), padding=(1, 1, 1, 1),
                ifm_zp=255, weight_zp=127)                          # |x - zx| = |w - zw| = 255, K = 1152
    np.testing.assert_array_equal(kernels.conv2d(**case), ref.conv2d(**case))


def test_int8_accumulator_overflow_is_a_fault():
    depth = 140_000                                                  # 128*128*140000 > 2**31
    ifm = np.full((1, 1, depth), -128, np.int8)
    weights = np.full((depth, 1), -128, np.int8)
    with pytest.raises(EmulatorFault) as info:
        kernels.fully_connected(ifm, weights, None)
    assert info.value.kind == "overflow" and "FULLY_CONNECTED" in str(info.value)


# ----------------------------------------------------------------------------- element-wise, LUT, resize

@st.composite
def elementwise_case(draw):
    dtype = draw(st.sampled_from([np.int8, np.uint8, np.int16]))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4)))
    b_form = draw(st.sampled_from(["same", "channel", "scalar", "batch_channel"]))
    b_shape = {"same": shape, "channel": (shape[-1],), "scalar": (1,), "batch_channel": (shape[0], shape[-1])}[b_form]
    # int16: (x - zp) < 2**16, so a shift <= 15 keeps it in int32; then apply_scale_32 needs shift >= 32
    wide = dtype == np.int16
    min_shift = 32 if wide else 30
    return dict(a=draw(int_tensor(dtype, shape)), b=draw(int_tensor(dtype, b_shape)),
                op=draw(st.sampled_from(["add", "sub", "mul", "min", "max"])),
                a_zp=draw(zero_point(dtype)), b_zp=draw(zero_point(dtype)),
                a_multiplier=draw(st.integers(1 << 30, (1 << 31) - 1)), a_shift=draw(st.integers(min_shift, 40)),
                b_multiplier=draw(st.integers(1 << 30, (1 << 31) - 1)), b_shift=draw(st.integers(min_shift, 40)),
                rounding=draw(st.sampled_from(["single", "double"])),
                left_shift=draw(st.integers(0, 15)) if wide else 20)


@PROPERTY
@given(elementwise_case())
def test_elementwise_matches_reference(case):
    b = case["b"]
    if b.ndim == 2 and b.shape != case["a"].shape:     # batch-first (N, C) -> numpy broadcast form
        b = b.reshape(b.shape[0], 1, 1, b.shape[1])
    np.testing.assert_array_equal(kernels.elementwise(**case), ref.elementwise(**{**case, "b": b}))


def test_int16_add_with_int8_left_shift_overflows_int32():
    """(x - zp) << 20 of int16 inputs leaves int32: the fault the int16 left_shift of 15 avoids."""
    a = np.full((1, 1, 1, 2), 32767, np.int16)
    kw = dict(op="add", a_zp=-5, b_zp=0, a_shift=33, b_shift=33)
    with pytest.raises(EmulatorFault) as info:
        kernels.elementwise(a, a, left_shift=20, **kw)
    assert info.value.kind == "overflow" and info.value.operand == "a"
    want = ref.elementwise(a, a, left_shift=15, **kw)
    np.testing.assert_array_equal(kernels.elementwise(a, a, left_shift=15, **kw), want)
    assert int(want.max()) == (32772 << 15 >> 3) + (32767 << 15 >> 3)    # m / 2**s = 1/8, exact


def test_elementwise_rejects_unbroadcastable_operand():
    with pytest.raises(EmulatorFault) as info:
        kernels.elementwise(np.zeros((1, 2, 2, 3), np.int8), np.zeros((2,), np.int8), op="add")
    assert info.value.operand == "b"


@PROPERTY
@given(st.data())
def test_lut_and_resize_match_reference(data):
    shape = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)),
             data.draw(st.integers(1, 3)))
    ifm = data.draw(int_tensor(np.int8, shape))
    table = data.draw(arrays(np.int8, (256,), elements=st.integers(-128, 127)))
    np.testing.assert_array_equal(kernels.lut(ifm, table), ref.lut(ifm, table))
    scale = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    np.testing.assert_array_equal(kernels.resize_nearest(ifm, scale), ref.resize_nearest(ifm, scale))


# ----------------------------------------------------------------------------- bad input is named

def test_wrong_dtype_names_the_operand():
    with pytest.raises(EmulatorFault) as info:
        kernels.conv2d(np.zeros((1, 4, 4, 2), np.float32), np.zeros((1, 1, 2, 2), np.int8), None)
    assert info.value.operand == "ifm" and info.value.kind == "dtype" and "float32" in str(info.value)


def test_channel_mismatch_names_weights():
    with pytest.raises(EmulatorFault, match="3 channels but weights expect 2") as info:
        kernels.conv2d(np.zeros((1, 4, 4, 3), np.int8), np.zeros((1, 1, 2, 2), np.int8), None)
    assert info.value.operand == "weights"


def test_window_larger_than_input_is_a_shape_fault():
    with pytest.raises(EmulatorFault, match="larger than the padded input"):
        kernels.conv2d(np.zeros((1, 2, 2, 1), np.int8), np.zeros((3, 3, 1, 1), np.int8), None)


def test_max_pool_window_of_padding_only_is_a_fault():
    with pytest.raises(EmulatorFault, match="only padding"):
        kernels.pool(np.zeros((1, 4, 4, 1), np.int8), kind="max", kernel=(1, 1), stride=(1, 1),
                     padding=(1, 0, 0, 0))


def test_max_pool_ignores_padding_even_below_every_value():
    ifm = np.full((1, 2, 2, 1), -128, np.int8)
    out = kernels.pool(ifm, kind="max", kernel=(2, 2), stride=(1, 1), padding=(1, 1, 1, 1))
    assert (out == -128).all()


def test_lut_rejects_short_table():
    with pytest.raises(EmulatorFault, match="256"):
        kernels.lut(np.zeros((1, 2), np.int8), list(range(10)))
