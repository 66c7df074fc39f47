"""Real-valued scales -> TOSA RESCALE (multiplier, shift) pairs.

Used by the compiler to build :class:`pytest_npu.npu.isa.Requant` and by tests to mirror it.
The scheme is TFLite's ``QuantizeMultiplier`` / Vela's ``quantise_scale``: write the scale as
``q * 2**exp`` with ``q`` in [0.5, 1) (frexp), round ``q * 2**31`` half away from zero into a
31-bit mantissa (15-bit for ``bits=16``, TOSA apply_scale_16 for int16 activations), and
``shift = 31 - exp`` (``15 - exp``) so that ``scale ~= multiplier * 2**-shift``.

A scale too small for any shift (``shift > 62``, e.g. a pruned channel whose all-zero weights got
a per-channel scale of 1e-10) gets multiplier 0, as TFLite's ``QuantizeMultiplier`` gives it:
``|acc * multiplier| < 2**62`` then rounds to 0 under every rounding rule, so the channel's
output is the zero point (plus nothing: its accumulator is its bias times that tiny scale),
which is also what a float reference computes. Only scales too *large* to represent are errors.
With ``rule="float"`` (LiteRT's reference fully-connected) the multiplier is the 53-bit
mantissa of the real scale in double precision, ``scale == multiplier * 2**-shift`` exactly.
"""

from __future__ import annotations

import math

import numpy as np

from pytest_npu.errors import CompileError
from pytest_npu.npu.isa import INTEGER_DTYPES, Requant, dtype_range

__all__ = ["quantize_multiplier", "quantize_multipliers", "requant_for", "SHIFT_RANGE", "tflite_int16_multipliers"]

SHIFT_RANGE = (2, 62)   # TOSA apply_scale_32/16 REQUIRE 2 <= shift <= 62
_ZERO_SHIFT = SHIFT_RANGE[1]   # stored with a zero multiplier: the widest accumulator range TOSA allows


def _mantissa_bits(bits: int) -> int:
    if bits not in (16, 32):
        raise CompileError(f"requantisation multiplier width bits={bits!r}; use 32 (int8 activations) "
                           f"or 16 (int16 activations, TOSA apply_scale_16)")
    return bits - 1


def _of(where: str) -> str:
    return f" of {where}" if where else ""


def _shift_error(scale: float, shift: int, where: str) -> CompileError:
    place = f" for {where}" if where else ""
    direction = "small" if shift > SHIFT_RANGE[1] else "large"
    return CompileError(
        f"requantisation scale {scale!r}{place} needs shift {shift}, outside TOSA's "
        f"{SHIFT_RANGE[0]}..{SHIFT_RANGE[1]}: the scale is too {direction} to represent. Check the "
        f"layer's quantisation parameters (input scale * weight scale / output scale); a calibration "
        f"that produced a degenerate scale is the usual cause")


def quantize_multiplier(real_scale: float, bits: int = 32, *, where: str = "") -> tuple[int, int]:
    """``real_scale`` -> ``(multiplier, shift)`` with ``real_scale ~= multiplier / 2**shift``.

    A zero scale (e.g. an all-zero, pruned weight channel) maps to multiplier 0, which requantises
    everything to the output zero point. ``where`` names the layer/channel in error messages.
    """
    _mantissa_bits(bits)          # an unsupported width is refused before the scale is looked at
    scale = float(real_scale)
    place = f" for {where}" if where else ""
    if not math.isfinite(scale) or scale < 0:
        raise CompileError(f"requantisation scale {real_scale!r}{place} must be finite and >= 0; "
                           f"check the layer's quantisation scales (a zero or NaN output scale?)")
    multipliers, shifts = quantize_multipliers([scale], bits, where=where, _scalar=True)
    return multipliers[0], shifts[0]


