"""Differential test against onnxruntime's QLinearConv / QLinearMatMul on the same integers.

ORT requantises with ``float32(acc) * float32(x_scale * w_scale / y_scale)`` and rounds half to
even; our NPU uses TOSA RESCALE (31-bit multiplier, round half up, optionally double rounding).
So the two may disagree by one LSB, and only where the exact real value sits on or within a
float32 rounding distance of a .5 tie. These tests prove all three statements: ORT equals the
float32 formula recomputed in numpy *exactly* (so our int64 accumulator is ORT's), our result is
never more than 1 LSB away, and every disagreement is at such a tie.

Weights for uint8 activations are 7-bit: on AVX2 hosts without VNNI, ORT's u8 x s8 GEMM uses
``vpmaddubsw``, which saturates pairs of products at int16 -- the reason its quantiser offers
``reduce_range``. With 7-bit weights no pair can saturate (2 * 255 * 64 < 32767).
"""

from __future__ import annotations

import zlib

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, checker, helper, numpy_helper

from pytest_npu.npu import kernels
from pytest_npu.npu.requant import quantize_multipliers

ONNX_TYPES = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}
F32_UNIT = 2.0 ** -24


def _run(nodes, inputs, initialisers, output_shape, feeds) -> np.ndarray:
    graph = helper.make_graph(
        nodes, "kernel_check",
        [helper.make_tensor_value_info(name, ONNX_TYPES[arr.dtype.type], list(arr.shape)) for name, arr in inputs],
        [helper.make_tensor_value_info("y", ONNX_TYPES[inputs[0][1].dtype.type], list(output_shape))],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in initialisers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _ort_requant(acc: np.ndarray, x_scale, w_scale, y_scale, y_zp: int, dtype) -> np.ndarray:
    """MLAS's requantisation, recomputed: float32 scale product, float32 multiply, clamp, half-even."""
    scale = (np.float32(x_scale) * np.asarray(w_scale, np.float32)) / np.float32(y_scale)
    info = np.iinfo(dtype)
    value = np.clip(acc.astype(np.float32) * scale.astype(np.float32), info.min - y_zp, info.max - y_zp)
    return (np.rint(value) + y_zp).astype(np.int64)


def _exact_real(acc: np.ndarray, x_scale, w_scale, y_scale) -> np.ndarray:
    """The real value the requant approximates, in float64 (from the model's float32 scales)."""
    ratio = np.float64(x_scale) * np.asarray(w_scale, np.float64) / np.float64(y_scale)
    return acc.astype(np.float64) * ratio, ratio


def _npu_requant(acc, ratio, y_zp, dtype, rounding):
    multipliers, shifts = quantize_multipliers(ratio)
    info = np.iinfo(dtype)
    out = kernels.rescale(acc, multipliers, shifts, ofm_zp=y_zp, lo=int(info.min), hi=int(info.max),
                          rounding=rounding, out_dtype=np.dtype(dtype).name)
    return out.astype(np.int64), np.asarray(shifts)


def _check_disagreements(ours, theirs, real, shifts, y_zp, dtype, rounding) -> int:
    """|ours - ORT| <= 1, and each disagreement lies within rounding distance of a .5 tie."""
    gap = np.abs(ours - theirs)
    assert gap.max(initial=0) <= 1, f"{rounding}: {int(gap.max())} LSB apart"
    info = np.iinfo(dtype)
    # ORT's scale product and multiply each round in float32 (<= 3 units); our multiplier is
    # within 2**-31 relative; double rounding first rounds at bit 31, i.e. to 2**(31 - shift).
    tolerance = np.abs(real) * (4 * F32_UNIT + 2.0 ** -30) + 1e-9
    if rounding == "double":
        tolerance = tolerance + np.where(shifts > 31, 0.5 * 2.0 ** (31 - shifts.astype(np.float64)), 0.0)
    distance_to_tie = np.abs(real - np.floor(real) - 0.5)
    near_tie = distance_to_tie <= tolerance
    inside = (real + y_zp >= info.min - 0.5) & (real + y_zp <= info.max + 0.5)
    differing = ours != theirs
    assert not np.any(differing & ~near_tie), (
        f"{rounding}: {int(np.sum(differing & ~near_tie))} disagreements away from a tie")
    assert not np.any(differing & ~inside)
    return int(differing.sum())


def _check_both_roundings(acc, theirs, scales, y_zp, dtype, record_property) -> None:
    real, ratio = _exact_real(acc, *scales)
    for rounding in ("single", "double"):
        ours, shifts = _npu_requant(acc, ratio, y_zp, dtype, rounding)
        count = _check_disagreements(ours, theirs, real, np.broadcast_to(shifts, acc.shape), y_zp, dtype,
                                     rounding)
        record_property(f"differing_{rounding}", f"{count}/{acc.size}")


def _conv_case(rng, x_dtype, shape, cout, kernel, stride, pads, dilation, scales, magnitude=None):
    """Random QLinearConv; ``magnitude`` limits |x| and |w| (small values make exact ties common)."""
    n, cin, h, w = shape
    info = np.iinfo(x_dtype)
    x_lo, x_hi = (int(info.min), int(info.max)) if magnitude is None else (-magnitude, magnitude)
    x = rng.integers(x_lo, x_hi + 1, shape).astype(x_dtype)
    w_bound = magnitude or (64 if x_dtype == np.uint8 else 128)
    weights = rng.integers(-w_bound, w_bound, (cout, cin, *kernel)).astype(np.int8)
    bias_bound = 20000 if magnitude is None else 100
    bias = rng.integers(-bias_bound, bias_bound, cout).astype(np.int32)
    x_scale, w_scale, y_scale = scales(rng, cout)
    x_zp = int(rng.integers(x_lo, x_hi + 1))
    y_zp = int(rng.integers(info.min // 2 + info.max // 4, info.max // 2 + 1))
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            pads=[pads[0], pads[2], pads[1], pads[3]], strides=list(stride),
                            dilations=list(dilation))
    initialisers = {"xs": np.float32(x_scale), "xz": np.array(x_zp, x_dtype), "w": weights,
                    "ws": w_scale, "wz": np.zeros(cout, np.int8), "ys": np.float32(y_scale),
                    "yz": np.array(y_zp, x_dtype), "b": bias}
    acc = kernels.conv2d(x.transpose(0, 2, 3, 1), weights.transpose(2, 3, 1, 0), bias, stride=stride,
                         dilation=dilation, padding=pads, ifm_zp=x_zp)
    theirs = _run([node], [("x", x)], initialisers, (n, cout, acc.shape[1], acc.shape[2]), {"x": x})
    return acc, theirs.transpose(0, 2, 3, 1).astype(np.int64), (x_scale, w_scale, y_scale, y_zp)


def _random_scales(rng, channels):
    return (np.float32(rng.uniform(0.005, 0.05)), rng.uniform(0.0005, 0.01, channels).astype(np.float32),
            np.float32(rng.uniform(0.02, 0.2)))


def _power_of_two_scales(rng, channels, smallest=6, largest=9):
    """Scale ratios 2**-k exactly: the real value can be exactly x.5, where half-up != half-even."""
    return (np.float32(0.5), (2.0 ** -rng.integers(smallest, largest + 1, channels)).astype(np.float32),
            np.float32(1.0))


CONV_CASES = [
    # dtype, (N, C, H, W), Cout, kernel, stride, pads (t, b, l, r), dilation
    (np.int8, (2, 16, 10, 10), 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (np.uint8, (1, 16, 12, 9), 6, (3, 3), (2, 2), (1, 0, 1, 0), (1, 1)),
    (np.int8, (1, 8, 11, 11), 5, (3, 2), (1, 2), (2, 1, 0, 1), (2, 1)),
    (np.uint8, (2, 24, 7, 7), 8, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    (np.int8, (1, 72, 8, 8), 4, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),      # K = 1800: split GEMM
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c[1])) + f"-{c[0].__name__}")
@pytest.mark.parametrize("scales", [_random_scales, _power_of_two_scales], ids=["random", "pow2"])
def test_qlinearconv_agrees_within_one_lsb_at_ties_only(case, scales, record_property):
    rng = np.random.default_rng(zlib.crc32(repr((case[1], scales.__name__)).encode()))
    dtype = case[0]
    acc, theirs, (x_scale, w_scale, y_scale, y_zp) = _conv_case(rng, *case, scales=scales)
    np.testing.assert_array_equal(_ort_requant(acc, x_scale, w_scale, y_scale, y_zp, dtype), theirs,
                                  err_msg="ORT is not float32-multiply + round-half-even of our accumulator")
    _check_both_roundings(acc, theirs, (x_scale, w_scale, y_scale), y_zp, dtype, record_property)


def test_ties_are_exactly_where_half_up_and_half_even_part():
    """With power-of-two scales everything is exact, so single rounding must differ from ORT at
    exactly the ties whose half-up and half-even results differ -- no more, no fewer."""
    rng = np.random.default_rng(7)
    acc, theirs, (x_scale, w_scale, y_scale, y_zp) = _conv_case(
        rng, np.int8, (2, 16, 9, 9), 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), magnitude=6,
        scales=lambda rng, channels: _power_of_two_scales(rng, channels, smallest=0, largest=3))
    real, ratio = _exact_real(acc, x_scale, w_scale, y_scale)
    ours, _ = _npu_requant(acc, ratio, y_zp, np.int8, "single")
    half_up, half_even = np.floor(real + 0.5), np.rint(real)
    predicted = (half_up != half_even) & (np.clip(half_up + y_zp, -128, 127) != np.clip(half_even + y_zp, -128, 127))
    assert predicted.sum() > 20
    np.testing.assert_array_equal(ours != theirs, predicted)
    np.testing.assert_array_equal((ours - theirs)[predicted], 1)


def _matmul_case(rng, a_dtype, a_shape, nout, per_column):
    info = np.iinfo(a_dtype)
    a = rng.integers(info.min, int(info.max) + 1, a_shape).astype(a_dtype)
    w_bound = 64 if a_dtype == np.uint8 else 128
    b = rng.integers(-w_bound, w_bound, (a_shape[-1], nout)).astype(np.int8)
    a_scale, y_scale = np.float32(rng.uniform(0.005, 0.05)), np.float32(rng.uniform(0.05, 0.5))
    b_scale = rng.uniform(0.0005, 0.01, nout if per_column else 1).astype(np.float32)
    a_zp, y_zp = int(rng.integers(info.min, int(info.max) + 1)), int(info.min // 2 + info.max // 2)
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    b_zp = np.zeros(nout, np.int8) if per_column else np.array(0, np.int8)
    initialisers = {"as": a_scale, "az": np.array(a_zp, a_dtype), "b": b,
                    "bs": b_scale if per_column else np.float32(b_scale[0]), "bz": b_zp, "ys": y_scale,
                    "yz": np.array(y_zp, a_dtype)}
    theirs = _run([node], [("a", a)], initialisers, (*a_shape[:-1], nout), {"a": a}).astype(np.int64)
    return a, b, a_zp, theirs, (a_scale, b_scale, y_scale, y_zp)


@pytest.mark.parametrize("a_dtype", [np.int8, np.uint8], ids=["int8", "uint8"])
@pytest.mark.parametrize("a_shape, nout, per_column", [((2, 5, 40), 7, False), ((3, 64, 1100), 9, True),
                                                       ((1, 33, 300), 16, True)])
def test_qlinearmatmul_agrees_within_one_lsb_at_ties_only(a_dtype, a_shape, nout, per_column, record_property):
    rng = np.random.default_rng(a_shape[-1] + nout)
    a, b, a_zp, theirs, (a_scale, b_scale, y_scale, y_zp) = _matmul_case(rng, a_dtype, a_shape, nout, per_column)
    acc = kernels.fully_connected(a, b, None, ifm_zp=a_zp)
    np.testing.assert_array_equal(acc, kernels.matmul(a, np.broadcast_to(b, (a_shape[0], *b.shape)), a_zp=a_zp))
    np.testing.assert_array_equal(_ort_requant(acc, a_scale, b_scale, y_scale, y_zp, a_dtype), theirs)
    _check_both_roundings(acc, theirs, (a_scale, b_scale, y_scale), y_zp, a_dtype, record_property)
