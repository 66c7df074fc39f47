"""Scale -> (multiplier, shift) quantisation: exact rounding, renormalisation, range errors."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import CompileError
from pytest_npu.npu import kernels
from pytest_npu.npu.isa import Requant
from pytest_npu.npu.requant import SHIFT_RANGE, quantize_multiplier, quantize_multipliers, requant_for

# scales whose shift lies in TOSA's 2..62 for each multiplier width
VALID = {32: st.floats(2.0 ** -32, 2.0 ** 28),
         16: st.floats(2.0 ** -47, 2.0 ** 12)}
WIDTH_AND_SCALE = st.sampled_from([32, 16]).flatmap(lambda bits: st.tuples(st.just(bits), VALID[bits]))
WIDTH_AND_SCALES = st.sampled_from([32, 16]).flatmap(
    lambda bits: st.tuples(st.just(bits), st.lists(st.one_of(VALID[bits], st.just(0.0)), min_size=1, max_size=12)))


def _expected(scale: float, bits: int) -> tuple[int, int]:
    """Independent derivation with exact rationals: the shift that puts scale * 2**shift in
    [2**(bits-2), 2**(bits-1)), then round half away from zero (renormalising a carry)."""
    exact = Fraction(scale)
    top = 1 << (bits - 1)
    shift = 0
    while exact * 2 ** shift >= top:
        shift -= 1
    while exact * 2 ** shift < top // 2:
        shift += 1
    scaled = exact * 2 ** shift
    multiplier = math.floor(scaled + Fraction(1, 2))
    if multiplier == top:
        multiplier, shift = top // 2, shift - 1
    return multiplier, shift


@settings(max_examples=60, deadline=None)
@given(WIDTH_AND_SCALE)
def test_quantize_multiplier_is_exactly_rounded(bits_scale):
    bits, scale = bits_scale
    multiplier, shift = quantize_multiplier(scale, bits)
    assert (multiplier, shift) == _expected(scale, bits)
    assert 1 << (bits - 2) <= multiplier < 1 << (bits - 1)
    # round-to-nearest: the represented scale is within half a unit of the last mantissa bit
    assert abs(Fraction(multiplier, 2 ** shift) - Fraction(scale)) <= Fraction(1, 2 ** (shift + 1))


@settings(max_examples=40, deadline=None)
@given(WIDTH_AND_SCALES)
def test_vectorised_equals_scalar(bits_scales):
    bits, scales = bits_scales
    multipliers, shifts = quantize_multipliers(np.array(scales), bits)
    assert list(zip(multipliers, shifts)) == [quantize_multiplier(s, bits) for s in scales]
    assert all(isinstance(v, int) for v in multipliers + shifts)


@pytest.mark.parametrize("bits", [32, 16])
def test_rounding_up_to_a_power_of_two_renormalises(bits):
    scale = 1.0 - 2.0 ** -(bits + 1)           # mantissa * 2**(bits-1) = 2**(bits-1) - 1/4 -> carry
    expected = (1 << (bits - 2), bits - 2)
    assert quantize_multiplier(scale, bits) == expected
    assert quantize_multipliers([scale], bits) == ((expected[0],), (expected[1],))


def test_exact_powers_of_two():
    assert quantize_multiplier(1.0) == (1 << 30, 30)
    assert quantize_multiplier(0.5) == (1 << 30, 31)
    assert quantize_multiplier(2.0 ** -32) == (1 << 30, 62)       # the smallest TOSA allows


@pytest.mark.parametrize("scale, shift", [(2.0 ** 29, 1), (1e12, -9)])
def test_scale_too_large_is_a_compile_error_naming_the_layer(scale, shift):
    with pytest.raises(CompileError, match=f"{scale!r} for layer 'conv1' needs shift {shift}.*2..62"):
        quantize_multiplier(scale, where="layer 'conv1'")
    with pytest.raises(CompileError, match="channel 1 of layer 'conv1'"):
        quantize_multipliers([0.25, scale], where="layer 'conv1'")


@pytest.mark.parametrize("bits, scale", [(32, 2.0 ** -33), (32, 2.29e-10), (32, 5e-324), (16, 2.0 ** -49),
                                         (16, 1e-30)])
def test_scale_too_small_for_any_shift_gets_multiplier_zero_like_tflite(scale, bits):
    """A dead channel (all-zero weights, per-channel scale ~1e-10): TFLite's QuantizeMultiplier
    gives multiplier 0, and that is exact -- |acc * m| < 2**62 rounds to 0 for any shift > 62
    (for 15-bit multipliers and 48-bit accumulators the same bound holds below 2**-48)."""
    multipliers, shifts = quantize_multipliers([0.25, scale], bits)
    assert multipliers[1] == 0 and SHIFT_RANGE[0] <= shifts[1] <= SHIFT_RANGE[1]
    acc = np.array([[1 << 20, (1 << 31) - 1], [-(1 << 20), -(1 << 31)]]) if bits == 32 else \
        np.array([[1 << 20, (1 << 47) - 1], [-(1 << 20), -(1 << 47)]])
    for rounding in ("single", "double"):
        out = kernels.rescale(acc, multipliers, shifts, ofm_zp=3, lo=-128, hi=127, rounding=rounding,
                              scale32=bits == 32)
        assert out[:, 1].tolist() == [3, 3]
        exact = np.round(acc[:, 1].astype(np.float64) * scale) + 3      # the float reference agrees
        assert exact.tolist() == [3, 3]


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_invalid_scales_are_compile_errors(bad):
    with pytest.raises(CompileError, match="finite and >= 0"):
        quantize_multiplier(bad)
    with pytest.raises(CompileError, match="channel 0"):
        quantize_multipliers([bad])


def test_unsupported_width_is_a_compile_error():
    with pytest.raises(CompileError, match="bits=8"):
        quantize_multiplier(0.1, bits=8)


def test_zero_scale_maps_everything_to_the_zero_point():
    multiplier, shift = quantize_multiplier(0.0)
    assert multiplier == 0
    out = kernels.rescale(np.array([[-(1 << 30)], [12345]]), [multiplier], [shift], ofm_zp=-7, lo=-128,
                          hi=127, rounding="double")
    assert out.ravel().tolist() == [-7, -7]


def test_requant_for_builds_per_channel_parameters_with_clamp():
    rq = requant_for(np.array([0.02 * 0.001, 0.02 * 0.004]), 0.05, -3, "int8", clamp=(-3, 200))
    assert isinstance(rq, Requant)
    assert rq.multiplier == quantize_multipliers([0.02 * 0.001 / 0.05, 0.02 * 0.004 / 0.05])[0]
    assert (rq.ofm_zp, rq.lo, rq.hi) == (-3, -3, 127)           # ReLU clamp intersected with int8
    rq16 = requant_for(0.001, 0.01, 0, "int16", bits=16)
    assert rq16.multiplier == (quantize_multiplier(0.1, 16)[0],) and rq16.lo == -32768


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-6, 1e2), st.floats(1e-3, 1.0), st.integers(-128, 127), st.sampled_from(["single", "double"]),
       st.lists(st.integers(-(1 << 24), 1 << 24), min_size=1, max_size=20))
def test_requant_for_then_rescale_rounds_the_real_product(acc_scale, out_scale, zp, rounding, accs):
    """What the compiler builds, applied by the kernel, is round(acc * ratio) + zp (saturated)."""
    try:
        rq = requant_for(acc_scale, out_scale, zp, "int8")
    except CompileError:
        assert acc_scale / out_scale < 2.0 ** -32 or acc_scale / out_scale >= 2.0 ** 29
        return
    limit = 1 << (min(rq.shift[0], 32) - 1)             # TOSA apply_scale_32's input domain
    acc = np.clip(np.array(accs, np.int64), -limit, limit - 1).reshape(-1, 1)
    out = kernels.rescale(acc, rq.multiplier, rq.shift, ofm_zp=rq.ofm_zp, lo=rq.lo, hi=rq.hi,
                          rounding=rounding).astype(np.int64).ravel()
    ideal = acc.ravel() * (acc_scale / out_scale) + zp
    # 0.5 from rounding, plus the 2**-31 relative error of the multiplier, plus double rounding's extra LSB
    slack = 0.5 + np.abs(acc.ravel()) * (acc_scale / out_scale) * 2.0 ** -30 + (1.0 if rounding == "double" else 0.0)
    assert np.all(np.abs(out - np.clip(ideal, -128, 127)) <= slack + 1e-9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(out_scale=0.0), "finite positive"),
    (dict(out_scale=[0.1, 0.2]), "one finite positive"),
    (dict(out_zp=300), "zero point 300"),
    (dict(clamp=(200, 250)), "does not intersect"),
    (dict(out_dtype="float32"), "float32"),
])
def test_requant_for_rejects_bad_arguments(kwargs, message):
    args = dict(acc_scale=1e-4, out_scale=0.1, out_zp=0, out_dtype="int8", where="fc2") | kwargs
    with pytest.raises(CompileError, match=message) as info:
        requant_for(**args)
    assert "fc2" in str(info.value)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_tosa_double_rounding_is_tflites_multiply_by_quantized_multiplier(data):
    """The ``double`` rule (TOSA apply_scale_32) equals gemmlowp's SRDHM + RoundingDivideByPOT
    (npu.fixedpoint, TFLite's MultiplyByQuantizedMultiplier) on every int32 accumulator TOSA
    accepts, near ties and at the range ends included; so a target whose rounding is "tflite"
    can use it for every layer TFLite rescales that way."""
    from pytest_npu.npu import fixedpoint
    shift = data.draw(st.integers(2, 62))
    multiplier = data.draw(st.integers(0, (1 << 31) - 1))
    bound = 1 << (min(shift, 32) - 1)
    values = np.array(data.draw(st.lists(st.integers(-bound, bound - 1), min_size=1, max_size=20)), np.int64)
    if multiplier and shift > 1:      # values whose exact product sits at a tie of the final rounding
        ties = np.arange(-4, 5, dtype=np.int64) * (1 << (shift - 1)) // multiplier
        values = np.concatenate([values, ties[np.abs(ties) < bound]])
    tosa = kernels.apply_scale(values, np.array([multiplier]), np.array([shift]), rule="double", scale32=True)
    gemmlowp = fixedpoint.multiply_by_quantized_multiplier(values, multiplier, 31 - shift)
    assert tosa.tolist() == gemmlowp.tolist()


@pytest.mark.parametrize("value, scale", [(1, 0.49999999999999994), (-1, 0.49999999999999994), (3, 0.5),
                                          (-3, 0.5), (7, 1 / 14), (123456789, 0.0001234)])
def test_float_rule_rounds_half_away_from_zero_like_c_round(value, scale):
    """LiteRT's reference fully-connected: ``round(double(acc) * scale)``; ``floor(x + 0.5)`` would
    round 0.49999999999999994 up."""
    (m,), (s,) = quantize_multipliers([scale], rule="float")
    assert m * 2.0 ** -s == scale                             # the scale, exactly
    got = kernels.apply_scale(np.array([value]), np.array([m]), np.array([s]), rule="float", scale32=True)
    product = value * scale                                 # the same IEEE double multiply as C's
    whole = math.trunc(product)
    assert got.tolist() == [whole + (int(math.copysign(1, product)) if abs(product - whole) >= 0.5 else 0)]
