"""Exact integer kernels of the emulated NPU (the semantics are the docstrings of ``npu/isa.py``).

Every function takes numpy arrays *as stored* (int8 / uint8 / int16, batch first) and returns
exact results: MAC kernels return the int64 accumulator, :func:`rescale` turns it into the output
dtype with TOSA RESCALE arithmetic. The emulator calls these on views of its memory buffers; the
compiler never does. ``tests/npu/reference.py`` re-implements each one plainly in int64.

Why the GEMMs run in floating point: numpy's integer matmul does not use BLAS and is ~50x slower
than float32 BLAS. Integer-valued float arithmetic is exact as long as every intermediate value
is an integer within the mantissa (2**24 for float32, 2**53 for float64), so we split the
accumulation depth into chunks whose worst-case partial sums stay inside it (see
:func:`_gemm_plan`) and add the exact chunk results in int64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pytest_npu.errors import EmulatorFault
from pytest_npu.npu import fixedpoint
from pytest_npu.npu.isa import DEFAULT_RULE, DTYPES, INTEGER_DTYPES, REQUANT_RULES, dtype_range

__all__ = [
    "conv2d", "depthwise_conv2d", "fully_connected", "matmul", "pool", "rescale",
    "elementwise", "lut", "resize", "resize_nearest", "softmax", "apply_scale", "Requantizer",
    "prepare_mac", "rule_of",
]

_FEATURE_DTYPES = (np.int8, np.uint8, np.int16)
_F32_EXACT = 1 << 24          # every integer of magnitude <= 2**24 is a float32
_F64_EXACT = 1 << 53          # ... <= 2**53 is a float64
_MIN_F32_CHUNK = 256          # below this many products per chunk, float64 (2x slower) is cheaper
_ELEMENTWISE_LEFT_SHIFT = 20  # isa.Elementwise: inputs are scaled by 2**20 before their rescale


def rule_of(rounding: str) -> str:
    """A requantisation rule (isa.REQUANT_RULES) from a rule or a target's ``rounding``."""
    rule = DEFAULT_RULE.get(rounding, rounding)
    if rule not in REQUANT_RULES:
        raise EmulatorFault(f"rounding={rounding!r}; use one of {sorted(set(REQUANT_RULES) | set(DEFAULT_RULE))}",
                            operand="rounding", kind="requant")
    return rule


# ----------------------------------------------------------------------------- validation helpers

def _int_array(x, operand: str, dtypes=_FEATURE_DTYPES) -> np.ndarray:
    """Check an integer operand's dtype up front, so a wrong buffer view is named, not wrapped."""
    arr = np.asarray(x)
    if arr.dtype.type not in dtypes:
        allowed = "/".join(np.dtype(d).name for d in dtypes)
        raise EmulatorFault(
            f"operand {operand!r} has dtype {arr.dtype}, but this kernel takes {allowed}; "
            f"check the instruction's operand dtype", operand=operand, kind="dtype")
    return arr


def _check_ndim(arr: np.ndarray, ndim: int, operand: str, layout: str) -> None:
    if arr.ndim != ndim:
        raise EmulatorFault(f"operand {operand!r} has shape {arr.shape}, expected {layout}",
                            operand=operand, kind="shape")


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < minimum:
        raise EmulatorFault(f"{name}={value!r} must be two integers >= {minimum}", operand=name,
                            kind="shape")
    return pair  # type: ignore[return-value]


def _padding(value) -> tuple[int, int, int, int]:
    pads = tuple(int(v) for v in value)
    if len(pads) != 4 or min(pads) < 0:
        raise EmulatorFault(f"padding={value!r} must be four integers >= 0 (top, bottom, left, right)",
                            operand="padding", kind="shape")
    return pads  # type: ignore[return-value]


def _bias(bias, channels: int) -> np.ndarray | None:
    if bias is None:
        return None
    b = _int_array(bias, "bias", (np.int32, np.int64))
    if b.shape != (channels,):
        raise EmulatorFault(f"operand 'bias' has shape {b.shape}, expected ({channels},)",
                            operand="bias", kind="shape")
    return b.astype(np.int64)


# ----------------------------------------------------------------------------- exact GEMM

def _dtype_bound(arr: np.ndarray, zp: int) -> int:
    """Largest |x - zp| the dtype allows: free to compute, used before looking at data."""
    info = np.iinfo(arr.dtype)
    return max(abs(int(info.min) - zp), abs(int(info.max) - zp))


def _data_bound(arr: np.ndarray, zp: int) -> int:
    """Largest |x - zp| actually present (one min/max pass); 0 for an empty array."""
    if arr.size == 0:
        return 0
    return max(abs(int(arr.min()) - zp), abs(int(arr.max()) - zp))


def _gemm_plan(depth: int, bound_x: int, bound_w: int) -> tuple[type, int]:
    """Pick the float dtype and the chunk of the accumulation depth that keep a GEMM exact.

    Exactness argument: each product satisfies |x*w| <= bx*bw, so any partial sum of at most
    ``chunk`` products -- whatever order or blocking BLAS uses, with or without FMA -- has
    magnitude <= chunk*bx*bw. If that is <= 2**24 (float32) or 2**53 (float64), every operand and
    every intermediate is an integer the format represents exactly, so no addition or
    multiplication ever rounds. Hence chunk = floor(2**24 / (bx*bw)); int8 x int8 with zero
    points 0 gives 128*128 -> 1024. The chunk results (exact integers) are added in int64.
    int16 activations (bx up to 65535 with a zero point) would need chunks of ~2 in float32, so
    they use float64: 2**53 / (65535*255) is ~5e8, i.e. never split in practice.
    """
    product = bound_x * bound_w
    if product == 0:
        return np.float32, max(depth, 1)
    chunk32 = _F32_EXACT // product
    if chunk32 >= depth or chunk32 >= _MIN_F32_CHUNK:
        return np.float32, chunk32
    return np.float64, _F64_EXACT // product


def _centred(arr: np.ndarray, zp: int, dtype: type) -> np.ndarray:
    """``arr - zp`` in ``dtype`` in one pass (exact: |arr - zp| < 2**17)."""
    if zp == 0:
        return arr.astype(dtype)
    return np.subtract(arr, dtype(zp), dtype=dtype)


