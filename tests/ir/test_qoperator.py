"""QOperator form (QLinearConv, QLinearMatMul, com.microsoft QLinear*/QGemm) built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ir_eval import run_ir
from onnx import TensorProto, helper, numpy_helper

from pytest_npu.ir import from_onnx

RNG = np.random.default_rng(3)
N = helper.make_node


def _c(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _model(nodes, x_shape, inits, ms=False):
    graph = helper.make_graph(nodes, "qop", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    m = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    shape = sess.get_outputs()[0].shape
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, shape))
    return m


def _io():
    """Q on the input, DQ on the output: the boundary of every QOperator model."""
    return ([N("QuantizeLinear", ["x", "xs", "xz"], ["xq"])], [N("DequantizeLinear", ["yq", "ys", "yz"], ["y"])],
            [_c("xs", np.float32(0.02)), _c("xz", np.uint8(128)), _c("ys", np.float32(0.05)),
             _c("yz", np.uint8(120))])


def _conv():
    pre, post, inits = _io()
    # 7-bit weights: ORT's x86 u8s8 kernels saturate int16 pair sums with full-range weights
    # (the reason for its reduce_range option), which would be ORT's error, not the import's
    w = RNG.integers(-63, 64, (6, 4, 3, 3)).astype(np.int8)
    nodes = pre + [N("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"],
                     pads=[1, 1, 1, 1], strides=[2, 2])] + post
    inits += [_c("w", w), _c("ws", (RNG.random(6) * 0.004 + 0.001).astype(np.float32)),
              _c("wz", np.zeros(6, np.int8)), _c("b", RNG.integers(-500, 500, 6).astype(np.int32))]
    return _model(nodes, [1, 4, 7, 7], inits), "conv2d"


def _matmul():
    pre, post, inits = _io()
    nodes = pre + [N("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"])] + post
    inits += [_c("w", RNG.integers(0, 255, (16, 5)).astype(np.uint8)), _c("ws", np.float32(0.01)),
              _c("wz", np.uint8(127))]
    return _model(nodes, [1, 16], inits), "fully_connected"


def _qgemm():
    pre, post, inits = _io()
    nodes = pre + [N("QGemm", ["xq", "xs", "xz", "w", "ws", "wz", "b", "ys", "yz"], ["yq"],
                     domain="com.microsoft", transB=1)] + post
    inits += [_c("w", RNG.integers(-63, 64, (5, 16)).astype(np.int8)),
              _c("ws", (RNG.random(5) * 0.01 + 0.002).astype(np.float32)), _c("wz", np.zeros(5, np.int8)),
              _c("b", RNG.integers(-300, 300, 5).astype(np.int32))]
    return _model(nodes, [1, 16], inits, ms=True), "fully_connected"


def _add_sigmoid_pool_concat():
    pre, post, inits = _io()
    nodes = pre + [
        N("QLinearAdd", ["xq", "xs", "xz", "xq", "xs", "xz", "as", "az"], ["a"], domain="com.microsoft"),
        N("QLinearSigmoid", ["a", "as", "az", "ss", "sz"], ["s"], domain="com.microsoft"),
        N("QLinearGlobalAveragePool", ["s", "ss", "sz", "ss", "sz"], ["g"], domain="com.microsoft"),
        N("QLinearAveragePool", ["s", "ss", "sz", "ss", "sz"], ["p"], domain="com.microsoft",
          kernel_shape=[3, 3], strides=[3, 3]),
        N("QLinearMul", ["p", "ss", "sz", "g", "ss", "sz", "ms", "mz"], ["m"], domain="com.microsoft"),
        N("QLinearLeakyRelu", ["m", "ms", "mz", "ys", "yz"], ["l"], domain="com.microsoft", alpha=0.2),
        N("QLinearConcat", ["ys", "yz", "l", "ys", "yz", "l", "ys", "yz"], ["yq"], domain="com.microsoft",
          axis=1),
    ] + post
    inits += [_c("as", np.float32(0.04)), _c("az", np.uint8(128)), _c("ss", np.float32(1 / 256)),
              _c("sz", np.uint8(0)), _c("ms", np.float32(0.004)), _c("mz", np.uint8(10))]
    return _model(nodes, [1, 3, 6, 6], inits, ms=True), "concat"


@pytest.mark.parametrize("build", [_conv, _matmul, _qgemm, _add_sigmoid_pool_concat])
def test_qoperator_matches_onnxruntime(build):
    m, op = build()
    graph = from_onnx(m)
    assert op in {n.op for n in graph.nodes}
    assert graph.input_quant["x"].dtype == "uint8" and "y" in graph.output_quant
    x = np.random.default_rng(5).standard_normal([d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim])
    x = x.astype(np.float32)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    got = run_ir(graph, {"x": x})["y"]
    lsb = np.abs(got - want) / float(graph.output_quant["y"].scale)
    assert lsb.max() <= 1.01, f"{lsb.max():.2f} LSB"


def test_qlinearconv_weights_per_channel_in_ir_layout():
    m, _ = _conv()
    graph = from_onnx(m)
    conv = next(n for n in graph.nodes if n.op == "conv2d")
    w = graph.tensors[conv.inputs[1]]
    original = numpy_helper.to_array(next(t for t in m.graph.initializer if t.name == "w"))
    np.testing.assert_array_equal(w.data, original.transpose(2, 3, 1, 0))
    assert w.quant.axis == 3 and w.quant.scale.shape == (6,)
    b = graph.tensors[conv.inputs[2]]
    np.testing.assert_allclose(b.quant.scale, 0.02 * w.quant.scale, rtol=1e-6)
    assert onnx.checker.check_model(m) is None
