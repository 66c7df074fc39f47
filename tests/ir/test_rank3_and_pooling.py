"""The layers real models use: Conv1d (rank-3 NCW) and 1-D pooling as one-row images, global
average pooling written as GlobalAveragePool or ReduceMean (NCHW, NCW, or channels-last as tf2onnx
writes it), on the NPU and within one LSB of onnxruntime; and the host layers a quantiser leaves
in float are named with the option that quantises them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import pytest_npu
import pytest_npu.ir
from pytest_npu.cli import main as cli_main
from pytest_npu.compress.quantize import op_types_to_quantize

RNG = np.random.default_rng(11)


def _float(nodes, x_shape, y_shape, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *y_shape])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _quantise(model: onnx.ModelProto, x_shape, op_types=None) -> onnx.ModelProto:
    batches = [{"x": RNG.normal(0, 1, (8, *x_shape)).astype(np.float32)} for _ in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, Path(tmp) / "f.onnx")
        quantize_static(str(Path(tmp) / "f.onnx"), str(Path(tmp) / "q.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=op_types)
        return onnx.load(str(Path(tmp) / "q.onnx"))


def _lsb(model: onnx.ModelProto, compiled, x) -> int:
    """Largest difference from onnxruntime in output steps (both sides are whole steps, dequantised
    in float32: rounded so 1.000002 counts as the 1 LSB it is)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(model.SerializeToString(), options).run(None, {"x": x})[0]
    got = compiled.run(x).outputs["y"]
    return int(np.rint(np.abs(got - want).max() / float(compiled.graph.boundary("y").quant.scale)))


def _w(*shape):
    return RNG.normal(0, 0.4, shape).astype(np.float32)


def conv1d_net() -> tuple[onnx.ModelProto, tuple]:
    """Conv1d -> Relu -> MaxPool1d -> depthwise Conv1d (stride 2) -> AvgPool1d -> ReduceMean over
    W (AdaptiveAvgPool1d(1)) -> Flatten -> Gemm."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3], pads=[1, 1]),
             n("Relu", ["c1"], ["r1"], name="relu1"),
             n("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2], strides=[2]),
             n("Conv", ["p1", "w2", "b2"], ["c2"], name="dw", kernel_shape=[5], pads=[2, 2], strides=[2], group=8),
             n("Relu", ["c2"], ["r2"], name="relu2"),
             n("AveragePool", ["r2"], ["p2"], name="pool2", kernel_shape=[2], strides=[2]),
             n("ReduceMean", ["p2"], ["m"], name="gap", axes=[2], keepdims=1),
             n("Flatten", ["m"], ["f"], name="flatten"),
             n("Gemm", ["f", "w3", "b3"], ["y"], name="fc", transB=1)]
    inits = {"w1": _w(8, 4, 3), "b1": _w(8), "w2": _w(8, 1, 5), "b2": _w(8), "w3": _w(3, 8), "b3": _w(3)}
    return _float(nodes, (4, 40), (3,), inits), (4, 40)


def test_batchnorm1d_folds_into_its_conv1d():
    n = helper.make_node
    nodes = [n("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3], pads=[1, 1]),
             n("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["y"], name="bn")]
    inits = {"w": _w(8, 4, 3), "b": _w(8), "g": 1 + 0.1 * _w(8), "beta": _w(8), "mean": _w(8),
             "var": np.abs(_w(8)) + 0.5}
    graph = pytest_npu.ir.from_onnx(_float(nodes, (4, 20), (8, 20), inits))
    assert [node.op for node in graph.nodes if node.op not in ("reshape", "transpose")] == ["conv2d"]


def test_conv1d_network_runs_on_the_npu_within_two_lsb():
    model, shape = conv1d_net()
    q = _quantise(model, shape, op_types_to_quantize())
    compiled = pytest_npu.compile(q, "u55-256")
    assert compiled.unsupported() == []
    ops = [node.op for node in compiled.graph.nodes]
    assert ops.count("conv2d") == 1 and "depthwise_conv2d" in ops and "global_avg_pool" in ops
    assert "transpose" not in ops          # conv -> pool -> conv stays a one-row image throughout
    # each layer within 1 LSB of onnxruntime (ties round differently); six layers may add one more
    assert _lsb(q, compiled, RNG.normal(0, 1, (6, *shape)).astype(np.float32)) <= 2


@pytest.mark.parametrize(("layout", "axes", "x_shape"), [
    ("NCHW mean((2, 3))", [2, 3], (6, 5, 5)),
    ("NCW AdaptiveAvgPool1d", [2], (6, 12)),
    ("channels-last (N, T, C), tf2onnx", [1], (12, 6)),
])
def test_global_average_as_reduce_mean_runs_on_the_npu(layout, axes, x_shape):
    n = helper.make_node
    channels = x_shape[-1] if axes == [1] else x_shape[0]
    if axes == [1]:     # a dense layer over the channels, then the mean over time
        first = n("MatMul", ["x", "w"], ["r"], name="dense")
        inits = {"w": _w(channels, channels)}
    else:               # a 1x1 convolution
        first = n("Conv", ["x", "w"], ["r"], name="pointwise", kernel_shape=[1] * (len(x_shape) - 1))
        inits = {"w": _w(channels, channels, *[1] * (len(x_shape) - 1))}
    nodes = [first, n("ReduceMean", ["r"], ["y"], name="mean", axes=axes, keepdims=0)]
    q = _quantise(_float(nodes, x_shape, (channels,), inits), x_shape, op_types_to_quantize())
    compiled = pytest_npu.compile(q, "u55-256")
    assert [op for _, op, _ in compiled.unsupported()] == [], layout
    assert "global_avg_pool" in [node.op for node in compiled.graph.nodes]
    assert _lsb(q, compiled, RNG.normal(0, 1, (5, *x_shape)).astype(np.float32)) <= 1


def test_global_average_pool_of_rank_3():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3], pads=[1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["y"], name="flatten")]
    q = _quantise(_float(nodes, (6, 12), (6,), {"w": _w(6, 6, 3)}), (6, 12))
    compiled = pytest_npu.compile(q, "u55-256")
    assert compiled.unsupported() == []
    assert _lsb(q, compiled, RNG.normal(0, 1, (5, 6, 12)).astype(np.float32)) <= 1


def test_a_reduce_mean_left_in_float_is_named_with_the_option_that_quantises_it(tmp_path, capsys):
    """onnxruntime's default operator set leaves ReduceMean in float; inspect says what to pass."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             n("ReduceMean", ["c"], ["y"], name="mean", axes=[2, 3], keepdims=0)]
    model = _float(nodes, (3, 6, 6), (4,), {"w": _w(4, 3, 3, 3), "b": _w(4)})
    default = _quantise(model, (3, 6, 6))                  # onnxruntime's defaults
    host = pytest_npu.compile(default, "u55-256").unsupported()
    assert [layer for layer, _, _ in host if "mean" in layer]
    path = tmp_path / "m.onnx"
    onnx.save(default, path)

    assert cli_main(["inspect", str(path), "--target", "u55-256"]) == 0
    out = capsys.readouterr().out
    assert "to move it: quantise the ReduceMean" in out and "op_types_to_quantize including 'ReduceMean'" in out
    fixed = _quantise(model, (3, 6, 6), op_types_to_quantize())    # what compress.quantize passes
    assert pytest_npu.compile(fixed, "u55-256").unsupported() == []
