"""A plain, independent int64 / Python-int reference for every kernel in ``pytest_npu.npu.kernels``.

Written to be obviously right rather than fast: explicit loops over output and kernel positions,
integer matmuls in int64 (numpy's integer matmul never goes through floating point), and the
TOSA / TFLite pseudo-code transliterated element by element with Python integers. Double
rounding is computed the gemmlowp way (SaturatingRoundingDoublingHighMul followed by
RoundingDivideByPOT, TFLite's default ``MultiplyByQuantizedMultiplier``), whereas the kernel uses
TOSA's single-expression ``apply_scale_32`` formulation, so the two check each other.
Only for small shapes.
"""

from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ----------------------------------------------------------------------------- scaling

def tosa_apply_scale_32(value: int, multiplier: int, shift: int, double_round: bool) -> int:
    """TOSA pseudo-code ``apply_scale_32`` (REQUIREs checked by the caller's test domain)."""
    rounding = 1 << (shift - 1)
    if double_round and shift > 31:
        rounding += (1 << 30) if value >= 0 else -(1 << 30)
    return (value * multiplier + rounding) >> shift          # Python >> is an arithmetic shift


def _truncating_div(numerator: int, denominator: int) -> int:
    """C integer division (towards zero), which gemmlowp relies on."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values."""
    if a == b == INT32_MIN:
        return INT32_MAX
    product = a * b
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    return _truncating_div(product + nudge, 1 << 31)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: divide by 2**exponent, rounding half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def tflite_double_rounding(value: int, multiplier: int, tosa_shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier (default, double rounding) with TOSA's shift convention.

    TFLite's exponent is ``31 - tosa_shift``: positive -> left shift of the input first.
    """
    exponent = 31 - tosa_shift
    left, right = max(exponent, 0), max(-exponent, 0)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(value * (1 << left), multiplier), right)


def scale_one(value: int, multiplier: int, shift: int, rounding: str, scale32: bool = True) -> int:
    """One element: single rounding by TOSA's formula, double rounding by gemmlowp's."""
    if rounding == "double" and scale32:
        return tflite_double_rounding(value, multiplier, shift)
    return tosa_apply_scale_32(value, multiplier, shift, double_round=False)


def rescale(acc, multiplier, shift, *, ofm_zp, lo, hi, rounding="single", scale32=True) -> np.ndarray:
    """Element by element: scale, add the zero point, saturate to [lo, hi] (int64 result)."""
    acc = np.asarray(acc, dtype=np.int64)
    channels = acc.shape[-1]
    mult = list(np.broadcast_to(np.asarray(multiplier, np.int64).reshape(-1), (channels,)))
    shifts = list(np.broadcast_to(np.asarray(shift, np.int64).reshape(-1), (channels,)))
    out = np.empty(acc.shape, np.int64)
    for index in np.ndindex(*acc.shape):
        c = index[-1]
        r = scale_one(int(acc[index]), int(mult[c]), int(shifts[c]), rounding, scale32) + int(ofm_zp)
        out[index] = min(max(r, int(lo)), int(hi))
    return out


# ----------------------------------------------------------------------------- MAC kernels

def _window_origin(out_index: int, stride: int, pad_before: int) -> int:
    return out_index * stride - pad_before


def _out_size(size, pad_lo, pad_hi, kernel, stride, dilation) -> int:
    return (size + pad_lo + pad_hi - (kernel - 1) * dilation - 1) // stride + 1


def _in_bounds_taps(shape, kernel, stride, dilation, padding):
    """Every (oy, ox, ky, kx, iy, ix) whose input position lies inside the (H, W) map."""
    h, w = shape
    kh, kw = kernel
    top, bottom, left, right = padding
    oh = _out_size(h, top, bottom, kh, stride[0], dilation[0])
    ow = _out_size(w, left, right, kw, stride[1], dilation[1])
    taps = []
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(kh):
                for kx in range(kw):
                    iy = _window_origin(oy, stride[0], top) + ky * dilation[0]
                    ix = _window_origin(ox, stride[1], left) + kx * dilation[1]
                    if 0 <= iy < h and 0 <= ix < w:
                        taps.append((oy, ox, ky, kx, iy, ix))
    return (oh, ow), taps


def conv2d(ifm, weights, bias, *, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), ifm_zp=0,
           weight_zp=0) -> np.ndarray:
    """TOSA CONV2D: positions outside the input are skipped (padding equals the zero point)."""
    x = np.asarray(ifm, np.int64) - int(ifm_zp)
    w = np.asarray(weights, np.int64) - int(weight_zp)
    (oh, ow), taps = _in_bounds_taps(x.shape[1:3], w.shape[:2], stride, dilation, padding)
    acc = np.zeros((x.shape[0], oh, ow, w.shape[3]), np.int64)
    for oy, ox, ky, kx, iy, ix in taps:
        acc[:, oy, ox, :] += x[:, iy, ix, :] @ w[ky, kx]        # (n, cin) @ (cin, cout) in int64
    if bias is not None:
        acc += np.asarray(bias, np.int64)
    return acc


def depthwise_conv2d(ifm, weights, bias, *, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
                     ifm_zp=0, weight_zp=0) -> np.ndarray:
    x = np.asarray(ifm, np.int64) - int(ifm_zp)
    w = np.asarray(weights, np.int64) - int(weight_zp)
    (oh, ow), taps = _in_bounds_taps(x.shape[1:3], w.shape[:2], stride, dilation, padding)
    acc = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.int64)
    for oy, ox, ky, kx, iy, ix in taps:
        acc[:, oy, ox, :] += x[:, iy, ix, :] * w[ky, kx]
    if bias is not None:
        acc += np.asarray(bias, np.int64)
    return acc


def fully_connected(ifm, weights, bias, *, ifm_zp=0, weight_zp=0) -> np.ndarray:
    acc = (np.asarray(ifm, np.int64) - int(ifm_zp)) @ (np.asarray(weights, np.int64) - int(weight_zp))
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return acc


def matmul(a, b, *, a_zp=0, b_zp=0) -> np.ndarray:
    return (np.asarray(a, np.int64) - int(a_zp)) @ (np.asarray(b, np.int64) - int(b_zp))


def pool(ifm, *, kind, kernel, stride, padding=(0, 0, 0, 0), ifm_zp=0) -> np.ndarray:
    """max: raw values of the in-bounds window; avg: sum of (x - zp), padding adding zero."""
    x = np.asarray(ifm, np.int64)
    n, h, w, c = x.shape
    top, bottom, left, right = padding
    oh = _out_size(h, top, bottom, kernel[0], stride[0], 1)
    ow = _out_size(w, left, right, kernel[1], stride[1], 1)
    out = np.zeros((n, oh, ow, c), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = _window_origin(oy, stride[0], top), _window_origin(ox, stride[1], left)
            rows = [y for y in range(y0, y0 + kernel[0]) if 0 <= y < h]
            cols = [xx for xx in range(x0, x0 + kernel[1]) if 0 <= xx < w]
            window = x[:, rows][:, :, cols]                   # (n, len(rows), len(cols), c)
            if kind == "max":
                out[:, oy, ox, :] = window.max(axis=(1, 2))
            else:
                out[:, oy, ox, :] = (window - int(ifm_zp)).sum(axis=(1, 2))
    return out


# ----------------------------------------------------------------------------- element-wise and friends

def elementwise(a, b, *, op, a_zp=0, b_zp=0, a_multiplier=1 << 30, a_shift=30, b_multiplier=1 << 30,
                b_shift=30, rounding="single", left_shift=20) -> np.ndarray:
    """isa.Elementwise per element; ``b`` must already broadcast with numpy rules."""
    a = np.asarray(a, np.int64)
    b = np.broadcast_to(np.asarray(b, np.int64), a.shape)
    out = np.empty(a.shape, np.int64)
    for index in np.ndindex(*a.shape):
        av, bv = int(a[index]) - int(a_zp), int(b[index]) - int(b_zp)
        if op == "mul":
            out[index] = av * bv
            continue
        sa = scale_one(av * (1 << left_shift), a_multiplier, a_shift, rounding)
        sb = scale_one(bv * (1 << left_shift), b_multiplier, b_shift, rounding)
        out[index] = {"add": sa + sb, "sub": sa - sb, "min": min(sa, sb), "max": max(sa, sb)}[op]
    return out


def lut(ifm, table) -> np.ndarray:
    x = np.asarray(ifm)
    out = np.empty(x.shape, np.int8)
    for index in np.ndindex(*x.shape):
        out[index] = table[int(x[index]) + 128]
    return out


def resize_nearest(ifm, scale) -> np.ndarray:
    x = np.asarray(ifm)
    n, h, w, c = x.shape
    out = np.empty((n, h * scale[0], w * scale[1], c), x.dtype)
    for y in range(h * scale[0]):
        for xx in range(w * scale[1]):
            out[:, y, xx, :] = x[:, y // scale[0], xx // scale[1], :]
    return out
