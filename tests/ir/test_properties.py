"""Property tests: random convolution/pooling geometry and random layout shuffles, imported and
run by the IR evaluator, must agree with onnxruntime (layout, padding and weight permutation)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ir_eval import run_ir
from onnx import TensorProto, helper, numpy_helper

from pytest_npu.ir import from_onnx

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _run_both(nodes, x_shape, inits, seed):
    graph = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    m.graph.output[0].CopyFrom(inferred.graph.output[0])
    x = np.random.default_rng(seed).standard_normal(x_shape).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(m.SerializeToString(), options).run(None, {"x": x})[0]
    return from_onnx(m), run_ir(from_onnx(m), {"x": x})["y"], want


@st.composite
def conv_geometry(draw):
    c_in = draw(st.sampled_from([1, 2, 4]))
    groups = draw(st.sampled_from(sorted({1, c_in, max(1, c_in // 2)})))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers((kh - 1) * dh + 1, 9))
    w = draw(st.integers((kw - 1) * dw + 1, 9))
    auto = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        dh = dw = 1          # ONNX Runtime rejects dilation with SAME padding
    return dict(c_in=c_in, c_out=c_out, groups=groups, kernel=(kh, kw), strides=(sh, sw),
                dilations=(dh, dw), h=h, w=w, auto=auto, pads=pads)


@SETTINGS
@given(conv_geometry(), st.sampled_from(["none", "max", "avg", "avg_incl"]), st.integers(0, 2**16))
def test_conv_and_pool_geometry(g, pool, seed):
    rng = np.random.default_rng(seed)
    attrs = dict(group=g["groups"], kernel_shape=list(g["kernel"]), strides=list(g["strides"]),
                 dilations=list(g["dilations"]))
    if g["auto"] == "NOTSET":
        attrs["pads"] = g["pads"]
    else:
        attrs["auto_pad"] = g["auto"]
    w = rng.standard_normal((g["c_out"], g["c_in"] // g["groups"], *g["kernel"])).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if pool != "none" else "y"], **attrs)]
    inits = {"w": w, "b": rng.standard_normal(g["c_out"]).astype(np.float32)}
    if pool != "none":
        op = "MaxPool" if pool == "max" else "AveragePool"
        extra = {"count_include_pad": 1} if pool == "avg_incl" else {}
        nodes.append(helper.make_node(op, ["c"], ["y"], kernel_shape=[2, 2], pads=[1, 0, 0, 1], **extra))
    try:
        _, got, want = _run_both(nodes, [1, g["c_in"], g["h"], g["w"]], inits, seed)
    except onnx.shape_inference.InferenceError:
        return      # geometry with an empty output: nothing to compare
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(st.permutations([0, 1, 2, 3]), st.sampled_from([(2, 3, 4), (1, 6, 4), (3, 1, 8)]),
       st.booleans(), st.integers(0, 2**16))
def test_transpose_then_reshape_keeps_onnx_semantics(perm, chw, to_2d, seed):
    c, h, w = chw
    shape = np.array([1, c, h, w])[list(perm)]
    if to_2d:
        target = np.array([1, -1], np.int64)
    else:      # a 4-D reshape that regroups axes: only correct if NCHW order is restored first
        total = int(np.prod(shape))
        target = np.array([1, 2, total // 4, 2] if total % 4 == 0 else [1, 1, total, 1], np.int64)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=list(perm)),
             helper.make_node("Reshape", ["t", "s"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    graph, got, want = _run_both(nodes, [1, c, h, w], {"s": target}, seed)
    np.testing.assert_array_equal(got, want)
