"""Models whose graph inputs and outputs are int8, as tf2onnx exports TFLite models: the integers go
in and come out as they are, ops that only move integers carry the quantisation across, and the
layers run on the NPU, equal to onnxruntime's QDQ execution (graph optimisations off).

The tf2onnx patterns are built by hand with onnx.helper in the form tf2onnx 1.17 writes them (int8
NHWC input, a Transpose or Reshape before the first DequantizeLinear, dense layers as MatMul + Add of
an int32 bias, dead channels with ~1e-9 weight scales, DQ -> Softmax -> Q at the end)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import pytest_npu

RNG = np.random.default_rng(7)


def _c(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options).run(None, feeds)


def _model(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tf2onnx_like", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


# -- the five-node repro of issue 11 ---------------------------------------------------------------
def five_node(first: str) -> onnx.ModelProto:
    """int8 input -> Reshape|Transpose -> DequantizeLinear(0.5, 3) -> MatMul(DQ(int8 w)) -> QuantizeLinear.

    The requantisation multiplier is 0.5 * 0.0625 / 7.59375 = 1/243, so no value sits on a rounding
    tie: the emulator's integer RESCALE and onnxruntime's float32 round-half-even must agree
    exactly (and outputs stay mostly inside int8, not saturated)."""
    w = RNG.integers(-100, 100, (4, 4)).astype(np.int8)
    inits = [_c("s", np.float32(0.5)), _c("z", np.int8(3)), _c("w", w), _c("ws", np.float32(0.0625)),
             _c("wz", np.int8(0)), _c("ys", np.float32(7.59375)), _c("yz", np.int8(-2)),
             _c("shape", np.array([-1, 4], np.int64))]
    if first == "Reshape":
        x = helper.make_tensor_value_info("x", TensorProto.INT8, ["N", 2, 2])
        y = helper.make_tensor_value_info("y", TensorProto.INT8, ["N", 4])
        move = helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape")
    else:
        x = helper.make_tensor_value_info("x", TensorProto.INT8, [4, 1])
        y = helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4])
        move = helper.make_node("Transpose", ["x"], ["r"], name="transpose", perm=[1, 0])
    nodes = [move, helper.make_node("DequantizeLinear", ["r", "s", "z"], ["d"], name="dq"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w"),
             helper.make_node("MatMul", ["d", "wd"], ["m"], name="matmul"),
             helper.make_node("QuantizeLinear", ["m", "ys", "yz"], ["y"], name="q")]
    return _model(nodes, [x], [y], inits)


@pytest.mark.parametrize("first", ["Reshape", "Transpose"])
def test_five_node_int8_input_equals_onnxruntime(first):
    model = five_node(first)
    compiled = pytest_npu.compile(model, "u55-256")
    assert compiled.unsupported() == []          # the move is free, the MatMul a fully-connected layer
    shape = (16, 2, 2) if first == "Reshape" else (4, 1)
    x = RNG.integers(-128, 128, shape).astype(np.int8)
    got, want = compiled.run(x).outputs["y"], _ort(model, {"x": x})[0]
    assert got.dtype == np.int8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # the input's quantisation is the DequantizeLinear's, carried back across the move
    assert compiled.graph.tensors["x"].quant.zero_point == 3 and compiled.graph.boundary("x").quant is None


def test_issue_11_five_node_values():
    """The numbers the issue reports for its five-node graph: now equal to onnxruntime's."""
    model = five_node("Reshape")
    x = np.array([[[12, -7], [100, -128]]], np.int8)
    np.testing.assert_array_equal(pytest_npu.compile(model, "u55-256").run(x).outputs["y"],
                                  _ort(model, {"x": x})[0])


# -- tf2onnx patterns ------------------------------------------------------------------------------
def _qw(shape, axis_len, dead=()):
    """int8 weights with per-channel scales; ``dead`` channels all zero with the ~1e-9 scale
    TFLite gives them (their requantisation needs a huge shift)."""
    w = RNG.integers(-127, 128, shape).astype(np.int8)
    scale = RNG.uniform(0.002, 0.006, axis_len).astype(np.float32)
    for c in dead:
        index = [slice(None)] * len(shape)
        index[0 if len(shape) == 4 else 1] = c
        w[tuple(index)] = 0
        scale[c] = np.float32(4.5e-9)
    return w, scale


