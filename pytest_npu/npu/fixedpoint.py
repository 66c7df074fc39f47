"""gemmlowp / TFLite fixed-point arithmetic on numpy int64 arrays holding int32 (or int16) values.

TFLite's integer reference kernels (``tensorflow/lite/kernels/internal/common.h`` and gemmlowp's
``fixedpoint/fixedpoint.h``) define their results by these primitives, rounding quirks included:
``SaturatingRoundingDoublingHighMul`` truncates toward zero after a sign-dependent nudge,
``RoundingDivideByPOT`` rounds half away from zero. The emulator's TFLite requantisation rule,
its softmax and the compiler's TFLite-exact lookup tables are built from them, so each is
written once here and tested against LiteRT's reference kernels (``tests/npu``).

Every function is vectorised: arguments broadcast, results are int64 arrays whose values fit the
C type the original uses. C's wrap-around on int32 overflow is undefined behaviour in TFLite, and
none of the callers can reach it with valid parameters.
"""

from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def _trunc_shift(value: np.ndarray, bits: int) -> np.ndarray:
    """C integer division by ``2**bits`` (truncation toward zero)."""
    return np.where(value >= 0, value >> bits, -((-value) >> bits))


def srdhm(a, b, bits: int = 32) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` for int32 (``bits=32``) or int16 raw values:
    ``(a*b + nudge) / 2**(bits-1)`` truncated, nudge ``2**(bits-2)`` or ``1 - 2**(bits-2)`` by the
    sign of ``a*b``; ``min * min`` saturates to ``max``."""
    a, b = _i64(a), _i64(b)
    product = a * b
    half = 1 << (bits - 2)
    nudged = product + np.where(product >= 0, half, 1 - half)
    result = _trunc_shift(nudged, bits - 1)
    lowest = -(1 << (bits - 1))
    return np.where((a == lowest) & (b == lowest), (1 << (bits - 1)) - 1, result)


def rdbpot(x, exponent) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero."""
    x, exponent = _i64(x), _i64(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_mul_by_pot(x, exponent: int, bits: int = 32) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>``: a saturating left shift for
    ``exponent > 0``, :func:`rdbpot` for ``exponent < 0``."""
    x = _i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rdbpot(x, -exponent)
    threshold = (1 << (bits - 1 - exponent)) - 1
    lowest, highest = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.where(x > threshold, highest, np.where(x < -threshold, lowest, x << exponent))


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLite's int32 ``MultiplyByQuantizedMultiplier(x, multiplier, shift)`` (double rounding):
    ``RoundingDivideByPOT(SRDHM(x * 2**max(shift, 0), multiplier), max(-shift, 0))``. ``shift`` is
    TFLite's exponent (``scale = multiplier * 2**(shift - 31)``), positive for scales >= 1."""
    x, multiplier, shift = _i64(x), _i64(multiplier), _i64(shift)
    left = np.maximum(shift, 0)
    return rdbpot(srdhm(x << left, multiplier), np.maximum(-shift, 0))


def rounding_half_sum(a, b) -> np.ndarray:
    """gemmlowp ``RoundingHalfSum`` for int32: ``(a + b + sign) / 2`` truncated."""
    total = _i64(a) + _i64(b)
    return _trunc_shift(total + np.where(total >= 0, 1, -1), 1)


# ---------------------------------------------------------------------------------------- Q formats
def _one(integer_bits: int) -> int:
    """``FixedPoint<int32, integer_bits>::One()``."""
    return INT32_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def rescale(x, src_bits: int, dst_bits: int) -> np.ndarray:
    """gemmlowp ``Rescale<dst_bits>`` of a ``FixedPoint<int32, src_bits>`` raw value."""
    return saturating_rounding_mul_by_pot(x, src_bits - dst_bits)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: np.ndarray) -> np.ndarray:
    """exp(a) for Q0.31 ``a`` in [-1/4, 0): a Taylor expansion around -1/8 (gemmlowp)."""
    constant_term = 1895147668                  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = a + (1 << 28)                           # a + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = saturating_rounding_mul_by_pot(x4, -2)
    tail = saturating_rounding_mul_by_pot(srdhm(x4_over_4 + x3, constant_1_over_3) + x2, -1)
    return constant_term + srdhm(constant_term, x + tail)


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
               (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values`` of a ``FixedPoint<int32, integer_bits>`` raw value
    ``a <= 0``; the result is Q0.31."""
    a = _i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = np.where((remainder & bit) != 0, srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1`` of a Q0.31 raw value: Newton-Raphson with
    three iterations in Q2.29; the result is Q0.31."""
    a = _i64(a)
    half_denominator = rounding_half_sum(a, INT32_MAX)
    constant_48_over_17, constant_neg_32_over_17 = 1515870810, -1010580540
    one_f2 = _one(2)
    x = constant_48_over_17 + srdhm(half_denominator, constant_neg_32_over_17)
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = one_f2 - half_denominator_times_x
        x = x + rescale(srdhm(x, one_minus), 2 + 2, 2)
    return rescale(x, 2 - 1, 0)                  # ExactMulByPot<-1> then Rescale<0>


def count_leading_zeros32(x) -> np.ndarray:
    """``CountLeadingZeros`` of int32 values read as uint32 (32 for zero)."""
    u = (_i64(x) & 0xFFFFFFFF).astype(np.float64)      # exact: below 2**53
    _, bit_length = np.frexp(u)                           # u = f * 2**bit_length, f in [0.5, 1)
    return 32 - bit_length.astype(np.int64)


def get_reciprocal(x, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetReciprocal``: ``(Q0.31 1/x scaled into [0.5, 1], num_bits_over_unit)`` for a
    ``FixedPoint<int32, integer_digits>`` raw value ``x > 0``."""
    x = _i64(x)
    headroom_plus_one = count_leading_zeros32(x)
    num_bits_over_unit = integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = shifted - (1 << 31)       # uint32 arithmetic read back as int32
    shifted_sum_minus_one = np.where(shifted_sum_minus_one > INT32_MAX, shifted_sum_minus_one - (1 << 32),
                                     shifted_sum_minus_one)
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


def int16_lut(function, input_min: float, input_max: float) -> np.ndarray:
    """TFLite's ``gen_lut<double, int16_t, int16_t>`` with output range [-1, 1]: 512 samples of
    ``function`` in Q0.15, each biased by half the interpolation error at its midpoint, plus the
    end point (513 values) for :func:`int16_table_lookup`'s slope."""
    steps = 512
    step = (input_max - input_min) / steps
    scale = 65536.0 / 2.0

    def rnd(v: float) -> float:                     # TfLiteRound: half away from zero
        return float(np.copysign(np.floor(abs(v) + 0.5), v))

    table = np.empty(steps + 1, np.int64)
    for i in range(steps):
        val = function(input_min + i * step)
        mid = function(input_min + i * step + step / 2)
        nxt = function(input_min + (i + 1) * step)
        sample = rnd(val * scale)
        interp = rnd((nxt * scale + rnd(val * scale)) / 2)
        bias = rnd((interp - rnd(mid * scale)) / 2)
        table[i] = min(max(sample - bias, INT16_MIN), INT16_MAX)
    table[steps] = min(max(rnd(function(input_max) * scale), INT16_MIN), INT16_MAX)
    return table


def int16_table_lookup(value, table: np.ndarray) -> np.ndarray:
    """TFLite's ``generic_int16_table_lookup``: the entry of the top 9 bits, plus the slope to the
    next one times the low 7 bits, rounded."""
    value = _i64(value)
    index = 256 + (value >> 7)
    offset = value & 0x7F
    base = table[index]
    slope = table[index + 1] - base
    return base + ((slope * offset + 64) >> 7)


def softmax_int16(x, input_multiplier: int, input_left_shift: int) -> np.ndarray:
    """TFLite's reference ``SoftmaxInt16`` over the last axis of int16 ``x``: output Q0.15 in
    [0, 32767] (scale 1/32768, zero point 0)."""
    x = _i64(x)
    exp_lut, one_over_lut = _int16_luts()
    diff = x - x.max(axis=-1, keepdims=True)
    scaled = multiply_by_quantized_multiplier(diff, input_multiplier, input_left_shift)
    sym = np.clip(scaled + 32767, INT16_MIN, INT16_MAX)
    exps = int16_table_lookup(sym, exp_lut)
    total = exps.sum(axis=-1, keepdims=True)
    headroom_plus_one = count_leading_zeros32(total)
    shifted = ((total << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    sym_sum = np.clip(shifted - ((1 << 15) + (1 << 16)), INT16_MIN, INT16_MAX)
    reciprocal = int16_table_lookup(sym_sum, one_over_lut)
    right_shift = 31 - headroom_plus_one
    result = (exps * reciprocal + (np.int64(1) << (right_shift - 1))) >> right_shift
    return np.clip(result, 0, INT16_MAX)


_LUTS: list[np.ndarray] = []


def _int16_luts() -> list[np.ndarray]:
    """exp on [-10, 0] and 1/(1+x) on [0, 1], as the int16 softmax's Prepare generates them."""
    if not _LUTS:
        import math

        _LUTS.append(int16_lut(math.exp, -10.0, 0.0))
        _LUTS.append(int16_lut(lambda v: 1.0 / (1.0 + v), 0.0, 1.0))
    return _LUTS
