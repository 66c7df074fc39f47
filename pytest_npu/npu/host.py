"""Host fallback: ops the NPU cannot run, executed in float on the (modelled) host CPU.

``execute(op, attrs, inputs) -> outputs`` takes and returns *integer* arrays, batch first, as
the emulator's DRAM views hold them. The host dequantises every input with ``attrs["in_quant"]``,
computes in float32 numpy, and quantises every output with ``attrs["out_quant"]`` exactly as ONNX
QuantizeLinear does (round half to even, then saturate). A quant entry is
``{"scale": [...], "zero_point": [...], "dtype": "int8", "axis": None}``; ``axis`` (per-channel
scales) and every axis-like attribute (``axis``, ``perm``, ``shape``, ``pads``) refer to the
*per-sample* shape, without the batch axis, as the compiler's tensors do; this module adds the
batch axis itself. Constant inputs (conv/fc weights and bias) are taken from sample 0.

``count_ops(op, attrs, input_shapes, output_shapes)`` (per-sample shapes) is what the cost model
charges: float operations per inference, with a multiply-add counted as 2, each element's
dequantise as 2 and quantise as 4 (divide, round, add, clamp), and a transcendental function
(exp, tanh, erf) as :data:`TRANSCENDENTAL_OPS`.

``float_op`` runs an arbitrary ONNX operator with onnxruntime on a one-node model built from
``attrs["onnx_op"]``/``attrs["onnx_attrs"]`` (optional ``onnx_domain``, ``opset``); every input
is passed as float32 with the batch axis, and sessions are cached per op, attributes and shapes.
``attrs["onnx_consts"]`` lists constant inputs no runtime tensor can hold (int64 axes, shapes) as
``[position, dtype, shape, values]``: they are initializers of the one-node model;
``attrs["onnx_empty"]`` lists the positions of omitted optional inputs; the operands fill the
other positions in order.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import EmulatorFault
from . import fixedpoint
from .isa import DTYPES, INTEGER_DTYPES, dtype_range

# Cost of one exp/tanh/erf in float operations: a vectorised polynomial of degree ~6 plus range
# reduction (assumption for an M-class or A-class CPU with SIMD; not a measurement).
TRANSCENDENTAL_OPS = 10
DEQUANTIZE_OPS = 2
QUANTIZE_OPS = 4


def _quant(attrs: dict, key: str, index: int, op: str) -> dict | None:
    entries = attrs.get(key)
    if entries is None:
        return None
    if not isinstance(entries, (list, tuple)) or index >= len(entries):
        raise EmulatorFault(f"host op {op!r}: attrs[{key!r}] has no entry {index}", operand=key,
                            kind="host")
    return entries[index]


def _broadcast_param(values, quant: dict, ndim: int) -> np.ndarray:
    arr = np.asarray(values)
    axis = quant.get("axis")
    if arr.size > 1 and axis is not None:
        batch_axis = axis + 1 if axis >= 0 else ndim + axis
        shape = [1] * ndim
        shape[batch_axis] = arr.size
        return arr.reshape(shape)
    return arr.reshape(()) if arr.size == 1 else arr


def dequantize(q: np.ndarray, quant: dict | None) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32. None: the array is already real-valued -- a float32
    tensor as it is, an unquantised integer one (dynamic quantisation's int32 accumulators) in
    float64, which holds every int32 exactly."""
    if quant is None:
        q = np.asarray(q)
        return q.astype(np.float32, copy=False) if q.dtype.kind == "f" else q.astype(np.float64)
    scale = _broadcast_param(np.asarray(quant["scale"], np.float32), quant, np.ndim(q))
    zp = _broadcast_param(np.asarray(quant["zero_point"], np.int64), quant, np.ndim(q))
    return ((np.asarray(q, np.int64) - zp).astype(np.float32) * scale).astype(np.float32)


def quantize(x: np.ndarray, quant: dict) -> np.ndarray:
    """ONNX QuantizeLinear: ``saturate(round_half_even(x / scale) + zero_point)``."""
    dtype = quant.get("dtype", "int8")
    if dtype not in INTEGER_DTYPES:
        raise EmulatorFault(f"quantisation dtype {dtype!r} is not one of {list(INTEGER_DTYPES)}", kind="host")
    lo, hi = dtype_range(dtype)
    x = np.asarray(x, np.float32)
    scale = _broadcast_param(np.asarray(quant["scale"], np.float32), quant, x.ndim)
    zp = _broadcast_param(np.asarray(quant["zero_point"], np.int64), quant, x.ndim)
    q = np.rint(x / scale).astype(np.float64) + zp
    return np.clip(q, lo, hi).astype(DTYPES[dtype])