def tf2onnx_cnn(*, first: str = "Transpose", gap: str = "GlobalAveragePool", dead=(2, 5)) -> onnx.ModelProto:
    """int8 NHWC (N, 8, 8, 3) -> [Transpose|Reshape] -> DQ -> Conv(+dead channels) -> Relu -> Q ->
    DQ -> depthwise Conv -> Relu -> Q -> DQ -> GlobalAveragePool|ReduceMean -> Q -> Squeeze -> DQ ->
    MatMul -> Add(DQ int32 bias) -> Q -> DQ -> Softmax -> Q -> int8 (N, 10)."""
    s_in, s1, s2, s3, s4, s_out = 0.02, 0.05, 0.04, 0.03, 0.1, 1 / 256
    w1, ws1 = _qw((8, 3, 3, 3), 8, dead)
    w2, ws2 = _qw((8, 1, 3, 3), 8)
    w3, ws3 = _qw((8, 10), 10)
    b1 = RNG.integers(-2000, 2000, 8).astype(np.int32)
    b1[list(dead)] = RNG.integers(-50, 50, len(dead))
    b2 = RNG.integers(-2000, 2000, 8).astype(np.int32)
    b3 = RNG.integers(-500, 500, 10).astype(np.int32)
    inits = [_c("s_in", np.float32(s_in)), _c("z_in", np.int8(-5)),
             _c("w1", w1), _c("ws1", ws1), _c("wz8", np.zeros(8, np.int8)), _c("b1", b1),
             _c("bs1", (np.float32(s_in) * ws1).astype(np.float32)), _c("bz8", np.zeros(8, np.int32)),
             _c("s1", np.float32(s1)), _c("z_act", np.int8(-128)),
             _c("w2", w2), _c("ws2", ws2), _c("b2", b2), _c("bs2", (np.float32(s1) * ws2).astype(np.float32)),
             _c("s2", np.float32(s2)), _c("s3", np.float32(s3)),
             _c("w3", w3), _c("ws3", ws3), _c("wz10", np.zeros(10, np.int8)), _c("b3", b3),
             _c("bs3", (np.float32(s3) * ws3).astype(np.float32)), _c("bz10", np.zeros(10, np.int32)),
             _c("s4", np.float32(s4)), _c("z4", np.int8(7)), _c("s_out", np.float32(s_out)),
             _c("axes", np.array([2, 3], np.int64)), _c("shape", np.array([-1, 3, 8, 8], np.int64))]
    if first == "Transpose":
        x = helper.make_tensor_value_info("x", TensorProto.INT8, ["N", 8, 8, 3])
        move = helper.make_node("Transpose", ["x"], ["x_nchw"], name="to_nchw", perm=[0, 3, 1, 2])
    else:   # a Reshape of an NHWC tensor with one channel (keyword spotting), as tf2onnx writes it
        x = helper.make_tensor_value_info("x", TensorProto.INT8, ["N", 3, 8, 8])
        move = helper.make_node("Reshape", ["x", "shape"], ["x_nchw"], name="reshape_in")
    dq = helper.make_node
    nodes = [move,
             dq("DequantizeLinear", ["x_nchw", "s_in", "z_in"], ["x_f"], name="dq_x"),
             dq("DequantizeLinear", ["w1", "ws1", "wz8"], ["w1_f"], name="dq_w1", axis=0),
             dq("DequantizeLinear", ["b1", "bs1", "bz8"], ["b1_f"], name="dq_b1", axis=0),
             dq("Conv", ["x_f", "w1_f", "b1_f"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             dq("Relu", ["c1"], ["r1"], name="relu1"),
             dq("QuantizeLinear", ["r1", "s1", "z_act"], ["q1"], name="q1"),
             dq("DequantizeLinear", ["q1", "s1", "z_act"], ["d1"], name="dq1"),
             dq("DequantizeLinear", ["w2", "ws2", "wz8"], ["w2_f"], name="dq_w2", axis=0),
             dq("DequantizeLinear", ["b2", "bs2", "bz8"], ["b2_f"], name="dq_b2", axis=0),
             dq("Conv", ["d1", "w2_f", "b2_f"], ["c2"], name="depthwise", pads=[1, 1, 1, 1], group=8,
                kernel_shape=[3, 3]),
             dq("Relu", ["c2"], ["r2"], name="relu2"),
             dq("QuantizeLinear", ["r2", "s2", "z_act"], ["q2"], name="q2"),
             dq("DequantizeLinear", ["q2", "s2", "z_act"], ["d2"], name="dq2")]
    if gap == "GlobalAveragePool":
        nodes.append(dq("GlobalAveragePool", ["d2"], ["g"], name="gap"))
    else:
        nodes.append(dq("ReduceMean", ["d2"], ["g"], name="mean", axes=[2, 3], keepdims=1))
    nodes += [dq("QuantizeLinear", ["g", "s3", "z_act"], ["gq"], name="q3"),
              dq("Squeeze", ["gq", "axes"], ["sq"], name="squeeze"),
              dq("DequantizeLinear", ["sq", "s3", "z_act"], ["sqd"], name="dq3"),
              dq("DequantizeLinear", ["w3", "ws3", "wz10"], ["w3_f"], name="dq_w3", axis=1),
              dq("DequantizeLinear", ["b3", "bs3", "bz10"], ["b3_f"], name="dq_b3", axis=0),
              dq("MatMul", ["sqd", "w3_f"], ["mm"], name="dense"),
              dq("Add", ["mm", "b3_f"], ["logits"], name="bias_add"),
              dq("QuantizeLinear", ["logits", "s4", "z4"], ["lq"], name="q4"),
              dq("DequantizeLinear", ["lq", "s4", "z4"], ["ld"], name="dq4"),
              dq("Softmax", ["ld"], ["p"], name="softmax", axis=-1),
              dq("QuantizeLinear", ["p", "s_out", "z_act"], ["y"], name="q_out")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.INT8, ["N", 10]),
               helper.make_tensor_value_info("lq", TensorProto.INT8, ["N", 10])]     # the logits too
    return _model(nodes, [x], outputs, inits)


def _softmax_of(logits: np.ndarray, model: onnx.ModelProto) -> np.ndarray:
    """onnxruntime's DQ -> Softmax -> Q tail of ``model`` applied to the given int8 logits."""
    keep = {"dq4", "softmax", "q_out"}
    tail = onnx.ModelProto()
    tail.CopyFrom(model)
    g = tail.graph
    nodes = [n for n in g.node if n.name in keep]
    del g.node[:]
    g.node.extend(nodes)
    del g.input[:]
    g.input.append(helper.make_tensor_value_info("lq", TensorProto.INT8, ["N", 10]))
    del g.output[1:]
    return _ort(tail, {"lq": logits})[0]


@pytest.mark.parametrize(("first", "gap"), [("Transpose", "GlobalAveragePool"), ("Reshape", "ReduceMean")])
def test_tf2onnx_model_runs_on_the_npu_within_one_lsb_of_onnxruntime(first, gap):
    model = tf2onnx_cnn(first=first, gap=gap)
    compiled = pytest_npu.compile(model, "u55-256")
    host = {op for _, op, _ in compiled.unsupported()}
    assert host <= {"softmax"}, compiled.unsupported()     # u55-256 has no softmax instruction
    ops = {n.op for n in compiled.graph.nodes}
    assert {"conv2d", "depthwise_conv2d", "global_avg_pool", "fully_connected"} <= ops
    shape = (32, 8, 8, 3) if first == "Transpose" else (32, 3, 8, 8)
    x = RNG.integers(-128, 128, shape).astype(np.int8)
    got = compiled.run(x).outputs
    want = dict(zip(("y", "lq"), _ort(model, {"x": x})))
    assert got["y"].dtype == np.int8 and got["y"].shape == (32, 10)
    # every NPU layer is within 1 LSB of onnxruntime (ties round differently), so the logits are;
    # the softmax (on the host) of the emulator's own logits equals onnxruntime's. A 1-LSB logit
    # difference moves a probability by up to 3 LSB of its 1/256 step, so the chain is not compared.
    assert np.abs(got["lq"].astype(int) - want["lq"]).max() <= 1
    assert np.abs(got["y"].astype(int) - _softmax_of(got["lq"], model)).max() <= 1
    if first == "Transpose":      # the NHWC input is the IR's layout: no transpose runs at all
        assert compiled.graph.boundary("x").perm is None
        assert not [n for n in compiled.graph.nodes if n.op == "transpose"]


def test_dead_channels_output_their_bias_alone():
    """All-zero weight channels (scale 4.5e-9): the layer compiles and those channels equal
    onnxruntime (their output is the requantised bias)."""
    model = tf2onnx_cnn(dead=(0, 3, 7))
    cut = onnx.ModelProto()
    cut.CopyFrom(model)            # stop after the first convolution: look at the dead channels
    del cut.graph.output[:]
    cut.graph.output.append(helper.make_tensor_value_info("q1", TensorProto.INT8, ["N", 8, 8, 8]))
    compiled = pytest_npu.compile(cut, "u55-256")
    assert compiled.unsupported() == []          # the nodes after q1 reach no output: not compiled
    x = RNG.integers(-128, 128, (4, 8, 8, 3)).astype(np.int8)
    got, want = compiled.run(x).outputs["q1"], _ort(cut, {"x": x})[0]
    assert np.abs(got.astype(int) - want).max() <= 1
    for c in (0, 3, 7):
        assert len(np.unique(got[:, c])) == 1      # a constant plane: the bias alone


def test_run_quantized_takes_the_model_layout():
    """run_quantized() speaks the model's layout too (it once wanted NHWC as if it were NCHW)."""
    model = tf2onnx_cnn()
    compiled = pytest_npu.compile(model, "u55-256")
    x = RNG.integers(-128, 128, (2, 8, 8, 3)).astype(np.int8)
    np.testing.assert_array_equal(compiled.run_quantized(x).outputs["y"], compiled.run(x).outputs["y"])


def test_hypothesis_inputs_for_an_int8_model_are_its_integers(tmp_path):
    from hypothesis import given, settings

    from pytest_npu.strategies import inputs_for

    model = tf2onnx_cnn()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    compiled = pytest_npu.compile(path, "u55-256")

    @settings(max_examples=5, deadline=None, database=None)
    @given(inputs_for(path, batch=2, within="dtype"))
    def check(x):
        assert x.dtype == np.int8 and x.shape == (2, 8, 8, 3)
        assert compiled.run(x).outputs["y"].shape == (2, 10)

    check()