def _chunked_matmul(lhs: np.ndarray, rhs: np.ndarray, chunk: int) -> np.ndarray:
    """``lhs @ rhs`` of integer-valued floats, split along K so each BLAS call stays exact."""
    depth = lhs.shape[-1]
    if chunk >= depth:
        return np.matmul(lhs, rhs).astype(np.int64)
    acc = np.matmul(lhs[..., :chunk], rhs[..., :chunk, :]).astype(np.int64)
    for start in range(chunk, depth, chunk):   # a loop over depth chunks (1-2 for real layers), not pixels
        acc += np.matmul(lhs[..., start:start + chunk], rhs[..., start:start + chunk, :]).astype(np.int64)
    return acc


def _acc_bits(*arrays: np.ndarray) -> int:
    """TOSA accumulator width: int32 for 8-bit operands, int48 once an operand is 16-bit."""
    return 48 if any(a.dtype.itemsize > 1 for a in arrays) else 32


def _check_accumulator(acc: np.ndarray, bound: int, bits: int, what: str) -> None:
    """TOSA makes accumulator overflow an error; check the data only if the a-priori bound allows it."""
    if bound < (1 << (bits - 1)) or acc.size == 0:
        return
    peak = int(np.abs(acc).max())
    if peak >= (1 << (bits - 1)):
        raise EmulatorFault(
            f"{what}: accumulator reaches {peak}, beyond the int{bits} accumulator; reduce the "
            f"accumulation depth (split the layer) or the value ranges", operand="ofm", kind="overflow")


class _GemmPlan(NamedTuple):
    """How to run one exact GEMM: float dtype, depth chunk, and the per-product value bound."""

    dtype: type
    chunk: int
    product_bound: int


def _plan_gemm(lhs: np.ndarray, rhs: np.ndarray, lhs_zp: int, rhs_zp: int, depth: int) -> _GemmPlan:
    """Bound |x - zx| and |w - zw| by the dtypes (free); look at the data only if that forces chunks.

    Zero points are subtracted while casting to float rather than folded algebraically
    (sum x*w - zw*sum x - zx*sum w + K*zx*zw): the subtraction rides along the cast BLAS needs
    anyway (no extra pass), padding becomes plain zeros in the centred domain (exactly TOSA's
    "padding contributes 0"), and no row-sum pass over the im2col matrix is needed. The price is a
    larger bound for asymmetric inputs (255 instead of 128), which only shortens the chunks.
    """
    bound_x, bound_w = _dtype_bound(lhs, lhs_zp), _dtype_bound(rhs, rhs_zp)
    if bound_x * bound_w * depth > _F32_EXACT:
        bound_x, bound_w = _data_bound(lhs, lhs_zp), _data_bound(rhs, rhs_zp)
    dtype, chunk = _gemm_plan(depth, bound_x, bound_w)
    return _GemmPlan(dtype, chunk, bound_x * bound_w)


def _finish(acc: np.ndarray, bias: np.ndarray | None, depth: int, plan: _GemmPlan, bits: int,
            what: str) -> np.ndarray:
    """Add the int32 bias in int64 (it may exceed 2**24) and enforce the accumulator width."""
    bias_peak = 0
    if bias is not None:
        acc += bias
        bias_peak = int(np.abs(bias).max()) if bias.size else 0
    _check_accumulator(acc, depth * plan.product_bound + bias_peak, bits, what)
    return acc


# ----------------------------------------------------------------------------- windows

def _out_size(size: int, pad_lo: int, pad_hi: int, extent: int, stride: int, axis: str) -> int:
    span = size + pad_lo + pad_hi - extent
    if span < 0:
        raise EmulatorFault(
            f"the window ({extent} {axis}, dilated) is larger than the padded input "
            f"({size}+{pad_lo}+{pad_hi}); check kernel, dilation and padding", operand="ifm",
            kind="shape")
    return span // stride + 1


def _pad_centred(ifm: np.ndarray, zp: int, padding: tuple[int, int, int, int], dtype) -> np.ndarray:
    """NHWC ``ifm - zp`` in ``dtype`` surrounded by zeros: padding equals the zero point (TOSA)."""
    top, bottom, left, right = padding
    n, h, w, c = ifm.shape
    if not any(padding):
        return _centred(ifm, zp, dtype)
    out = np.zeros((n, h + top + bottom, w + left + right, c), dtype)
    np.subtract(ifm, zp, out=out[:, top:top + h, left:left + w, :], dtype=dtype, casting="unsafe")
    return out


def _taps(padded: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
          dilation: tuple[int, int], out_hw: tuple[int, int]) -> Iterator[tuple[int, int, np.ndarray]]:
    """For each kernel position, the strided (N, OH, OW, C) view it multiplies: a loop over the
    KH*KW taps, each one a whole-tensor numpy operation."""
    (kh, kw), (sy, sx), (dy, dx), (oh, ow) = kernel, stride, dilation, out_hw
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dy, kx * dx
            yield ky, kx, padded[:, y0:y0 + sy * (oh - 1) + 1:sy, x0:x0 + sx * (ow - 1) + 1:sx, :]


def _im2col(padded: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """(N*OH*OW, KH*KW*C) patches in (ky, kx, c) order, matching weights.reshape(-1, Cout).

    sliding_window_view gives (N, OH', OW', C, eKH, eKW); slicing applies stride and dilation,
    the transpose puts C innermost (contiguous in NHWC) so the single copy streams rows.
    """
    (kh, kw), (sy, sx), (dy, dx), (oh, ow) = kernel, stride, dilation, out_hw
    n, c = padded.shape[0], padded.shape[3]
    if (kh, kw) == (1, 1) and (sy, sx) == (1, 1):
        return padded[:, :oh, :ow, :].reshape(n * oh * ow, c)
    extent = ((kh - 1) * dy + 1, (kw - 1) * dx + 1)
    windows = sliding_window_view(padded, extent, axis=(1, 2))
    windows = windows[:, :(oh - 1) * sy + 1:sy, :(ow - 1) * sx + 1:sx, :, ::dy, ::dx]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c)


def _geometry(ifm: np.ndarray, kernel, stride, dilation, padding):
    kernel = _pair(kernel, "kernel", 1)
    stride = _pair(stride, "stride", 1)
    dilation = _pair(dilation, "dilation", 1)
    padding = _padding(padding)
    oh = _out_size(ifm.shape[1], padding[0], padding[1], (kernel[0] - 1) * dilation[0] + 1, stride[0], "rows")
    ow = _out_size(ifm.shape[2], padding[2], padding[3], (kernel[1] - 1) * dilation[1] + 1, stride[1], "cols")
    return kernel, stride, dilation, padding, (oh, ow)