def _axis(axis: int) -> int:
    """Per-sample axis -> axis of the batch-first array (negative axes are unchanged)."""
    return axis + 1 if axis >= 0 else axis


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz & Stegun 7.1.26 in float64: |error| < 1.5e-7, far below any int8/int16
    quantisation step, and vectorised (math.erf would need a Python call per element)."""
    x = np.asarray(x, np.float64)
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _align(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Give ``b`` (batch-first, fewer dims) the rank of ``a`` by inserting axes after the batch."""
    if b.ndim < a.ndim:
        return b.reshape(b.shape[0], *([1] * (a.ndim - b.ndim)), *b.shape[1:])
    return b


def _binary(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample numpy broadcasting of two batch-first arrays (either may have the lower rank:
    a float scale of shape () times a (C,) constant, as dynamic quantisation writes)."""
    return _BINARY[op](_align(b, a), _align(a, b))


def conv_float(x, w, b, attrs, depthwise: bool) -> np.ndarray:
    top, bottom, left, right = attrs.get("padding", (0, 0, 0, 0))
    sy, sx = attrs.get("stride", (1, 1))
    dy, dx = attrs.get("dilation", (1, 1))
    kh, kw = w.shape[:2]
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    windows = sliding_window_view(padded, (dy * (kh - 1) + 1, dx * (kw - 1) + 1), axis=(1, 2))
    windows = windows[:, ::sy, ::sx, :, ::dy, ::dx]            # (N, OH, OW, C, KH, KW)
    if depthwise:
        out = np.einsum("nhwcij,ijc->nhwc", windows, w, optimize=True)
    else:
        out = np.tensordot(windows, np.transpose(w, (2, 0, 1, 3)), axes=([3, 4, 5], [0, 1, 2]))
    return out + (0 if b is None else b)


def _pool(x, attrs, kind: str) -> np.ndarray:
    kh, kw = attrs.get("kernel", (2, 2))
    sy, sx = attrs.get("stride", (kh, kw))
    top, bottom, left, right = attrs.get("padding", (0, 0, 0, 0))
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sy, ::sx]
    if kind == "max":
        return windows.max(axis=(-2, -1))
    if attrs.get("count_include_pad", True):
        return windows.mean(axis=(-2, -1))
    ones = np.pad(np.ones((1, *x.shape[1:3], 1), np.float32), ((0, 0), (top, bottom), (left, right), (0, 0)))
    counts = sliding_window_view(ones, (kh, kw), axis=(1, 2))[:, ::sy, ::sx].sum(axis=(-2, -1))
    return windows.sum(axis=(-2, -1)) / counts


def _pads(pads, ndim: int) -> list[tuple[int, int]]:
    pads = list(pads)
    if pads and not isinstance(pads[0], (list, tuple)):      # ONNX order: begins..., ends...
        half = len(pads) // 2
        pads = list(zip(pads[:half], pads[half:]))
    if len(pads) != ndim - 1:
        raise EmulatorFault(f"pad: {len(pads)} (lo, hi) pairs for a per-sample rank {ndim - 1}",
                            operand="pads", kind="host")
    return [(0, 0)] + [(int(lo), int(hi)) for lo, hi in pads]


def _unary(op: str, x: np.ndarray, attrs: dict) -> np.ndarray:
    if op == "relu":
        return np.maximum(x, 0)
    if op == "clip":
        lo, hi = attrs.get("min"), attrs.get("max")
        return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi)
    if op == "leaky_relu":
        return np.where(x >= 0, x, x * np.float32(attrs.get("alpha", 0.01)))
    if op == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if op == "tanh":
        return np.tanh(x)
    if op == "hardsigmoid":   # ONNX defaults alpha=0.2, beta=0.5 (PyTorch's is alpha=1/6)
        return np.clip(x * np.float32(attrs.get("alpha", 0.2)) + np.float32(attrs.get("beta", 0.5)), 0, 1)
    if op == "hardswish":
        return x * np.clip(x + 3, 0, 6) / 6
    if op == "gelu":          # exact (erf) form, as ONNX Gelu's default and torch.nn.GELU()
        return (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(np.float32)
    if op == "softmax":     # TFLite's beta scales the logits (ONNX has none: 1)
        axis = _axis(attrs.get("axis", -1))
        x = x * np.float32(attrs.get("beta", 1.0))
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    if op == "rescale":
        return x
    if op == "global_avg_pool":
        return x.mean(axis=(1, 2), keepdims=True)
    if op in ("max_pool", "avg_pool"):
        return _pool(x, attrs, op[:3])
    if op == "transpose":
        return np.transpose(x, [0, *(_axis(p) for p in attrs["perm"])])
    if op == "reshape":
        return x.reshape(x.shape[0], *attrs["shape"])
    if op == "pad":
        return np.pad(x, _pads(attrs["pads"], x.ndim), constant_values=np.float32(attrs.get("value", 0.0)))
    if op == "resize":
        sy, sx = attrs.get("scale", (2, 2))
        return np.repeat(np.repeat(x, sy, axis=1), sx, axis=2)
    raise KeyError(op)


def _layernorm(x: np.ndarray, attrs: dict, extra: list[np.ndarray]) -> np.ndarray:
    axis = _axis(attrs.get("axis", -1))
    axis = axis if axis >= 0 else x.ndim + axis
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + np.float32(attrs.get("epsilon", 1e-5)))
    norm_shape = x.shape[axis:]
    gamma = attrs.get("gamma", extra[0][0] if extra else None)
    beta = attrs.get("beta", extra[1][0] if len(extra) > 1 else None)
    if gamma is not None:
        y = y * np.asarray(gamma, np.float32).reshape(norm_shape)
    if beta is not None:
        y = y + np.asarray(beta, np.float32).reshape(norm_shape)
    return y


@lru_cache(maxsize=64)
def _session(op: str, attrs_json: str, domain: str, opset: int, shapes: tuple, dtypes: tuple, n_out: int,
             consts_json: str = "[]", empty: tuple = ()):
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    consts = {int(c[0]): c for c in json.loads(consts_json)}
    names, inits, k = [], [], 0
    for position in range(len(shapes) + len(consts) + len(empty)):
        if position in empty:
            names.append("")
        elif position in consts:
            _, dtype, shape, values = consts[position]
            names.append(f"const{position}")
            inits.append(numpy_helper.from_array(np.asarray(values, dtype).reshape(shape), names[-1]))
        else:
            names.append(f"in{k}")
            k += 1
    outs = [f"out{k}" for k in range(n_out)]
    node = helper.make_node(op, names, outs, domain=domain, **json.loads(attrs_json))
    inputs = [helper.make_tensor_value_info(f"in{i}", helper.np_dtype_to_tensor_dtype(np.dtype(t)), list(s))
              for i, (s, t) in enumerate(zip(shapes, dtypes))]
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    try:
        model = helper.make_model(helper.make_graph([node], f"host_{op}", inputs, [], inits),
                                  opset_imports=imports)
        out_types = _output_types(model, outs)
        model = helper.make_model(helper.make_graph(
            [node], f"host_{op}", inputs, [helper.make_tensor_value_info(n, out_types.get(n, 1), None)
                                           for n in outs], inits), opset_imports=imports)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnx/onnxruntime raise their own types; name the op for the user
        raise EmulatorFault(f"host float_op {op!r} with attributes {attrs_json} cannot be built by "
                            f"onnxruntime: {exc}", operand="onnx_op", kind="host") from exc


def _output_types(model, outs: list[str]) -> dict[str, int]:
    """ONNX element types of a one-node model's outputs (DynamicQuantizeLinear gives uint8 and float),
    by onnx's type inference; unknown types are left to default to float."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    return {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info
            if v.name in outs and v.type.tensor_type.elem_type}


