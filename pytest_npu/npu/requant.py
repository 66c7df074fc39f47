"""Real-valued scales -> TOSA RESCALE (multiplier, shift) pairs.

Used by the compiler to build :class:`pytest_npu.npu.isa.Requant` and by tests to mirror it.
The scheme is TFLite's ``QuantizeMultiplier`` / Vela's ``quantise_scale``: write the scale as
``q * 2**exp`` with ``q`` in [0.5, 1) (frexp), round ``q * 2**31`` half away from zero into a
31-bit mantissa (15-bit for ``bits=16``, TOSA apply_scale_16 for int16 activations), and
``shift = 31 - exp`` (``15 - exp``) so that ``scale ~= multiplier * 2**-shift``.
"""

from __future__ import annotations

import math

import numpy as np

from pytest_npu.errors import CompileError
from pytest_npu.npu.isa import INTEGER_DTYPES, Requant, dtype_range

__all__ = ["quantize_multiplier", "quantize_multipliers", "requant_for", "SHIFT_RANGE"]

SHIFT_RANGE = (2, 62)   # TOSA apply_scale_32/16 REQUIRE 2 <= shift <= 62


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
    mantissa_bits = _mantissa_bits(bits)
    scale = float(real_scale)
    place = f" for {where}" if where else ""
    if not math.isfinite(scale) or scale < 0:
        raise CompileError(f"requantisation scale {real_scale!r}{place} must be finite and >= 0; "
                           f"check the layer's quantisation scales (a zero or NaN output scale?)")
    if scale == 0.0:
        return 0, mantissa_bits
    fraction, exponent = math.frexp(scale)             # scale = fraction * 2**exponent, fraction in [0.5, 1)
    multiplier = math.floor(fraction * (1 << mantissa_bits) + 0.5)   # exact: a power-of-two product
    if multiplier == 1 << mantissa_bits:               # rounded up to 2**31: renormalise
        multiplier //= 2
        exponent += 1
    shift = mantissa_bits - exponent
    if not SHIFT_RANGE[0] <= shift <= SHIFT_RANGE[1]:
        raise _shift_error(scale, shift, where)
    return int(multiplier), int(shift)


def quantize_multipliers(scales, bits: int = 32, *, where: str = "") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Vectorised :func:`quantize_multiplier` over per-channel scales -> tuples for ``isa.Requant``."""
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
    zero = arr == 0
    shift = np.where(zero, mantissa_bits, shift)
    outside = (shift < SHIFT_RANGE[0]) | (shift > SHIFT_RANGE[1])
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise _shift_error(float(arr[index]), int(shift[index]),
                           f"channel {index}{_of(where)}")
    return tuple(int(m) for m in multiplier), tuple(int(s) for s in shift)


def requant_for(acc_scale, out_scale, out_zp: int, out_dtype: str, clamp: tuple[int, int] | None = None,
                bits: int = 32, *, where: str = "") -> Requant:
    """The :class:`Requant` mapping an accumulator of real scale ``acc_scale`` (scalar or per
    channel, e.g. ``s_in * s_w``) to a tensor of ``out_scale`` / ``out_zp`` / ``out_dtype``.

    ``clamp`` is a fused activation's ``(lo, hi)`` in the output's quantised domain (as in
    ``ir.Graph``); it is intersected with the dtype's range, which saturation needs anyway.
    """
    if out_dtype not in INTEGER_DTYPES:
        raise CompileError(f"output dtype {out_dtype!r}{_of(where)} is not one of "
                           f"{sorted(INTEGER_DTYPES)}")
    out_scale_arr = np.asarray(out_scale, dtype=np.float64)
    if out_scale_arr.size != 1 or not np.isfinite(out_scale_arr).all() or float(out_scale_arr.ravel()[0]) <= 0:
        raise CompileError(f"output scale {out_scale!r}{_of(where)} must be one "
                           f"finite positive number (per-tensor output quantisation)")
    ratio = np.asarray(acc_scale, dtype=np.float64) / float(out_scale_arr.ravel()[0])
    multipliers, shifts = quantize_multipliers(ratio, bits, where=where)
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
    return Requant(multiplier=multipliers, shift=shifts, ofm_zp=zp, lo=lo, hi=hi)