# ----------------------------------------------------------------------------- MAC kernels

def conv2d(ifm, weights, bias, *, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), ifm_zp=0,
           weight_zp=0) -> np.ndarray:
    """TOSA CONV2D accumulator: ifm (N,H,W,Ci), weights (KH,KW,Ci,Co), bias (Co,) -> int64 (N,OH,OW,Co).

    im2col (one copy) + one exact BLAS GEMM, see :func:`_gemm_plan` and :func:`_plan_gemm`.
    """
    ifm = _int_array(ifm, "ifm")
    weights = _int_array(weights, "weights", (np.int8, np.uint8))
    _check_ndim(ifm, 4, "ifm", "(N, H, W, Cin)")
    _check_ndim(weights, 4, "weights", "(KH, KW, Cin, Cout)")
    kh, kw, cin, cout = weights.shape
    if ifm.shape[3] != cin:
        raise EmulatorFault(f"ifm has {ifm.shape[3]} channels but weights expect {cin} "
                            f"(weights {weights.shape}, ifm {ifm.shape})", operand="weights", kind="shape")
    bias64 = _bias(bias, cout)
    (kh, kw), stride, dilation, padding, (oh, ow) = _geometry(ifm, (kh, kw), stride, dilation, padding)
    ifm_zp, weight_zp = int(ifm_zp), int(weight_zp)
    depth = kh * kw * cin
    plan = _plan_gemm(ifm, weights, ifm_zp, weight_zp, depth)
    patches = _im2col(_pad_centred(ifm, ifm_zp, padding, plan.dtype), (kh, kw), stride, dilation, (oh, ow))
    acc = _chunked_matmul(patches, _centred(weights.reshape(depth, cout), weight_zp, plan.dtype), plan.chunk)
    acc = _finish(acc, bias64, depth, plan, _acc_bits(ifm, weights), "CONV2D")
    return acc.reshape(ifm.shape[0], oh, ow, cout)


def depthwise_conv2d(ifm, weights, bias, *, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
                     ifm_zp=0, weight_zp=0) -> np.ndarray:
    """TOSA DEPTHWISE_CONV2D accumulator: ifm (N,H,W,C), weights (KH,KW,C) -> int64 (N,OH,OW,C).

    No GEMM exists here (one tap per channel), so it is a multiply-add per kernel tap over the
    whole tensor in an integer dtype wide enough for the worst case (int32 when it fits, else int64).
    """
    ifm = _int_array(ifm, "ifm")
    weights = _int_array(weights, "weights", (np.int8, np.uint8))
    _check_ndim(ifm, 4, "ifm", "(N, H, W, C)")
    _check_ndim(weights, 3, "weights", "(KH, KW, C)")
    kh, kw, channels = weights.shape
    if ifm.shape[3] != channels:
        raise EmulatorFault(f"ifm has {ifm.shape[3]} channels but depthwise weights have {channels}",
                            operand="weights", kind="shape")
    bias64 = _bias(bias, channels)
    kernel, stride, dilation, padding, out_hw = _geometry(ifm, (kh, kw), stride, dilation, padding)
    ifm_zp, weight_zp = int(ifm_zp), int(weight_zp)
    product = _dtype_bound(ifm, ifm_zp) * _data_bound(weights, weight_zp)
    work = np.int32 if kh * kw * product < (1 << 31) else np.int64
    padded = _pad_centred(ifm, ifm_zp, padding, work)
    w = weights.astype(work) - work(weight_zp)
    acc = np.zeros((ifm.shape[0], *out_hw, channels), work)
    for ky, kx, tap in _taps(padded, kernel, stride, dilation, out_hw):
        acc += tap * w[ky, kx]
    plan = _GemmPlan(work, kh * kw, product)
    return _finish(acc.astype(np.int64), bias64, kh * kw, plan, _acc_bits(ifm, weights), "DEPTHWISE_CONV2D")


def fully_connected(ifm, weights, bias, *, ifm_zp=0, weight_zp=0) -> np.ndarray:
    """ifm (N,M,K) (any leading dims) x constant weights (K,Nout) + bias -> int64 (N,M,Nout)."""
    ifm = _int_array(ifm, "ifm")
    weights = _int_array(weights, "weights", (np.int8, np.uint8))
    _check_ndim(weights, 2, "weights", "(K, Nout)")
    if ifm.ndim < 2 or ifm.shape[-1] != weights.shape[0]:
        raise EmulatorFault(f"ifm {ifm.shape} does not end in K={weights.shape[0]} of weights "
                            f"{weights.shape}", operand="ifm", kind="shape")
    bias64 = _bias(bias, weights.shape[1])
    lead, depth = ifm.shape[:-1], ifm.shape[-1]
    ifm2d, ifm_zp, weight_zp = ifm.reshape(-1, depth), int(ifm_zp), int(weight_zp)
    plan = _plan_gemm(ifm2d, weights, ifm_zp, weight_zp, depth)
    acc = _chunked_matmul(_centred(ifm2d, ifm_zp, plan.dtype), _centred(weights, weight_zp, plan.dtype),
                          plan.chunk)
    acc = _finish(acc, bias64, depth, plan, _acc_bits(ifm, weights), "FULLY_CONNECTED")
    return acc.reshape(*lead, weights.shape[1])


def matmul(a, b, *, a_zp=0, b_zp=0) -> np.ndarray:
    """Two activations: a (N,M,K) x b (N,K,P) -> int64 (N,M,P), batched BLAS, exact."""
    a = _int_array(a, "a")
    b = _int_array(b, "b")
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
        raise EmulatorFault(f"matmul operands {a.shape} x {b.shape}: a must be (..., M, K) and "
                            f"b (..., K, P) with the same K", operand="b", kind="shape")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise EmulatorFault(f"matmul batch dims of a {a.shape} and b {b.shape} do not broadcast",
                            operand="b", kind="shape") from None
    a_zp, b_zp = int(a_zp), int(b_zp)
    depth = a.shape[-1]
    plan = _plan_gemm(a, b, a_zp, b_zp, depth)
    acc = _chunked_matmul(_centred(a, a_zp, plan.dtype), _centred(b, b_zp, plan.dtype), plan.chunk)
    return _finish(acc, None, depth, plan, _acc_bits(a, b), "MATMUL")