def _float_op(attrs: dict, xs: list[np.ndarray], n_out: int) -> list[np.ndarray]:
    """Run the ONNX operator. With ``attrs["onnx_shapes"]`` (the operands' ONNX shapes of one
    inference) it runs sample by sample, so ops that reduce over the whole tensor -- such as
    DynamicQuantizeLinear's scale -- see one inference, as the lock-step batch semantics demand."""
    op = attrs.get("onnx_op")
    if not op:
        raise EmulatorFault("host float_op needs attrs['onnx_op'] (the ONNX operator type)",
                            operand="onnx_op", kind="host")
    shapes = attrs.get("onnx_shapes")
    if shapes is None:
        return _onnx_run(op, attrs, xs, n_out)
    ins, outs = shapes["in"], shapes["out"]
    if len(ins) != len(xs) or len(outs) != n_out:
        raise EmulatorFault(f"host float_op {op!r}: attrs['onnx_shapes'] lists {len(ins)} inputs and "
                            f"{len(outs)} outputs, the instruction has {len(xs)} and {n_out}",
                            operand="onnx_shapes", kind="host")
    if op in _PER_ELEMENT_ONNX_OPS and all(len(s) >= 1 and s[0] == 1 for s in ins + outs):
        # element by element: the batch may ride on the ONNX batch axis (one call, ~4x faster)
        batch = xs[0].shape[0]
        results = _onnx_run(op, attrs, [x.reshape(batch, *s[1:]) for x, s in zip(xs, ins)], n_out)
        return [np.asarray(r).reshape(batch, *_sample_shape(s)) for r, s in zip(results, outs)]
    per_sample = [_onnx_run(op, attrs, [np.asarray(x[n]).reshape(shape) for x, shape in zip(xs, ins)], n_out)
                  for n in range(xs[0].shape[0] if xs else 0)]
    return [np.stack([np.asarray(sample[k]).reshape(-1) for sample in per_sample])
            .reshape(len(per_sample), *_sample_shape(outs[k])) for k in range(n_out)]


