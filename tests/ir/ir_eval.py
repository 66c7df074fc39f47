"""A tiny float evaluator of the IR, used only to prove the import right.

Each node dequantises its inputs, runs the float op in NHWC and quantises its output (applying the
integer clamp). Comparing its outputs with onnxruntime on the original model checks layout,
weight permutation and every quant parameter the importer produced.
"""

from __future__ import annotations

import math

import numpy as np

try:
    from scipy.special import erf
except ImportError:            # scipy comes with the [torch] extra; the base install lacks it
    erf = np.vectorize(math.erf, otypes=[np.float64])

from pytest_npu.ir import Graph, QuantParams


def _real(value: np.ndarray, qp: QuantParams | None) -> np.ndarray:
    if qp is None:
        return np.asarray(value, np.float64)
    scale, zp = qp.scale.astype(np.float64), qp.zero_point
    if qp.axis is not None and scale.ndim == 1:
        shape = [1] * np.ndim(value)
        shape[qp.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (np.asarray(value, np.int64) - zp) * scale


def _store(real: np.ndarray, qp: QuantParams | None, clamp) -> np.ndarray:
    if qp is None:
        out = np.asarray(real, np.float32)
        return np.clip(out, clamp[0], clamp[1]) if clamp is not None else out
    info = np.iinfo(np.dtype(qp.dtype))
    q = np.rint(np.asarray(real, np.float64) / qp.scale.astype(np.float64)) + qp.zero_point
    lo, hi = (info.min, info.max) if clamp is None else (max(info.min, clamp[0]), min(info.max, clamp[1]))
    return np.clip(q, lo, hi).astype(qp.dtype)


def _windows(x: np.ndarray, kernel, stride, dilation, padding, fill):
    """Yield (i, j, view) for every kernel tap: strided views of the padded input, one per tap."""
    top, bottom, left, right = padding
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    kh, kw = kernel
    oh = (xp.shape[1] - ((kh - 1) * dilation[0] + 1)) // stride[0] + 1
    ow = (xp.shape[2] - ((kw - 1) * dilation[1] + 1)) // stride[1] + 1
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dilation[0], j * dilation[1]
            yield i, j, xp[:, y0:y0 + stride[0] * (oh - 1) + 1:stride[0],
                           x0:x0 + stride[1] * (ow - 1) + 1:stride[1], :]


def _op(node, ins: list[np.ndarray], graph: Graph, raw: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    op = node.op
    if op in ("conv2d", "depthwise_conv2d"):
        x, w, b = ins
        acc = None
        for i, j, view in _windows(x, w.shape[:2], a["stride"], a["dilation"], a["padding"], 0.0):
            term = view @ w[i, j] if op == "conv2d" else view * w[i, j]
            acc = term if acc is None else acc + term
        return [acc + b]
    if op == "fully_connected":
        x, w, b = ins
        return [x @ w + b]
    if op == "matmul":
        return [np.matmul(ins[0], ins[1])]
    if op in ("add", "sub", "mul", "min", "max"):
        fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "min": np.minimum,
              "max": np.maximum}[op]
        return [fn(ins[0], ins[1])]
    if op == "max_pool":
        res = None
        for _, _, view in _windows(ins[0], a["kernel"], a["stride"], (1, 1), a["padding"], -np.inf):
            res = view if res is None else np.maximum(res, view)
        return [res]
    if op == "avg_pool":
        total = sum(v for _, _, v in _windows(ins[0], a["kernel"], a["stride"], (1, 1), a["padding"], 0.0))
        if a["count_include_pad"]:
            count = a["kernel"][0] * a["kernel"][1]
        else:
            ones = np.ones_like(ins[0][..., :1])
            count = sum(v for _, _, v in _windows(ones, a["kernel"], a["stride"], (1, 1), a["padding"], 0.0))
        return [total / count]
    if op == "global_avg_pool":
        return [ins[0].mean(axis=(1, 2), keepdims=True)]
    if op == "reshape":
        return [ins[0].reshape(a["shape"])]
    if op == "transpose":
        return [ins[0].transpose(a["perm"])]
    if op == "concat":
        return [np.concatenate(ins, axis=a["axis"])]
    if op == "pad":
        qp = graph.tensors[node.inputs[0]].quant
        value = float(_real(np.asarray(a["value"]), qp)) if qp is not None else a["value"]
        return [np.pad(ins[0], a["pads"], constant_values=value)]
    if op == "resize":
        sy, sx = a["scale"]
        return [np.repeat(np.repeat(ins[0], sy, axis=1), sx, axis=2)]
    if op == "softmax":
        e = np.exp(ins[0] - ins[0].max(axis=a["axis"], keepdims=True))
        return [e / e.sum(axis=a["axis"], keepdims=True)]
    if op == "sigmoid":
        return [1 / (1 + np.exp(-ins[0]))]
    if op == "tanh":
        return [np.tanh(ins[0])]
    if op == "hardswish":
        return [ins[0] * np.clip(ins[0] + 3, 0, 6) / 6]
    if op == "hardsigmoid":
        return [np.clip(a["alpha"] * ins[0] + a["beta"], 0, 1)]
    if op == "leaky_relu":
        return [np.where(ins[0] >= 0, ins[0], a["alpha"] * ins[0])]
    if op == "gelu":
        return [0.5 * ins[0] * (1 + erf(ins[0] / np.sqrt(2)))]
    if op == "relu":
        return [np.maximum(ins[0], 0)]
    if op == "clip":
        return [np.clip(ins[0], a["min"], a["max"])]
    if op == "layernorm":
        x, gamma, beta = ins
        axes = tuple(range(a["axis"], x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        return [(x - mean) / np.sqrt(var + a["epsilon"]) * gamma + beta]
    if op == "rescale":
        return [ins[0]]
    if op == "float_op":
        return _float_op(node, raw, graph)
    raise AssertionError(f"ir_eval has no rule for {op}")


def _float_op(node, raw: list[np.ndarray], graph: Graph) -> list[np.ndarray]:
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if x else "" for k, x in enumerate(node.inputs)]   # "" = an omitted input
    consts = {int(c[0]): c for c in node.attrs.get("onnx_consts", [])}   # int64 axes and the like
    inits = []
    for k, (position, dtype, shape, values) in consts.items():
        names[position] = f"c{k}"
        inits.append(numpy_helper.from_array(np.asarray(values, dtype).reshape(shape), f"c{k}"))
    outs = [f"o{k}" for k in range(len(node.outputs))]
    onnx_node = helper.make_node(node.attrs["onnx_op"], names, outs, **node.attrs["onnx_attrs"])
    feeds = {n: v for n, v in zip(names, raw) if n and n.startswith("i")}
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), None)
              for n, v in feeds.items()]
    outputs = [helper.make_tensor_value_info(o, 0, None) for o in outs]
    model = helper.make_model(helper.make_graph([onnx_node], "f", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", graph.metadata["opset"])])
    return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, feeds)]


def run_ir(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``graph`` on float ONNX-layout inputs; return dequantised ONNX-layout outputs."""
    values: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        x = np.asarray(feeds[name])
        perm = graph.boundary(name).perm
        if perm is not None:
            x = x.transpose(perm)
        qp = graph.boundary(name).quant
        values[name] = qp.quantize(x) if qp is not None else x.astype(graph.tensors[name].dtype)
    for name, t in graph.tensors.items():
        if t.is_constant:
            values[name] = t.data
    for node in graph.nodes:
        raw = [values[x] if x else None for x in node.inputs]
        if node.op == "float_op":
            reals = raw
        else:
            reals = [_real(values[x], graph.tensors[x].quant) for x in node.inputs]
        results = _op(node, reals, graph, raw)
        for name, res in zip(node.outputs, results):
            t = graph.tensors[name]
            if node.op == "float_op":
                values[name] = np.asarray(res).astype(t.dtype)
            else:
                values[name] = _store(res, t.quant, node.attrs.get("clamp"))
    result = {}
    for name in graph.outputs:
        real = _real(values[name], graph.tensors[name].quant).astype(np.float32)
        perm = graph.boundary(name).perm
        if perm is not None:
            real = real.transpose(np.argsort(perm))
        result[name] = real
    return result