def prepare_mac(kind: str, batch: int, ifm_shape, ifm_dtype: str, weights_shape, weights_dtype: str, *,
                stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), ifm_zp=0, weight_zp=0,
                fixed_weights: bool = False):
    """A kernel for one MAC instruction's fixed shapes, or None when the dtypes need chunking.

    ``kind`` is "conv2d", "depthwise" or "fc"; shapes are per sample, as the instruction gives
    them (validated by the emulator). The returned ``run(ifm, weights) -> (acc, bound)`` reuses
    buffers made here -- the zero-bordered padded input, the im2col matrix (a fixed
    sliding-window view of it is copied, no index arithmetic per run), the accumulator -- and
    returns the float32 accumulator without bias plus the dtype-derived bound on ``|acc|``. It
    exists only when that bound is <= 2**24, so one float32 BLAS call (no depth chunks) is exact
    for every input the dtypes allow; ``conv2d``/``depthwise_conv2d``/``fully_connected`` stay
    the general (chunked, validating) versions. ``fixed_weights``: the caller guarantees the
    same weight values on every call (constants), so they are converted on the first call only.
    """
    converted = [False]

    def convert(weights: np.ndarray, out: np.ndarray) -> None:
        if not (fixed_weights and converted[0]):
            np.subtract(weights, zp_w, out=out, dtype=f32)
            converted[0] = True

    bound_x = _dtype_bound(np.empty(0, DTYPES[ifm_dtype]), int(ifm_zp))
    product = bound_x * _dtype_bound(np.empty(0, DTYPES[weights_dtype]), int(weight_zp))
    f32 = np.float32
    zp_x, zp_w = f32(ifm_zp), f32(weight_zp)
    if kind == "fc":
        rows, depth = int(np.prod(ifm_shape[:-1])) * batch, ifm_shape[-1]
        if depth * product > _F32_EXACT:
            return None
        x, w, acc = np.empty((rows, depth), f32), np.empty(weights_shape, f32), np.empty((rows, weights_shape[1]), f32)

        def fc(ifm: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int]:
            np.subtract(ifm.reshape(rows, depth), zp_x, out=x, dtype=f32)
            convert(weights, w)
            return np.matmul(x, w, out=acc), depth * product
        return fc
    ifm4 = np.empty((batch, *ifm_shape), DTYPES[ifm_dtype])
    kernel, stride, dilation, padding, (oh, ow) = _geometry(ifm4, weights_shape[:2], stride, dilation, padding)
    (kh, kw), (top, bottom, left, right) = kernel, padding
    n, h, w_, c = ifm4.shape
    taps = kh * kw
    depth = taps * (1 if kind == "depthwise" else c)
    if depth * product > _F32_EXACT:
        return None
    if kind == "depthwise":
        return _prepared_depthwise(n, (h, w_, c), kernel, stride, dilation, padding, (oh, ow), zp_x,
                                   depth * product, convert)
    padded = np.zeros((n, h + top + bottom, w_ + left + right, c), f32)
    interior = padded[:, top:top + h, left:left + w_, :]
    w = np.empty(weights_shape, f32)
    cout = weights_shape[3]
    patches = _im2col(padded, kernel, stride, dilation, (oh, ow))
    windows = None
    if not np.shares_memory(patches, padded):   # a fresh copy: keep a buffer and the view it copies
        extent = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
        windows = sliding_window_view(padded, extent, axis=(1, 2))[
            :, :(oh - 1) * stride[0] + 1:stride[0], :(ow - 1) * stride[1] + 1:stride[1], :, ::dilation[0], ::dilation[1]
        ].transpose(0, 1, 2, 4, 5, 3)
        target = patches.reshape(n, oh, ow, kh, kw, c)
    acc = np.empty((n * oh * ow, cout), f32)
    w2d = w.reshape(depth, cout)

    def conv(ifm: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int]:
        np.subtract(ifm, zp_x, out=interior, dtype=f32)
        if windows is not None:
            np.copyto(target, windows)
        convert(weights, w)
        return np.matmul(patches, w2d, out=acc), depth * product
    return conv