# single-input element-wise ONNX operators: no value depends on another sample of the batch
_PER_ELEMENT_ONNX_OPS = frozenset({
    "Abs", "Acos", "Asin", "Atan", "Ceil", "Celu", "Cos", "Cosh", "Elu", "Erf", "Exp", "Floor", "Gelu",
    "HardSigmoid", "HardSwish", "LeakyRelu", "Log", "Mish", "Neg", "Reciprocal", "Relu", "Round", "Selu",
    "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu",
})


def _sample_shape(shape) -> tuple[int, ...]:
    """An ONNX shape without its batch of 1 (the compiler's per-sample convention)."""
    shape = tuple(int(d) for d in shape)
    return shape[1:] if len(shape) >= 2 and shape[0] == 1 else shape


def _onnx_run(op: str, attrs: dict, xs: list[np.ndarray], n_out: int) -> list[np.ndarray]:
    exact = _EXACT_INTEGER_OPS.get(op)
    if exact is not None:
        return [exact(attrs.get("onnx_attrs", {}), xs)]
    session = _session(op, json.dumps(attrs.get("onnx_attrs", {}), sort_keys=True),
                       attrs.get("onnx_domain", ""), int(attrs.get("opset", 17)),
                       tuple(tuple(x.shape) for x in xs), tuple(str(x.dtype) for x in xs), n_out,
                       json.dumps(attrs.get("onnx_consts", [])), tuple(attrs.get("onnx_empty", ())))
    results = session.run(None, {f"in{i}": x for i, x in enumerate(xs)})
    return [np.asarray(o, np.float32) if np.asarray(o).dtype.kind == "f" else np.asarray(o) for o in results]


def _zero_point(xs: list[np.ndarray], index: int) -> np.ndarray:
    return np.asarray(xs[index], np.float64) if len(xs) > index and xs[index] is not None else np.zeros((), np.float64)


