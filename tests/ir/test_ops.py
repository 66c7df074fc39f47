"""Every supported ONNX op, imported from small onnx.helper graphs in float and in QDQ form
(quantised by onnxruntime's own quantiser), and run by the IR evaluator against onnxruntime."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ir_eval import run_ir
from onnx import TensorProto, helper, numpy_helper

from pytest_npu.ir import OPS, from_onnx

RNG = np.random.default_rng(7)


def _w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def model(nodes, inputs, inits=None, outputs=("y",), opset=20, ms=False):
    graph = helper.make_graph(
        nodes, "case",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    m = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    inferred = onnx.shape_inference.infer_shapes(m)          # give the outputs their types, as
    known = {v.name: v for v in inferred.graph.output}        # exporters do
    for out in m.graph.output:
        if out.name in known:
            out.CopyFrom(known[out.name])
    return m


N = helper.make_node
X4 = {"x": [1, 4, 6, 6]}


def conv(name, x, y, w, b=None, **attrs):
    return N("Conv", [x, w] + ([b] if b else []), [y], name=name, **attrs)


# case name -> (model, IR ops that must appear)
CASES = {
    "conv_stride_asym_pads": (model([conv("c", "x", "y", "w", "b", strides=[2, 2], pads=[0, 1, 1, 2])],
                                    X4, {"w": _w(5, 4, 3, 3), "b": _w(5)}), {"conv2d"}),
    "conv_dilation_relu": (model([conv("c", "x", "h", "w", "b", dilations=[2, 2], pads=[2, 2, 2, 2]),
                                  N("Relu", ["h"], ["y"])], X4, {"w": _w(5, 4, 3, 3), "b": _w(5)}),
                           {"conv2d"}),
    "conv_same_upper": (model([conv("c", "x", "y", "w", "b", strides=[2, 2], auto_pad="SAME_UPPER")],
                              X4, {"w": _w(3, 4, 2, 2), "b": _w(3)}), {"conv2d"}),
    "conv_same_lower": (model([conv("c", "x", "y", "w", auto_pad="SAME_LOWER")],
                              X4, {"w": _w(3, 4, 2, 2)}), {"conv2d"}),
    "conv_valid": (model([conv("c", "x", "y", "w", "b", auto_pad="VALID")], X4,
                         {"w": _w(6, 4, 3, 3), "b": _w(6)}), {"conv2d"}),
    "conv_depthwise": (model([conv("c", "x", "y", "w", "b", group=4, pads=[1, 1, 1, 1])], X4,
                             {"w": _w(4, 1, 3, 3), "b": _w(4)}), {"depthwise_conv2d"}),
    "conv_grouped": (model([conv("c", "x", "y", "w", "b", group=2, pads=[1, 1, 1, 1])], X4,
                           {"w": _w(6, 2, 3, 3), "b": _w(6)}), {"conv2d"}),
    "flatten_gemm_transb": (model([N("Flatten", ["x"], ["f"], axis=1),
                                   N("Gemm", ["f", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)],
                                  X4, {"w": _w(7, 144, scale=0.1), "b": _w(7)}),
                            {"fully_connected", "reshape"}),
    "reshape_gemm": (model([N("Reshape", ["x", "s"], ["f"]), N("Gemm", ["f", "w", "b"], ["y"])],
                           X4, {"s": np.array([1, -1], np.int64), "w": _w(144, 5, scale=0.1),
                                "b": _w(5)}), {"fully_connected"}),
    "matmul_const": (model([N("Reshape", ["x", "s"], ["f"]), N("MatMul", ["f", "w"], ["y"])],
                           X4, {"s": np.array([1, 144], np.int64), "w": _w(144, 5, scale=0.1)}),
                     {"fully_connected"}),
    "matmul_3d": (model([N("MatMul", ["x", "w"], ["y"])], {"x": [1, 3, 8]}, {"w": _w(8, 5)}),
                  {"fully_connected"}),
    "matmul_activations": (model([N("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
                                  N("MatMul", ["x", "t"], ["y"])], {"x": [1, 3, 8]}), {"matmul"}),
    "add_channel_const": (model([N("Add", ["x", "c"], ["y"])], X4, {"c": _w(4, 1, 1)}), {"add"}),
    "mul_sub_consts": (model([N("Mul", ["x", "c"], ["m"]), N("Sub", ["m", "d"], ["y"])], X4,
                             {"c": _w(1, 4, 1, 1), "d": _w(6)}), {"mul", "sub"}),
    "residual_add": (model([conv("c", "x", "h", "w", "b", pads=[1, 1, 1, 1]), N("Add", ["h", "x"], ["y"])],
                           X4, {"w": _w(4, 4, 3, 3), "b": _w(4)}), {"conv2d", "add"}),
    "min_max_div": (model([N("Min", ["x", "c"], ["a"]), N("Max", ["a", "d"], ["m"]),
                           N("Div", ["m", "e"], ["y"])], X4,
                          {"c": np.float32(0.8), "d": np.float32(-0.5), "e": np.float32(2.0)}),
                    {"min", "max", "mul"}),
    "unary_chain": (model([N("Sigmoid", ["x"], ["a"]), N("Tanh", ["x"], ["b"]),
                           N("HardSwish", ["x"], ["c"]), N("HardSigmoid", ["x"], ["d"], alpha=0.3),
                           N("LeakyRelu", ["x"], ["e"], alpha=0.1), N("Gelu", ["x"], ["f"]),
                           N("Concat", ["a", "b", "c", "d", "e", "f"], ["y"], axis=1)], X4),
                    {"sigmoid", "tanh", "hardswish", "hardsigmoid", "leaky_relu", "gelu", "concat"}),
    "clip_relu_standalone": (model([N("Clip", ["x", "lo", "hi"], ["a"]), N("Relu", ["x"], ["b"]),
                                    N("Add", ["a", "b"], ["y"])], X4,
                                   {"lo": np.float32(-0.3), "hi": np.float32(0.6)}),
                             {"clip", "relu", "add"}),
    "erf_gelu_pattern": (model([N("Div", ["x", "r2"], ["d"]), N("Erf", ["d"], ["e"]),
                                N("Add", ["e", "one"], ["a"]), N("Mul", ["x", "a"], ["m"]),
                                N("Mul", ["m", "half"], ["y"])], X4,
                               {"r2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5)}),
                         {"gelu"}),
    "erf_gelu_half_first": (model([N("Mul", ["x", "half"], ["h"]), N("Mul", ["x", "r"], ["d"]),
                                   N("Erf", ["d"], ["e"]), N("Add", ["one", "e"], ["a"]),
                                   N("Mul", ["h", "a"], ["y"])], X4,
                                  {"r": np.float32(1 / np.sqrt(2)), "one": np.float32(1),
                                   "half": np.float32(0.5)}), {"gelu"}),
    "erf_alone_on_host": (model([N("Erf", ["x"], ["y"])], X4), {"float_op"}),
    "reduce_mean_hw": (model([N("ReduceMean", ["x", "ax"], ["y"], keepdims=0)], X4,
                             {"ax": np.array([-1, -2], np.int64)}), {"global_avg_pool", "reshape"}),
    "reduce_mean_channels_host": (model([N("ReduceMean", ["x", "ax"], ["m"]), N("Sub", ["x", "m"], ["y"])],
                                        X4, {"ax": np.array([1], np.int64)}), {"float_op", "sub"}),
    "maxpool_pads": (model([N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1])], X4), {"max_pool"}),
    "maxpool_ceil": (model([N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                              ceil_mode=1)], {"x": [1, 4, 5, 5]}), {"max_pool"}),
    "avgpool_exclude_pad": (model([N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3],
                                     pads=[1, 1, 1, 1])], X4), {"avg_pool"}),
    "avgpool_include_pad": (model([N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                     pads=[1, 1, 1, 1], count_include_pad=1)], X4), {"avg_pool"}),
    "gap_squeeze_gemm": (model([N("GlobalAveragePool", ["x"], ["g"]),
                                N("Squeeze", ["g", "ax"], ["s"]),
                                N("Gemm", ["s", "w", "b"], ["y"], transB=1)], X4,
                               {"ax": np.array([2, 3], np.int64), "w": _w(3, 4), "b": _w(3)}),
                         {"global_avg_pool", "fully_connected"}),
    "unsqueeze_to_4d": (model([N("Unsqueeze", ["x", "ax"], ["u"]), N("Relu", ["u"], ["y"])],
                              {"x": [1, 4, 6]}, {"ax": np.array([2], np.int64)}), {"reshape"}),
    "reshape_4d_mixing": (model([N("Reshape", ["x", "s"], ["y"])], X4,
                                {"s": np.array([1, 2, 12, 6], np.int64)}), {"reshape", "transpose"}),
    "transpose_4d": (model([N("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), N("Relu", ["t"], ["y"])],
                           {"x": [1, 4, 5, 6]}), {"transpose"}),
    "transpose_to_nhwc_flatten": (model([N("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                                         N("Reshape", ["t", "s"], ["y"])], X4,
                                        {"s": np.array([1, -1], np.int64)}), {"reshape"}),
    "concat_h_axis": (model([N("Concat", ["x", "x"], ["y"], axis=2)], X4), {"concat"}),
    "pad_constant": (model([N("Pad", ["x", "p", "v"], ["y"])], X4,
                           {"p": np.array([0, 0, 1, 2, 0, 1, 0, 1], np.int64), "v": np.float32(0.25)}),
                     {"pad"}),
    "resize_nearest_asym": (model([N("Resize", ["x", "", "sc"], ["y"], mode="nearest",
                                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                                  X4, {"sc": np.array([1, 1, 2, 2], np.float32)}), {"resize"}),
    "resize_nearest_half_pixel": (model([N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest")],
                                        X4, {"sz": np.array([1, 4, 12, 18], np.int64)}), {"resize"}),
    "softmax_channels": (model([N("Softmax", ["x"], ["y"], axis=1)], X4), {"softmax"}),
    "softmax_2d": (model([N("Flatten", ["x"], ["f"]), N("Softmax", ["f"], ["y"])], X4),
                   {"softmax"}),
    "batchnorm_standalone": (model([N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])], X4,
                                   {"s": _w(4) + 1, "b": _w(4), "m": _w(4), "v": np.abs(_w(4)) + 0.5}),
                             {"mul", "add"}),
    "conv_bn_folded": (model([conv("c", "x", "h", "w", "b"),
                              N("BatchNormalization", ["h", "s", "bb", "m", "v"], ["y"])], X4,
                             {"w": _w(3, 4, 3, 3), "b": _w(3), "s": _w(3) + 1, "bb": _w(3), "m": _w(3),
                              "v": np.abs(_w(3)) + 0.5}), {"conv2d"}),
    "identity_dropout": (model([N("Identity", ["x"], ["a"]), N("Dropout", ["a"], ["b"]),
                                N("Relu", ["b"], ["y"])], X4), {"relu"}),
    "layernorm_last_axis": (model([N("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)],
                                  {"x": [1, 3, 8]}, {"g": _w(8) + 1, "b": _w(8)}), {"layernorm"}),
    "layernorm_chw": (model([N("LayerNormalization", ["x", "g", "b"], ["y"], axis=1)], X4,
                            {"g": _w(4, 6, 6) + 1, "b": _w(4, 6, 6)}), {"layernorm"}),
    "layernorm_w_axis_4d": (model([N("LayerNormalization", ["x", "g"], ["y"], axis=3)], X4,
                                  {"g": _w(6) + 1}), {"layernorm", "transpose"}),
    "shape_gather_reshape": (model([N("Shape", ["x"], ["sh"]), N("Gather", ["sh", "zero"], ["n"], axis=0),
                                    N("Unsqueeze", ["n", "ax0"], ["nn"]),
                                    N("Concat", ["nn", "minus1"], ["s"], axis=0),
                                    N("Reshape", ["x", "s"], ["f"]), N("Gemm", ["f", "w"], ["y"])],
                                   {"x": ["batch", 4, 6, 6]},
                                   {"zero": np.array(0, np.int64), "ax0": np.array([0], np.int64),
                                    "minus1": np.array([-1], np.int64), "w": _w(144, 3, scale=0.1)}),
                             {"fully_connected"}),
    "constant_node": (model([N("Constant", [], ["c"], value=numpy_helper.from_array(_w(1, 4, 1, 1))),
                             N("Add", ["x", "c"], ["y"])], X4), {"add"}),
}


def _ort(m: onnx.ModelProto, feeds: dict) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _feeds(m: onnx.ModelProto, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for i in m.graph.input:
        dims = [d.dim_value or 1 for d in i.type.tensor_type.shape.dim]
        out[i.name] = rng.standard_normal(dims).astype(np.float32)
    return out


# onnxruntime's quantiser itself fails on a per-channel LayerNormalization scale
PER_TENSOR_ONLY = {"layernorm_chw", "layernorm_last_axis", "layernorm_w_axis_4d"}


def _quantise(m: onnx.ModelProto, tmp_path, name: str) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([_feeds(m, seed) for seed in range(4)])

        def get_next(self):
            return next(self.data, None)

    logging.getLogger().setLevel(logging.ERROR)
    src, dst = tmp_path / f"{name}.onnx", tmp_path / f"{name}_qdq.onnx"
    onnx.save(m, src)
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=name not in PER_TENSOR_ONLY,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return onnx.load(dst)


def test_every_supported_op_is_imported_somewhere():
    """The cases here plus the real/QOperator models cover the whole supported list."""
    from pytest_npu.ir.onnx_import import SUPPORTED_OPS

    seen = {n.op_type for m, _ in CASES.values() for n in m.graph.node}
    elsewhere = {  # covered by test_real_models / test_qoperator / test_qdq_patterns
        "QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
        "MatMulInteger", "DynamicQuantizeLinear", "Cast",
        # host-only ONNX ops: tests/corpus runs ONNX's own node cases of each
        "Gather", "Slice", "Expand", "Where", "Equal", "Not", "Floor", "Ceil", "Sqrt", "Neg", "Abs", "Pow",
        "ReduceProd"}
    assert SUPPORTED_OPS - seen - elsewhere == set()


@pytest.mark.parametrize("case", sorted(CASES))
def test_float_op_matches_onnxruntime(case):
    m, expect = CASES[case]
    graph = from_onnx(m)
    ops = {n.op for n in graph.nodes}
    assert expect <= ops, f"{case}: {ops}"
    assert ops <= set(OPS)
    feeds = _feeds(m, 11)
    want = _ort(m, feeds)
    got = run_ir(graph, feeds)["y"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("case", sorted(set(CASES) - {"shape_gather_reshape"}))
def test_qdq_op_matches_onnxruntime(case, tmp_path):
    q = _quantise(CASES[case][0], tmp_path, case)
    graph = from_onnx(q)
    feeds = _feeds(q, 11)
    want = _ort(q, feeds)
    got = run_ir(graph, feeds)["y"]
    scale = float(graph.output_quant["y"].scale) if "y" in graph.output_quant else 1e-4
    lsb = np.abs(got - want) / scale
    assert lsb.max() <= 1.01, f"{case}: {lsb.max():.2f} LSB"