def quantize_multipliers(scales, bits: int = 32, *, where: str = "", rule: str = "", tflite: bool = False,
                         _scalar: bool = False) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Vectorised :func:`quantize_multiplier` over per-channel scales -> tuples for ``isa.Requant``.

    ``rule="float"``: 53-bit mantissas (the scale exactly). ``tflite=True`` with ``bits=16``:
    TFLite's int16 path, whose 15-bit multiplier is the 31-bit one rounded again
    (:func:`tflite_int16_multipliers`), not the scale rounded once."""
    if rule == "float":
        return _float_multipliers(scales, where)
    if tflite and bits == 16:
        return tflite_int16_multipliers(*quantize_multipliers(scales, 32, where=where))
    mantissa_bits = _mantissa_bits(bits)
    arr = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    if arr.ndim != 1:
        raise CompileError(f"scales{_of(where)} must be a scalar or 1-D per-channel "
                           f"array, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise CompileError(f"requantisation scale {arr[index]!r} at channel {index}"
                           f"{_of(where)} must be finite and >= 0; check the "
                           f"layer's quantisation scales")
    fraction, exponent = np.frexp(arr)
    multiplier = np.floor(np.ldexp(fraction, mantissa_bits) + 0.5).astype(np.int64)
    carry = multiplier == (1 << mantissa_bits)
    multiplier = np.where(carry, multiplier // 2, multiplier)
    shift = mantissa_bits - (exponent.astype(np.int64) + carry)
    negligible = (arr == 0) | (shift > SHIFT_RANGE[1])     # rounds to 0 whatever the accumulator
    multiplier = np.where(negligible, 0, multiplier)
    shift = np.where(negligible, _ZERO_SHIFT, shift)
    too_large = shift < SHIFT_RANGE[0]
    if too_large.any():
        index = int(np.flatnonzero(too_large)[0])
        raise _shift_error(float(arr[index]), int(shift[index]),
                           where if _scalar else f"channel {index}{_of(where)}")
    return tuple(int(m) for m in multiplier), tuple(int(s) for s in shift)


def tflite_int16_multipliers(multipliers, shifts) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """TFLite's ``MultiplyByQuantizedMultiplier(int64_t x, ...)`` (int16 activations): the 31-bit
    multiplier rounded to 15 bits, ``(m + 2**15) >> 16`` (0x7FFF from 0x7FFF0000 up), applied with
    one rounding as TOSA apply_scale_16 with ``shift - 16``."""
    m16 = tuple(0x7FFF if m >= 0x7FFF0000 else (m + (1 << 15)) >> 16 for m in multipliers)
    s16 = tuple(_ZERO_SHIFT if m == 0 else s - 16 for m, s in zip(m16, shifts))
    return m16, s16


def _float_multipliers(scales, where: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    arr = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise CompileError(f"requantisation scale {arr[index]!r} at channel {index}{_of(where)} must be "
                           f"finite and >= 0; check the layer's quantisation scales")
    fraction, exponent = np.frexp(arr)
    multiplier = [int(m) for m in np.ldexp(fraction, 53).astype(np.int64)]   # exact: 53 bits
    shift = [0 if m == 0 else int(53 - e) for m, e in zip(multiplier, exponent)]
    return tuple(multiplier), tuple(shift)


def requant_for(acc_scale, out_scale, out_zp: int, out_dtype: str, clamp: tuple[int, int] | None = None,
                bits: int = 32, *, where: str = "", rule: str = "", tflite: bool = False) -> Requant:
    """The :class:`Requant` mapping an accumulator of real scale ``acc_scale`` (scalar or per
    channel, e.g. ``s_in * s_w``) to a tensor of ``out_scale`` / ``out_zp`` / ``out_dtype``.

    ``clamp`` is a fused activation's ``(lo, hi)`` in the output's quantised domain (as in
    ``ir.Graph``); it is intersected with the dtype's range, which saturation needs anyway.
    ``rule`` is the :data:`isa.REQUANT_RULES` entry the instruction carries ("" = the target's);
    ``tflite`` derives 15-bit multipliers the way TFLite does (see :func:`quantize_multipliers`).
    """
    if out_dtype not in INTEGER_DTYPES:
        raise CompileError(f"output dtype {out_dtype!r}{_of(where)} is not one of "
                           f"{sorted(INTEGER_DTYPES)}")
    out_scale_arr = np.asarray(out_scale, dtype=np.float64)
    if out_scale_arr.size != 1 or not np.isfinite(out_scale_arr).all() or float(out_scale_arr.ravel()[0]) <= 0:
        raise CompileError(f"output scale {out_scale!r}{_of(where)} must be one "
                           f"finite positive number (per-tensor output quantisation)")
    ratio = np.asarray(acc_scale, dtype=np.float64) / float(out_scale_arr.ravel()[0])
    multipliers, shifts = quantize_multipliers(ratio, bits, where=where, rule=rule, tflite=tflite)
    lo, hi = dtype_range(out_dtype)
    zp = int(out_zp)
    if not lo <= zp <= hi:
        raise CompileError(f"output zero point {zp}{_of(where)} is outside "
                           f"{out_dtype} [{lo}, {hi}]")
    if clamp is not None:
        c_lo, c_hi = (int(v) for v in clamp)
        lo, hi = max(lo, c_lo), min(hi, c_hi)
        if lo > hi:
            raise CompileError(f"fused clamp {clamp!r}{_of(where)} does not "
                               f"intersect the {out_dtype} range; the activation bounds are inconsistent "
                               f"with the output quantisation")
    return Requant(multiplier=multipliers, shift=shifts, ofm_zp=zp, lo=lo, hi=hi, rule=rule)