def _conv_integer(onnx_attrs: dict, xs: list[np.ndarray]) -> np.ndarray:
    """ONNX ConvInteger, exactly: ``conv(x - x_zp, w - w_zp)`` in float64 (exact below 2**53).

    onnxruntime's x86 u8s8 kernel sums int8 products pairwise in saturating int16 (pmaddubsw), so
    with full-range weights it is not the operator's definition; the host computes the definition.
    """
    x, w = np.asarray(xs[0], np.float64), np.asarray(xs[1], np.float64)
    x = x - _zero_point(xs, 2)
    w_zp = _zero_point(xs, 3)
    w = w - (w_zp.reshape(-1, 1, 1, 1) if w_zp.ndim else w_zp)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"ConvInteger on a rank-{x.ndim} input: the host computes 2-D convolutions")
    kh, kw = w.shape[2:]
    sy, sx = onnx_attrs.get("strides", (1, 1))
    dy, dx = onnx_attrs.get("dilations", (1, 1))
    auto_pad = onnx_attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in ((x.shape[2], kh, sy, dy), (x.shape[3], kw, sx, dx)):
            total = max(0, (-(-size // s) - 1) * s + (k - 1) * d + 1 - size)
            small = total // 2
            pads.append((total - small, small) if auto_pad == "SAME_LOWER" else (small, total - small))
        top, bottom, left, right = pads[0][0], pads[0][1], pads[1][0], pads[1][1]
    else:
        t, left, b, r = onnx_attrs.get("pads", (0, 0, 0, 0)) if auto_pad == "NOTSET" else (0, 0, 0, 0)
        top, bottom, right = t, b, r
    groups = int(onnx_attrs.get("group", 1))
    nhwc = x.transpose(0, 2, 3, 1)
    cig, per = w.shape[1], w.shape[0] // groups
    window = {"padding": (top, bottom, left, right), "stride": (sy, sx), "dilation": (dy, dx)}
    parts = [conv_float(nhwc[..., g * cig:(g + 1) * cig], w[g * per:(g + 1) * per].transpose(2, 3, 1, 0),
                        None, window, depthwise=False) for g in range(groups)]
    return np.concatenate(parts, axis=-1).transpose(0, 3, 1, 2).astype(np.int32)


def _matmul_integer(onnx_attrs: dict, xs: list[np.ndarray]) -> np.ndarray:
    """ONNX MatMulInteger exactly: ``(a - a_zp) @ (b - b_zp)`` (per-row / per-column zero points)."""
    a = np.asarray(xs[0], np.float64)
    b = np.asarray(xs[1], np.float64)
    a_zp, b_zp = _zero_point(xs, 2), _zero_point(xs, 3)
    a = a - (a_zp.reshape(-1, 1) if a_zp.ndim else a_zp)
    return np.matmul(a, b - b_zp).astype(np.int32)


_EXACT_INTEGER_OPS = {"ConvInteger": _conv_integer, "MatMulInteger": _matmul_integer}


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "min": np.minimum, "max": np.maximum}
_UNARY = ("relu", "clip", "leaky_relu", "sigmoid", "tanh", "hardsigmoid", "hardswish", "gelu", "softmax",
          "rescale", "global_avg_pool", "max_pool", "avg_pool", "transpose", "reshape", "pad", "resize")
OPS = frozenset(_UNARY) | frozenset(_BINARY) | {"matmul", "concat", "layernorm", "conv2d",
                                                "depthwise_conv2d", "fully_connected", "float_op"}


def execute(op: str, attrs: dict[str, Any], inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run ``op`` on integer inputs (batch first); return integer outputs (see module docstring)."""
    if op not in OPS:
        raise EmulatorFault(f"host op {op!r} is not implemented by the host fallback (known: "
                            f"{', '.join(sorted(OPS))}); use float_op to run an ONNX operator",
                            operand=op, kind="unsupported")
    quants = [_quant(attrs, "in_quant", i, op) for i in range(len(inputs))]
    ir_shapes = attrs.get("ir_shapes")
    raw = [np.asarray(x) for x in inputs]
    if ir_shapes is not None:
        raw = _full_shapes(op, raw, ir_shapes)
    # an ONNX operator takes its unquantised integer operands as they are (ConvInteger's uint8), and
    # one that only moves integers of one quantisation (attrs["onnx_integers"]) takes them all so
    integers = op == "float_op" and bool(attrs.get("onnx_integers"))
    xs = [x if (q is None or integers) and op == "float_op" and x.dtype.kind in "iu" else dequantize(x, q)
          for x, q in zip(raw, quants)]
    if ir_shapes is not None and op in _IMAGE_OPS and xs and xs[0].ndim > 4:
        xs[0] = xs[0].reshape(-1, *xs[0].shape[-3:])      # every leading axis holds whole images
    out_quant = attrs.get("out_quant")
    if not isinstance(out_quant, (list, tuple)) or not out_quant:
        raise EmulatorFault(f"host op {op!r} needs attrs['out_quant'] (one quant entry per output)",
                            operand="out_quant", kind="host")
    if not xs:
        raise EmulatorFault(f"host op {op!r} got no inputs", operand="inputs", kind="host")
    if ir_shapes is not None and len(ir_shapes.get("out", [])) != len(out_quant):
        raise EmulatorFault(f"host op {op!r}: attrs['ir_shapes'] lists {len(ir_shapes.get('out', []))} outputs "
                            f"for {len(out_quant)} out_quant entries", operand="ir_shapes", kind="host")
    if op == "softmax" and attrs.get("tflite_int16"):
        # TFLite's integer int16 softmax (the compiler set it for a TFLite-rounding target)
        multiplier, shift = attrs["tflite_int16"]
        y = fixedpoint.softmax_int16(raw[0], int(multiplier), int(shift)).astype(np.int16)
        return [y.reshape(y.shape[0], *_sample_shape(y.shape[1:])) if ir_shapes is not None else y]
    try:
        if op in _UNARY:
            results = [_unary(op, xs[0], attrs)]
        elif op in _BINARY:
            results = [_binary(op, xs[0], xs[1])]
        elif op == "matmul":          # batch-first operands of different ranks align after the batch
            results = [np.matmul(_align(xs[1], xs[0]), _align(xs[0], xs[1]))]
        elif op == "concat":
            results = [np.concatenate(xs, axis=_axis(attrs.get("axis", -1)))]
        elif op == "layernorm":
            results = [_layernorm(xs[0], attrs, xs[1:])]
        elif op in ("conv2d", "depthwise_conv2d"):
            results = [conv_float(xs[0], xs[1][0], xs[2][0] if len(xs) > 2 else None, attrs, op == "depthwise_conv2d")]
        elif op == "fully_connected":
            results = [xs[0] @ xs[1][0] + (xs[2][0] if len(xs) > 2 else 0)]
        else:
            results = _float_op(attrs, xs, len(out_quant))
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise EmulatorFault(f"host op {op!r} failed on input shapes {[x.shape for x in xs]} with attrs "
                            f"{sorted(k for k in attrs if k not in ('in_quant', 'out_quant'))}: {exc!r}",
                            operand=op, kind="host") from exc
    if ir_shapes is not None:
        batch = raw[0].shape[0]
        results = [np.asarray(r).reshape(batch, *shape) for r, shape in zip(results, ir_shapes["out"])]
    if len(results) != len(out_quant):
        raise EmulatorFault(f"host op {op!r} produced {len(results)} outputs but attrs['out_quant'] has "
                            f"{len(out_quant)} entries", operand="out_quant", kind="host")
    stored = [_store(r, None if integers else q) for r, q in zip(results, out_quant)]
    clamp = attrs.get("clamp")
    if clamp is not None and stored:     # a fused Relu/Clip: output domain bounds, None = open
        lo, hi = clamp
        stored[0] = np.clip(stored[0], -np.inf if lo is None else lo, np.inf if hi is None else hi
                            ).astype(stored[0].dtype)
    if ir_shapes is not None:
        stored = [r.reshape(r.shape[0], *_sample_shape(r.shape[1:])) for r in stored]
    return stored


_IMAGE_OPS = frozenset({"conv2d", "depthwise_conv2d", "max_pool", "avg_pool", "global_avg_pool", "resize"})


def _full_shapes(op: str, xs: list[np.ndarray], ir_shapes: dict) -> list[np.ndarray]:
    """Batch-first operands in their full IR shapes (``attrs["ir_shapes"]``), so axis-like attrs
    and per-channel quantisation axes mean what they mean in the IR, even where a leading axis of 1
    is not a batch axis."""
    shapes = ir_shapes.get("in", [])
    if len(shapes) != len(xs):
        raise EmulatorFault(f"host op {op!r}: attrs['ir_shapes'] lists {len(shapes)} inputs, the instruction "
                            f"has {len(xs)}", operand="ir_shapes", kind="host")
    out = []
    for x, shape in zip(xs, shapes):
        if int(np.prod(shape, dtype=np.int64)) != int(np.prod(x.shape[1:], dtype=np.int64)):
            raise EmulatorFault(f"host op {op!r}: operand of shape {list(x.shape[1:])} is not the IR "
                                f"shape {shape}", operand="ir_shapes", kind="host")
        out.append(x.reshape(x.shape[0], *shape))
    return out


def _store(result: np.ndarray, quant: dict | None) -> np.ndarray:
    """Quantise a result, or (``quant`` None: a float32 or unquantised integer tensor) keep it."""
    if quant is not None:
        return quantize(result, quant)
    result = np.asarray(result)
    return result.astype(np.float32) if result.dtype.kind == "f" else result


# float operations per output element of ONNX operators far cheaper than a transcendental
# (DynamicQuantizeLinear: a min and a max over the tensor; its quantise is QUANTIZE_OPS)
_CHEAP_ONNX_OPS = {"Cast": 1, "DynamicQuantizeLinear": 2 + QUANTIZE_OPS}


def _elements(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape is not None else 0


def count_ops(op: str, attrs: dict[str, Any], input_shapes, output_shapes) -> int:
    """Float operations of one inference of ``op`` (per-sample shapes; see module docstring)."""
    ins = sum(_elements(s) for s in input_shapes)
    outs = sum(_elements(s) for s in output_shapes)
    first_in = tuple(input_shapes[0]) if input_shapes else ()
    per_output = {
        "relu": 1, "clip": 2, "leaky_relu": 2, "hardsigmoid": 3, "hardswish": 4, "rescale": 0,
        "sigmoid": TRANSCENDENTAL_OPS + 2, "tanh": TRANSCENDENTAL_OPS, "gelu": TRANSCENDENTAL_OPS + 4,
        "softmax": TRANSCENDENTAL_OPS + 3,   # max, exp, sum, divide
        "layernorm": 8,                      # mean, centre, square, mean, normalise, scale, shift
        "transpose": 1, "reshape": 0, "concat": 1, "pad": 1, "resize": 1,
        "add": 1, "sub": 1, "mul": 1, "min": 1, "max": 1, "float_op": TRANSCENDENTAL_OPS,
    }
    core: int
    onnx_op = attrs.get("onnx_op") if op == "float_op" else None
    if onnx_op == "ConvInteger" and len(input_shapes) > 1 and len(input_shapes[1]) == 4:
        core = 2 * int(np.prod(tuple(input_shapes[1])[1:])) * outs     # (M, C/group, KH, KW) weights
    elif onnx_op == "MatMulInteger" and len(first_in) >= 1:
        core = 2 * first_in[-1] * outs
    elif onnx_op in _CHEAP_ONNX_OPS:
        core = _CHEAP_ONNX_OPS[onnx_op] * outs
    elif op in per_output:
        core = per_output[op] * outs
    elif op == "matmul" and len(first_in) >= 1:
        core = 2 * first_in[-1] * outs
    elif op == "fully_connected" and len(input_shapes) > 1:
        core = 2 * tuple(input_shapes[1])[0] * outs
    elif op == "conv2d" and len(input_shapes) > 1:
        kh, kw, cin = tuple(input_shapes[1])[:3]
        core = 2 * kh * kw * cin * outs
    elif op == "depthwise_conv2d" and len(input_shapes) > 1:
        kh, kw = tuple(input_shapes[1])[:2]
        core = 2 * kh * kw * outs
    elif op in ("max_pool", "avg_pool"):
        kh, kw = attrs.get("kernel", (2, 2))
        core = kh * kw * outs
    elif op == "global_avg_pool":
        core = _elements(first_in) + outs
    else:
        raise EmulatorFault(f"host op {op!r} has no cost model (known: {', '.join(sorted(OPS))})",
                            operand=op, kind="unsupported")
    # float32 operands (quant entry None) are neither dequantised nor quantised
    quantised_in = _quantised_elements(attrs.get("in_quant"), input_shapes, ins)
    quantised_out = _quantised_elements(attrs.get("out_quant"), output_shapes, outs)
    return int(core + DEQUANTIZE_OPS * quantised_in + QUANTIZE_OPS * quantised_out)


def _quantised_elements(quants, shapes, every: int) -> int:
    """Elements of the operands that have a quant entry (all of them when no list is given)."""
    if not isinstance(quants, (list, tuple)) or len(quants) != len(shapes):
        return every
    return sum(_elements(s) for s, q in zip(shapes, quants) if q is not None)