def _prepared_depthwise(n, hwc, kernel, stride, dilation, padding, out_hw, zp_x, bound, convert):
    """Depthwise taps as whole-tensor multiply-adds over one long contiguous run per sample.

    numpy's inner loop runs over the innermost axes it can merge, and per-call overhead is paid
    per outer iteration. So the zero-padded input is stored as stride phases -- plane (py, px)
    holds padded rows py::sy and columns px::sx, all planes one width -- where every tap is a
    stride-1 window; flattening a plane, a tap is then one contiguous slice per sample if the
    output is computed for every plane column (OH x plane width x C; the extra columns are
    discarded), and the weights are tiled to that length. Against per-(row) windows with weights
    broadcast over C this is 2-4x faster for 8-64 channels.
    """
    (h, w_, c), (kh, kw), (sy, sx), (dy, dx), (oh, ow) = hwc, kernel, stride, dilation, out_hw
    top, bottom, left, right = padding
    hp, wp, f32 = h + top + bottom, w_ + left + right, np.float32
    rows_pl, cols_pl = -(-hp // sy), -(-wp // sx)
    planes, fills = {}, []
    for py in range(sy):
        for px in range(sx):
            plane = np.zeros((n, rows_pl + 1, cols_pl, c), f32)   # + a zero row: the last tap's slack
            y0, x0 = top + (py - top) % sy, left + (px - left) % sx     # first input row/col of this phase
            rows, cols = len(range(y0 - top, h, sy)), len(range(x0 - left, w_, sx))
            if rows and cols:
                fills.append((plane[:, y0 // sy:y0 // sy + rows, x0 // sx:x0 // sx + cols, :],
                              (slice(None), slice(y0 - top, None, sy), slice(x0 - left, None, sx))))
            planes[py, px] = plane.reshape(n, -1)
    length = oh * cols_pl * c
    tap_views = []
    for ky in range(kh):
        for kx in range(kw):
            y, x = ky * dy, kx * dx
            start = ((y // sy) * cols_pl + x // sx) * c
            tap_views.append(planes[y % sy, x % sx][:, start:start + length])
    taps = kh * kw
    tiled = np.empty((taps, oh * cols_pl, c), f32)
    acc, term = np.empty((n, length), f32), np.empty((n, length), f32)
    result = acc.reshape(n, oh, cols_pl, c)[:, :, :ow, :]
    flat_weights = tiled.reshape(taps, length)

    def depthwise(ifm: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, int]:
        for plane, where in fills:
            np.subtract(ifm[where], zp_x, out=plane, dtype=f32)
        convert(weights.reshape(taps, 1, c), tiled)
        np.multiply(tap_views[0], flat_weights[0], out=acc)
        for k in range(1, taps):          # a loop over the KH*KW taps, each a whole-tensor op
            np.multiply(tap_views[k], flat_weights[k], out=term)
            np.add(acc, term, out=acc)
        return result, bound
    return depthwise


# ----------------------------------------------------------------------------- pooling

def _all_padding_windows(size: int, pad_lo: int, kernel: int, stride: int, out: int) -> np.ndarray:
    """Output indices whose window along one axis covers no input row/column."""
    starts = np.arange(out) * stride - pad_lo
    return np.flatnonzero((starts + kernel <= 0) | (starts >= size))


def pool(ifm, *, kind, kernel, stride, padding=(0, 0, 0, 0), ifm_zp=0, divide: bool = False) -> np.ndarray:
    """POOL accumulator over (N,H,W,C) windows -> int64 (N,OH,OW,C).

    max: max of the raw integers, padding ignored (a window of padding only is a fault);
    avg: sum of (x - ifm_zp), padding counting as the zero point (count_include_pad);
    avg with ``divide``: TFLite's average, the raw sum over the window's positions inside the
    input divided by their count, rounded half away from zero (the final value, not an accumulator).
    """
    ifm = _int_array(ifm, "ifm")
    _check_ndim(ifm, 4, "ifm", "(N, H, W, C)")
    if kind not in ("max", "avg"):
        raise EmulatorFault(f"pool kind={kind!r}; use 'max' or 'avg'", operand="kind", kind="shape")
    kernel, stride, dilation, padding, out_hw = _geometry(ifm, kernel, stride, (1, 1), padding)
    ifm_zp = int(ifm_zp)
    if kind == "avg" and divide:
        return _tflite_average(ifm, kernel, stride, padding, out_hw)
    if kind == "avg":
        padded = _pad_centred(ifm, ifm_zp, padding, np.int64)
        acc = np.zeros((ifm.shape[0], *out_hw, ifm.shape[3]), np.int64)
        for _, _, tap in _taps(padded, kernel, stride, dilation, out_hw):
            acc += tap
        return acc
    for axis, size, lo, k, s, o in (("row", ifm.shape[1], padding[0], kernel[0], stride[0], out_hw[0]),
                                    ("column", ifm.shape[2], padding[2], kernel[1], stride[1], out_hw[1])):
        empty = _all_padding_windows(size, lo, k, s, o)
        if empty.size:
            raise EmulatorFault(
                f"max pool output {axis} {int(empty[0])} sees only padding (kernel {kernel}, stride "
                f"{stride}, padding {padding}, input {ifm.shape[1:3]}); reduce the padding",
                operand="ifm", kind="shape")
    # Padding is ignored for max: pad with a value below every input value of the dtype.
    top, bottom, left, right = padding
    n, h, w, c = ifm.shape
    floor = np.iinfo(ifm.dtype).min - 1
    padded = np.full((n, h + top + bottom, w + left + right, c), floor, np.int32)
    padded[:, top:top + h, left:left + w, :] = ifm
    taps = _taps(padded, kernel, stride, dilation, out_hw)
    result = next(taps)[2].copy()
    for _, _, tap in taps:
        np.maximum(result, tap, out=result)
    return result.astype(np.int64)


def _tflite_average(ifm: np.ndarray, kernel, stride, padding, out_hw) -> np.ndarray:
    """TFLite reference AveragePool: ``(sum +/- n/2) / n`` with C division over the in-bounds taps."""
    padded = _pad_centred(ifm, 0, padding, np.int64)
    acc = np.zeros((ifm.shape[0], *out_hw, ifm.shape[3]), np.int64)
    for _, _, tap in _taps(padded, kernel, stride, (1, 1), out_hw):
        acc += tap
    inside = _pad_centred(np.ones((1, *ifm.shape[1:3], 1), np.int8), 0, padding, np.int64)
    count = np.zeros((1, *out_hw, 1), np.int64)
    for _, _, tap in _taps(inside, kernel, stride, (1, 1), out_hw):
        count += tap
    if int(count.min()) == 0:
        raise EmulatorFault(f"average pool output sees only padding (kernel {kernel}, stride {stride}, padding "
                            f"{padding}, input {ifm.shape[1:3]}); reduce the padding", operand="ifm", kind="shape")
    half = count // 2
    return np.where(acc > 0, (acc + half) // count, -((half - acc) // count))


# ----------------------------------------------------------------------------- requantisation

def _per_channel(values, name: str, channels: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values, dtype=np.int64))
    if arr.ndim != 1 or arr.size not in (1, channels):
        raise EmulatorFault(f"requant {name} has {arr.size} entries; expected 1 or {channels} "
                            f"(one per output channel)", operand=name, kind="requant")
    return arr


def apply_scale(value: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, *, double_round: bool = False,
                scale32: bool, operand: str = "acc", rule: str = "") -> np.ndarray:
    """TOSA apply_scale_32 / apply_scale_16 on int64 arrays (multiplier/shift broadcast on the last axis).

    ``(v * m + round) >> s`` with ``round = 2**(s-1)`` (+/- 2**30 for double rounding when s > 31,
    scale32 only). The REQUIREs are enforced: scale32 needs v in int32 and in
    [-2**(s-1), 2**(s-1)), which also keeps ``v * m`` (m < 2**31) inside int64; scale16 takes int48
    values (m < 2**15, so the product stays below 2**62) and its result must fit int32.
    ``rule`` ("single", "double", "float"; "" = by ``double_round``) overrides the mode; "float"
    is :func:`_apply_float_scale`.
    """
    rule = rule or ("double" if double_round else "single")
    if rule == "float":
        return _apply_float_scale(value, multiplier, shift, operand)
    double_round = rule == "double"
    if multiplier.size and (int(multiplier.min()) < 0 or int(multiplier.max()) >= (1 << (31 if scale32 else 15))):
        raise EmulatorFault(f"requant multiplier {multiplier.tolist()} outside [0, 2**{31 if scale32 else 15})",
                            operand="multiplier", kind="requant")
    if shift.size and (int(shift.min()) < 2 or int(shift.max()) > 62):
        raise EmulatorFault(f"requant shift {shift.tolist()} outside TOSA's 2..62", operand="shift",
                            kind="requant")
    half = np.left_shift(np.int64(1), np.minimum(shift, 32) - 1) if scale32 else np.int64(1 << 47)
    # two reductions decide the common case; the per-element mask only runs to name the culprit
    tightest = int(np.min(half))
    if value.size and (int(value.min()) < -tightest or int(value.max()) >= tightest):
        bad = (value < -half) | (value >= half)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise EmulatorFault(
                f"{operand} value {int(value[where])} at index {where} is out of range for apply_scale_"
                f"{32 if scale32 else 16} with shift {int(np.broadcast_to(shift, value.shape)[where])} "
                f"(TOSA requires an int{32 if scale32 else 48} accumulator within +/-2**(shift-1)); the "
                f"accumulator overflowed or the scale is too large", operand=operand, kind="overflow")
    rounding = np.left_shift(np.int64(1), shift - 1)
    result = np.multiply(value, multiplier, dtype=np.int64)    # one fresh array, then in place
    result += rounding
    if double_round and scale32 and shift.size and int(shift.max()) > 31:
        result += np.where(shift > 31, np.where(value >= 0, 1 << 30, -(1 << 30)), 0)
    np.right_shift(result, shift, out=result)
    if not scale32 and result.size and (int(result.min()) < -(1 << 31) or int(result.max()) >= (1 << 31)):
        raise EmulatorFault(f"apply_scale_16 result leaves int32 (max |r| {int(np.abs(result).max())})",
                            operand=operand, kind="overflow")
    return result


def _apply_float_scale(value: np.ndarray, multiplier: np.ndarray, shift: np.ndarray, operand: str) -> np.ndarray:
    """The ``float`` rule: ``round(double(v) * double(multiplier * 2**-shift))``, C ``round``
    (half away from zero). numpy's float64 multiply is the same IEEE operation as C's, and the
    scale is rebuilt exactly from its 53-bit mantissa; the rounding avoids ``floor(x + 0.5)``,
    which is wrong just below one half."""
    if multiplier.size and (int(multiplier.min()) < 0 or int(multiplier.max()) >= (1 << 53)):
        raise EmulatorFault(f"float requant multiplier {multiplier.tolist()} outside [0, 2**53)",
                            operand="multiplier", kind="requant")
    if value.size and int(np.abs(value).max()) >= (1 << 53):
        raise EmulatorFault(f"{operand} magnitude {int(np.abs(value).max())} is not exact in double precision",
                            operand=operand, kind="overflow")
    product = value.astype(np.float64) * np.ldexp(multiplier.astype(np.float64), -shift)
    whole = np.trunc(product)
    rounded = whole + np.copysign(np.abs(product - whole) >= 0.5, product)
    if rounded.size and np.abs(rounded).max() >= 2.0 ** 62:
        raise EmulatorFault(f"{operand} scaled by the float requant leaves int64", operand=operand, kind="overflow")
    return rounded.astype(np.int64)


def rescale(acc, multiplier, shift, *, ofm_zp, lo, hi, rounding="single", out_dtype="int8",
            scale32: bool | None = None) -> np.ndarray:
    """TOSA RESCALE of an accumulator, per channel along the last axis, into ``out_dtype``.

    ``clamp(apply_scale(acc) + ofm_zp, lo, hi)``. ``scale32=None`` infers the variant from the
    multipliers: normalised 32-bit multipliers are >= 2**30, 16-bit ones (int16 activations,
    48-bit accumulators) < 2**15 -- so all-16-bit multipliers select apply_scale_16.
    """
    value = np.asarray(acc)
    if value.dtype.kind not in "iu":
        raise EmulatorFault(f"rescale input has dtype {value.dtype}; it takes integer accumulators",
                            operand="acc", kind="dtype")
    return Requantizer(multiplier, shift, ofm_zp=ofm_zp, lo=lo, hi=hi, rounding=rounding, out_dtype=out_dtype,
                       scale32=scale32, channels=value.shape[-1] if value.ndim else 1)(value)


class Requantizer:
    """One instruction's RESCALE with its constants checked and laid out once (see :func:`rescale`).

    The emulator builds one per instruction, so a run pays no per-call validation. ``__call__``
    takes the accumulator as int or integer-valued float, plus an optional bias added first.

    Why a float64 path is exact: with ``c = m * 2**-s`` (exact, a power-of-two scaling) and
    ``|v * m| + (|zp| + 1) * 2**s <= 2**53``, ``v * c``, ``+ 0.5 + zp`` and the bias term are all
    multiples of ``2**-s`` below ``2**(53 - s)``, so no step rounds and
    ``floor(v * c + 0.5 + zp)`` is exactly ``((v * m + 2**(s-1)) >> s) + zp``. The bound comes from
    the accumulator's peak (static, or one min/max pass); beyond it -- and for double rounding
    with ``s > 31`` -- the int64 :func:`apply_scale` runs, with TOSA's range REQUIREs.
    """

    def __init__(self, multiplier, shift, *, ofm_zp, lo, hi, rounding="single", out_dtype="int8",
                 scale32: bool | None = None, channels: int = 1):
        self.rule = rule_of(rounding)
        if out_dtype not in INTEGER_DTYPES:
            raise EmulatorFault(f"out_dtype={out_dtype!r}; use one of {sorted(INTEGER_DTYPES)}", operand="ofm",
                                kind="dtype")
        self.multiplier = _per_channel(multiplier, "multiplier", channels)
        self.shift = _per_channel(shift, "shift", channels)
        if scale32 is None:
            scale32 = not (self.multiplier.size and int(self.multiplier.max()) < (1 << 15))
        type_lo, type_hi = dtype_range(out_dtype)
        self.lo, self.hi = int(lo), int(hi)
        if not type_lo <= self.lo <= self.hi <= type_hi:
            raise EmulatorFault(f"requant clamp [{self.lo}, {self.hi}] must lie inside {out_dtype} "
                                f"[{type_lo}, {type_hi}] with lo <= hi", operand="requant", kind="requant")
        self.scale32, self.double = bool(scale32), self.rule == "double"
        self.ofm_zp, self.out_dtype = int(ofm_zp), DTYPES[out_dtype]
        # apply_scale's own checks, once: an empty probe raises exactly what a call would
        apply_scale(np.zeros((0, self.multiplier.size), np.int64), self.multiplier, self.shift,
                    rule=self.rule, scale32=self.scale32)
        m_max = int(self.multiplier.max()) if self.multiplier.size else 0
        s_min = int(self.shift.min()) if self.shift.size else 2
        s_max = int(self.shift.max()) if self.shift.size else 2
        # largest accumulator peak the float64 path takes exactly and apply_scale's REQUIREs accept
        room = _F64_EXACT - (abs(self.ofm_zp) + 1) * (1 << s_max)
        limit = room // m_max if m_max and room > 0 else (0 if room <= 0 else _F64_EXACT)
        if self.scale32:
            limit = min(limit, (1 << (min(s_min, 32) - 1)) - 1)
            if self.double and s_max > 31:
                limit = -1
        else:
            limit = min(limit, (1 << 47) - 1, (((1 << 31) - 1) << s_min) // max(m_max, 1))
        if self.rule == "float":
            limit = -1                       # its own double-precision product: always the exact path
        self.float_peak = limit
        self.scale = np.ldexp(self.multiplier.astype(np.float64), -self.shift)
        self.offset = np.full(self.multiplier.shape, 0.5 + self.ofm_zp)
        self._tiled_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def _tiled(self, reps: int, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scale and ``offset + bias * scale`` tiled ``reps`` times, cached by the bias bytes: the
        bias is usually a constant, and at batch 1 recomputing these cost a third of the call."""
        key = (reps, None if bias is None else bias.tobytes())
        hit = self._tiled_cache.get(key)
        if hit is None:
            offset = self.offset if bias is None else self.offset + bias * self.scale
            hit = (np.tile(self.scale, reps), np.tile(offset, reps))
            if len(self._tiled_cache) >= 8:
                self._tiled_cache.clear()
            self._tiled_cache[key] = hit
        return hit

    def _tiling(self, work: np.ndarray) -> tuple[np.ndarray, int]:
        """``work`` as rows of ``reps`` whole channel vectors (a view), so per-channel operands
        are tiled: numpy's inner loop then runs ~1024 values, not C (8 channels: 7x faster)."""
        width = self.multiplier.size
        if width == 1 or width >= 1024 or not work.flags.c_contiguous or work.size % width:
            return work, 1
        reps = math.gcd(work.size // width, 1024 // width)
        return work.reshape(-1, reps * width), reps

    def __call__(self, acc: np.ndarray, bias: np.ndarray | None = None, peak: int | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
        """``peak`` bounds ``|acc| + |bias|`` a priori; without it one min/max pass measures it.
        ``out`` (an ofm view of the accumulator's shape) receives the result without a temporary."""
        if peak is None or peak > self.float_peak:
            peak = _data_bound(acc, 0) + (int(np.abs(bias).max()) if bias is not None and bias.size else 0)
        if peak <= self.float_peak:
            # cast, then scale in place: a mixed float32 x float64 multiply costs 3x the two passes
            work = np.asarray(acc).astype(np.float64)
            rows, reps = self._tiling(work)
            scale, offset = self._tiled(reps, bias)
            rows *= scale
            rows += offset
            np.floor(work, out=work)
            np.clip(work, self.lo, self.hi, out=work)
            if out is None:
                return work.astype(self.out_dtype)
            np.copyto(out, work, casting="unsafe")
            return out
        value = np.asarray(acc)
        value = value.astype(np.int64) if value.dtype.kind == "f" else value.astype(np.int64, copy=False)
        if bias is not None:
            value = value + bias
        scaled = apply_scale(value, self.multiplier, self.shift, rule=self.rule, scale32=self.scale32)
        result = np.clip(scaled + self.ofm_zp, self.lo, self.hi).astype(self.out_dtype)
        if out is None:
            return result
        out[...] = result
        return out


# ----------------------------------------------------------------------------- element-wise, LUT, resize

def _broadcast_operand(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Align b with a (N, ..., C): same shape, (C,)/(1,), or batch-first (N, C)/(N, 1)."""
    channels = a.shape[-1] if a.ndim else 1
    if b.shape == a.shape:
        return b
    if b.ndim == 1 and b.shape[0] in (1, channels):
        return b
    if b.ndim == 2 and a.ndim > 2 and b.shape[0] == a.shape[0] and b.shape[1] in (1, channels):
        return b.reshape(b.shape[0], *([1] * (a.ndim - 2)), b.shape[1])
    raise EmulatorFault(f"operand 'b' of shape {b.shape} cannot broadcast against a {a.shape}; it must "
                        f"match, be (C,)/(1,), or batch-first (N, C)/(N, 1)", operand="b", kind="shape")


def elementwise(a, b, *, op, a_zp=0, b_zp=0, a_multiplier=1 << 30, a_shift=30, b_multiplier=1 << 30,
                b_shift=30, rounding="single", left_shift=_ELEMENTWISE_LEFT_SHIFT) -> np.ndarray:
    """isa.Elementwise accumulator (int64), before the output requant.

    add/sub/min/max bring both inputs to a common scale:
    ``apply_scale_32((x - zp) << left_shift, m, s)`` (apply_scale_32 faults if the shifted value
    leaves int32, e.g. int16 inputs with int8's shift of 20); mul multiplies the centred inputs.
    """
    a = _int_array(a, "a")
    b = _broadcast_operand(a, _int_array(b, "b"))
    if op not in ("add", "sub", "mul", "min", "max"):
        raise EmulatorFault(f"elementwise op={op!r}; use add, sub, mul, min or max", operand="op",
                            kind="shape")
    rule = rule_of(rounding)
    if rule == "float":
        raise EmulatorFault("element-wise inputs are rescaled with single or double rounding, not 'float'",
                            operand="rounding", kind="requant")
    a_c = a.astype(np.int64) - int(a_zp)
    b_c = b.astype(np.int64) - int(b_zp)
    if op == "mul":
        return a_c * b_c
    if not 0 <= int(left_shift) <= 30:
        raise EmulatorFault(f"elementwise left_shift={left_shift}; it must be in 0..30", operand="left_shift",
                            kind="requant")
    a_s = apply_scale(a_c << int(left_shift), np.array([a_multiplier], np.int64),
                      np.array([a_shift], np.int64), rule=rule, scale32=True, operand="a")
    b_s = apply_scale(b_c << int(left_shift), np.array([b_multiplier], np.int64),
                      np.array([b_shift], np.int64), rule=rule, scale32=True, operand="b")
    combine = {"add": np.add, "sub": np.subtract, "min": np.minimum, "max": np.maximum}[op]
    return np.asarray(combine(a_s, b_s), np.int64)


def lut(ifm, table: Sequence[int] | np.ndarray) -> np.ndarray:
    """int8 table lookup: ``table[ifm + 128]`` with a 256-entry int8 table."""
    ifm = _int_array(ifm, "ifm", (np.int8,))
    tab = np.asarray(table)
    if tab.shape != (256,) or tab.dtype.kind not in "iu" or (tab.size and (tab.min() < -128 or tab.max() > 127)):
        raise EmulatorFault(f"LUT table must be 256 int8 values, got shape {tab.shape} dtype {tab.dtype}",
                            operand="table", kind="shape")
    return np.take(tab.astype(np.int8), ifm.astype(np.intp) + 128)


def resize_nearest(ifm, scale) -> np.ndarray:
    """Nearest-neighbour upsampling of (N,H,W,C) by integer factors: ``ofm[y,x] = ifm[y//sy, x//sx]``."""
    ifm = _int_array(ifm, "ifm")
    _check_ndim(ifm, 4, "ifm", "(N, H, W, C)")
    sy, sx = _pair(scale, "scale", 1)
    return np.repeat(np.repeat(ifm, sy, axis=1), sx, axis=2)


def _nearest_index(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """TFLite ``GetNearestNeighbor`` for every output coordinate, in float32 as TFLite computes it."""
    f32 = np.float32
    if align_corners and out_size > 1:
        ratio = f32(in_size - 1) / f32(out_size - 1)
    else:
        ratio = f32(in_size) / f32(out_size)
    position = (np.arange(out_size, dtype=f32) + f32(0.5 if half_pixel_centers else 0.0)) * ratio
    if align_corners:      # TfLiteRound: half away from zero (positions are >= 0)
        index = np.trunc(position) + (position - np.trunc(position) >= f32(0.5))
    else:
        index = np.floor(position)
    index = np.minimum(index.astype(np.int64), in_size - 1)
    return np.maximum(index, 0) if half_pixel_centers else index


def _bilinear_axis(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool):
    """TFLite ``ComputeInterpolationValuesInteger`` per output coordinate: (lower, upper, weight of
    upper) with 10 fractional bits."""
    if align_corners and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = ((1 << 10) * in_size + out_size // 2) // out_size
    o = np.arange(out_size, dtype=np.int64)
    position = o * scale + (scale // 2 - (1 << 9) if half_pixel_centers else 0)
    lower = np.maximum(_trunc_div(position, 1 << 10), 0)
    upper = np.minimum(_trunc_div(position + (1 << 10) - 1, 1 << 10), in_size - 1)
    return lower, upper, position - (1 << 10) * lower


def _trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    return np.where(a >= 0, a // b, -((-a) // b))


def resize(ifm, *, mode: str = "nearest", size=(), scale=(2, 2), align_corners: bool = False,
           half_pixel_centers: bool = False) -> np.ndarray:
    """isa.Resize on (N,H,W,C): integer-factor nearest (``size == ()``), or TFLite's nearest and
    integer bilinear to ``size = (OH, OW)``; same dtype in and out."""
    ifm = _int_array(ifm, "ifm")
    _check_ndim(ifm, 4, "ifm", "(N, H, W, C)")
    if not size:
        if mode != "nearest":
            raise EmulatorFault(f"resize mode {mode!r} needs an output size", operand="size", kind="shape")
        return resize_nearest(ifm, scale)
    out_h, out_w = _pair(size, "size", 1)
    _, h, w, _ = ifm.shape
    if mode == "nearest":
        rows = _nearest_index(h, out_h, align_corners, half_pixel_centers)
        cols = _nearest_index(w, out_w, align_corners, half_pixel_centers)
        return ifm[:, rows][:, :, cols]
    if mode != "bilinear":
        raise EmulatorFault(f"resize mode {mode!r}; use 'nearest' or 'bilinear'", operand="mode", kind="shape")
    y0, y1, fy = _bilinear_axis(h, out_h, align_corners, half_pixel_centers)
    x0, x1, fx = _bilinear_axis(w, out_w, align_corners, half_pixel_centers)
    x = ifm.astype(np.int64)
    wy0, wy1 = ((1 << 10) - fy)[None, :, None, None], fy[None, :, None, None]
    wx0, wx1 = ((1 << 10) - fx)[None, None, :, None], fx[None, None, :, None]
    top, bottom = x[:, y0], x[:, y1]
    v20 = (top[:, :, x0] * wy0 * wx0 + bottom[:, :, x0] * wy1 * wx0
           + top[:, :, x1] * wy0 * wx1 + bottom[:, :, x1] * wy1 * wx1)
    half = 1 << 19
    out = np.where(v20 > 0, _trunc_div(v20 + half, 1 << 20), _trunc_div(v20 - half, 1 << 20))
    return out.astype(ifm.dtype)


def softmax(ifm, exp_table, *, probability: bool = False) -> np.ndarray:
    """isa.Softmax: TFLite's int8 reference softmax over the last axis, from the 256-entry Q0.31
    exp table of the differences to the row maximum; int8 output (scale 1/256, zero point -128),
    or with ``probability`` the int64 probabilities in units of 2**-16 (TFLite's int16 output
    stage before its offset), for a requant to any output quantisation."""
    ifm = _int_array(ifm, "ifm", (np.int8,))
    table = np.asarray(exp_table, np.int64)
    if table.shape != (256,) or (table.size and (int(table.min()) < 0 or int(table.max()) > fixedpoint.INT32_MAX)):
        raise EmulatorFault(f"softmax exp table must be 256 Q0.31 values in [0, 2**31), got shape {table.shape}",
                            operand="exp_table", kind="shape")
    x = ifm.astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    exps = table[diff + 255]
    total = fixedpoint.rdbpot(exps, 12).sum(axis=-1, keepdims=True)      # Q12.19 accumulator
    if total.size and int(total.max()) > fixedpoint.INT32_MAX:
        raise EmulatorFault(f"softmax sum of exponentials {int(total.max())} overflows its int32 Q12.19 "
                            f"accumulator (rows of {ifm.shape[-1]} values); split the row", operand="ifm",
                            kind="overflow")
    reciprocal, bits_over_unit = fixedpoint.get_reciprocal(total, 12)
    scaled = fixedpoint.srdhm(reciprocal, exps)
    if probability:
        return fixedpoint.rdbpot(scaled, bits_over_unit + 31 - 16)
    return np.clip(fixedpoint.rdbpot(scaled, bits_over_unit + 31 - 8) - 128, -128, 127).astype(np.int8)
