"""Lookup tables and parameters computed exactly as TFLite's reference kernels compute them.

An int8 activation depends on one int8 input value, so TFLite's algorithm for it -- a float32
table (LOGISTIC, TANH), a 16-bit fixed-point pipeline (HARD_SWISH) -- is reproduced bit for bit by
running it on all 256 inputs at compile time: the NPU's LUT instruction then returns exactly what
LiteRT's ``BUILTIN_REF`` kernels return. Softmax's exponential depends only on the difference to
the row maximum (-255..0), so its table is built the same way and the SOFTMAX instruction does
the rest (``npu.isa.Softmax``). Sources: ``tensorflow/lite/kernels/activations.cc`` (Prepare
functions), ``internal/common.h`` (``LUTPopulateInt8``), ``internal/reference/hard_swish.h``,
``internal/quantization_util.cc`` and gemmlowp's ``fixedpoint.h`` (``npu.fixedpoint``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..npu import fixedpoint as fp

_INT8 = np.arange(-128, 128, dtype=np.int64)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``(multiplier, exponent)`` with ``real ~= multiplier *
    2**(exponent - 31)``; zero and scales below ``2**-32`` give ``(0, 0)``."""
    if real == 0.0:
        return 0, 0
    fraction, exponent = math.frexp(real)
    multiplier = math.floor(fraction * (1 << 31) + 0.5)      # TfLiteRound of a positive value
    if multiplier == 1 << 31:
        multiplier //= 2
        exponent += 1
    if exponent < -31:
        return 0, 0
    return multiplier, exponent


def _round_half_away32(x: np.ndarray) -> np.ndarray:
    """``std::round`` on float32 values, without the ``floor(x + 0.5)`` error below one half."""
    whole = np.trunc(x)
    return whole + np.copysign((np.abs(x - whole) >= np.float32(0.5)).astype(np.float32), x)


def float_lut(function: Callable[[np.ndarray], np.ndarray], in_scale: float, in_zp: int, out_scale: float,
              out_zp: int, lo: int = -128, hi: int = 127) -> tuple[int, ...]:
    """TFLite ``LUTPopulateInt8``: every step in float32 (dequantise, the function, multiply by
    ``1 / out_scale``, round half away, add the zero point), clamped to ``[lo, hi]``. The table is
    indexed by ``x + 128`` (npu.isa.Lut)."""
    f32 = np.float32
    dequantized = f32(in_scale) * (_INT8 - int(in_zp)).astype(f32)
    transformed = function(dequantized.astype(f32)).astype(f32)
    inverse = f32(1.0) / f32(out_scale)
    rescaled = _round_half_away32((transformed * inverse).astype(f32))
    quantized = (rescaled + f32(out_zp)).astype(np.int64)
    return tuple(int(v) for v in np.clip(quantized, max(lo, -128), min(hi, 127)))


def sigmoid32(x: np.ndarray) -> np.ndarray:
    """``1.0f / (1.0f + std::exp(-x))`` in float32."""
    one = np.float32(1.0)
    with np.errstate(over="ignore"):          # exp(88+) is inf in float32 too: the result is 0
        return (one / (one + np.exp(-x, dtype=np.float32))).astype(np.float32)


def tanh32(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, dtype=np.float32)


def _int16_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier`` then ``DownScaleInt32ToInt16Multiplier``."""
    multiplier, exponent = quantize_multiplier(real)
    if multiplier >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1, exponent
    return (multiplier + (1 << 15)) >> 16, exponent


def _saturating_left_shift16(x: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(x * (1 << amount), fp.INT16_MIN, fp.INT16_MAX)


def hard_swish_lut(in_scale: float, in_zp: int, out_scale: float, out_zp: int, lo: int = -128,
                   hi: int = 127) -> tuple[int, ...]:
    """TFLite's quantised HARD_SWISH (``reference_ops::HardSwish``) on all 256 int8 inputs, then
    clamped to ``[lo, hi]``. Raises ValueError where TFLite's Prepare refuses the scales."""
    f32 = np.float32
    hires_input_scale = f32(1.0 / 128.0) * f32(in_scale)
    out_mult, out_exp = _int16_multiplier(float(f32(hires_input_scale / f32(out_scale))))
    if out_exp > 0:
        raise ValueError(f"hard-swish output scale {out_scale:.6g} is over 128x smaller than the input's "
                         f"{in_scale:.6g} (TFLite's kernel refuses it too)")
    relu_mult, relu_exp = _int16_multiplier(float(f32(hires_input_scale / f32(3.0 / 32768.0))))
    value = _INT8 - int(in_zp)
    hires = value * (1 << 7)
    preshift_out = fp.srdhm(hires, out_mult, bits=16)
    reluish = hires
    if relu_exp > 0:
        reluish = _saturating_left_shift16(reluish, relu_exp - 1)
    reluish = fp.srdhm(reluish, relu_mult, bits=16)
    if relu_exp > 0:
        reluish = _saturating_left_shift16(reluish, 1)
    if relu_exp < 0:
        reluish = fp.rdbpot(reluish, -relu_exp)
    reluish = (reluish + (1 << 15)) >> 1
    product = reluish * preshift_out                    # SaturatingDoublingHighMul: truncating
    doubled = np.where(product >= 0, product >> 15, -((-product) >> 15))
    doubled = np.where((reluish == fp.INT16_MIN) & (preshift_out == fp.INT16_MIN), fp.INT16_MAX, doubled)
    out = fp.rdbpot(doubled, -out_exp) + int(out_zp)
    return tuple(int(v) for v in np.clip(np.clip(out, -128, 127), lo, hi))


def softmax_exp_table(beta: float, in_scale: float) -> tuple[int, ...]:
    """The Q0.31 exp of every difference ``d`` = -255..0 to the row maximum, as TFLite's
    reference int8 softmax computes it (``PreprocessSoftmaxScaling`` with 5 integer bits,
    ``MultiplyByQuantizedMultiplierGreaterThanOne``, ``exp_on_negative_values``), 0 below
    ``diff_min`` where TFLite skips the term."""
    integer_bits = 5
    if not float(np.float32(beta)) * float(np.float32(in_scale)) * (1 << (31 - integer_bits)) > 1.0:
        raise ValueError(f"softmax input scale {in_scale:.3g} x beta {beta} is below 2**-26 "
                         "(TFLite's kernel refuses it too)")
    real = min(float(np.float32(beta)) * float(np.float32(in_scale)) * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << left_shift))
    diff = np.arange(-255, 1, dtype=np.int64)
    rescaled = fp.srdhm(diff << left_shift, multiplier)
    exps = fp.exp_on_negative_values(np.where(diff >= -radius, rescaled, 0), integer_bits)
    return tuple(int(v) for v in np.where(diff >= -radius, exps, 0))
