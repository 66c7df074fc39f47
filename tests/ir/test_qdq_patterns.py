"""QDQ shapes other quantisers (and hand edits) produce: kept Relu/Clip, quantised Relu between
Q/DQ pairs, requantisation DQ->Q, float consumers of quantised tensors, several outputs."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ir_eval import run_ir
from onnx import TensorProto, helper, numpy_helper

from pytest_npu.ir import from_onnx

N = helper.make_node
RNG = np.random.default_rng(11)


def _c(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _qdq(name, scale, zp, dtype=np.int8):
    """Q -> DQ pair on tensor ``name`` (output ``name + '_dq'``) with its constants."""
    return ([N("QuantizeLinear", [name, f"{name}_s", f"{name}_z"], [f"{name}_q"], name=f"{name}_Q"),
             N("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"], name=f"{name}_DQ")],
            [_c(f"{name}_s", np.float32(scale)), _c(f"{name}_z", dtype(zp))])


def _conv_block(act_nodes, y_scale=0.05, y_zp=-128):
    """x -Q/DQ-> Conv(int8 per-channel weights, int32 bias) -> act_nodes -> 'a' -Q/DQ-> y."""
    q_in, c_in = _qdq("x", 0.03, 3)
    w = RNG.integers(-127, 128, (4, 2, 3, 3)).astype(np.int8)
    ws = (RNG.random(4) * 0.01 + 0.002).astype(np.float32)
    b = RNG.integers(-400, 400, 4).astype(np.int32)
    nodes = q_in + [
        N("DequantizeLinear", ["w", "ws", "wz"], ["w_dq"], axis=0),
        N("DequantizeLinear", ["b", "bs", "bz"], ["b_dq"], axis=0),
        N("Conv", ["x_dq", "w_dq", "b_dq"], ["conv"], name="conv", pads=[1, 1, 1, 1])] + act_nodes
    q_out, c_out = _qdq("a", y_scale, y_zp)
    nodes += q_out + [N("Identity", ["a_dq"], ["y"])]
    inits = c_in + c_out + [_c("w", w), _c("ws", ws), _c("wz", np.zeros(4, np.int8)), _c("b", b),
                            _c("bs", (0.03 * ws).astype(np.float32)), _c("bz", np.zeros(4, np.int32))]
    return nodes, inits


def _model(nodes, inits, outputs=("y",), x_shape=(1, 2, 6, 6)):
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    inferred = onnx.shape_inference.infer_shapes(m)
    for out, inf in zip(m.graph.output, inferred.graph.output):
        out.CopyFrom(inf)
    return m


def _check(m, outputs=("y",), lsb_tol=1.01):
    graph = from_onnx(m)
    x = np.random.default_rng(2).standard_normal([d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim])
    x = x.astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(m.SerializeToString(), options).run(list(outputs), {"x": x})
    got = run_ir(graph, {"x": x})
    for name, ref in zip(outputs, want):
        scale = float(graph.output_quant[name].scale) if name in graph.output_quant else 1e-5
        assert got[name].shape == ref.shape
        assert (np.abs(got[name] - ref) / scale).max() <= lsb_tol, name
    return graph


def test_kept_relu_becomes_integer_clamp():
    nodes, inits = _conv_block([N("Relu", ["conv"], ["a"], name="relu")], y_zp=-100)
    graph = _check(_model(nodes, inits))
    conv = graph.nodes[0]
    assert [n.op for n in graph.nodes] == ["conv2d"] and conv.attrs["clamp"] == (-100, 127)
    assert "Relu" in conv.source_ops


def test_relu6_clip_becomes_integer_clamp():
    clip = N("Clip", ["conv", "lo", "hi"], ["a"], name="relu6")
    nodes, inits = _conv_block([clip], y_scale=0.01, y_zp=-128)
    inits += [_c("lo", np.float32(0)), _c("hi", np.float32(0.6))]
    graph = _check(_model(nodes, inits))
    assert graph.nodes[0].attrs["clamp"] == (-128, -68)      # 0.6 / 0.01 - 128


def test_quantised_relu_between_pairs_folds_when_params_match():
    q_mid, c_mid = _qdq("conv", 0.05, -20)
    nodes, inits = _conv_block(q_mid + [N("Relu", ["conv_dq"], ["a"], name="relu")], y_zp=-20)
    graph = _check(_model(nodes, inits + c_mid))
    assert graph.nodes[0].op == "conv2d" and graph.nodes[0].attrs["clamp"] == (-20, 127)
    assert "relu" not in [n.op for n in graph.nodes]


def test_quantised_relu_with_other_params_stays_a_node():
    q_mid, c_mid = _qdq("conv", 0.08, 0)
    nodes, inits = _conv_block(q_mid + [N("Relu", ["conv_dq"], ["a"], name="relu")], y_zp=-128)
    graph = _check(_model(nodes, inits + c_mid))
    relu = next(n for n in graph.nodes if n.op == "relu")
    assert graph.tensors[relu.inputs[0]].quant.scale != graph.tensors[relu.outputs[0]].quant.scale


def test_dq_to_q_with_other_params_is_a_rescale():
    q_mid, c_mid = _qdq("conv", 0.05, 0)
    nodes, inits = _conv_block(q_mid + [N("Identity", ["conv_dq"], ["a"])], y_scale=0.2, y_zp=5)
    graph = _check(_model(nodes, inits + c_mid))
    assert "rescale" in [n.op for n in graph.nodes]


def test_float_consumer_gets_a_dequantise_and_float_input_a_quantise():
    """x feeds both a quantised Conv and a float Add; the conv result is also read in float."""
    nodes, inits = _conv_block([N("Identity", ["conv"], ["a"])])
    nodes += [N("Add", ["x", "x"], ["x2"], name="float_add"), N("Sigmoid", ["y"], ["z"], name="head")]
    graph = _check(_model(nodes, inits, outputs=("y", "z", "x2")), outputs=("y", "z", "x2"))
    assert graph.tensors["x"].dtype == "float32" and "x" not in graph.input_quant
    rescales = [n for n in graph.nodes if n.op == "rescale"]
    assert any(graph.tensors[n.inputs[0]].quant is None for n in rescales)        # quantise x
    assert any(graph.tensors[n.outputs[0]].quant is None for n in rescales)       # dequantise y
    assert graph.io["y"].perm == (0, 2, 3, 1)
    assert graph.io["z"].shape == (1, 4, 6, 6)


def test_contrib_int16_qdq(tmp_path):
    """UseQDQContribOps: com.microsoft QuantizeLinear/DequantizeLinear with int16 activations."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    nodes = [N("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]),
             N("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    inits = [_c("w", RNG.standard_normal((4, 2, 3, 3)).astype(np.float32) * 0.3),
             _c("b", RNG.standard_normal(4).astype(np.float32) * 0.1)]
    onnx.save(_model(nodes, inits), tmp_path / "f.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": np.random.default_rng(i).standard_normal((1, 2, 6, 6)).astype(np.float32)}
                            for i in range(4)])

        def get_next(self):
            return next(self.it, None)

    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt16, weight_type=QuantType.QInt8,
                    extra_options={"UseQDQContribOps": True})
    m = onnx.load(tmp_path / "q.onnx")
    assert any(n.domain == "com.microsoft" for n in m.graph.node)
    graph = _check(m)
    assert [n.op for n in graph.nodes] == ["conv2d", "max_pool"]
    assert graph.input_quant["x"].dtype == "int16"


@pytest.mark.parametrize("batch", [1, 3])
def test_batch_argument_binds_the_leading_dim(batch):
    nodes, inits = _conv_block([N("Identity", ["conv"], ["a"])])
    m = _model(nodes, inits)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    graph = from_onnx(m, batch=batch)
    assert graph.tensors["x"].shape == (batch, 6, 6, 2)
    assert graph.tensors[graph.nodes[0].outputs[0]].shape == (batch, 6, 6, 4)


def test_quantised_op_without_npu_form_runs_on_host_on_real_values():
    """DQ -> ReduceMean(channels) -> Q: a host float_op fed by a dequantise, followed by a quantise."""
    q_in, c_in = _qdq("x", 0.03, 3)
    q_out, c_out = _qdq("m", 0.01, -5)
    nodes = q_in + [N("ReduceMean", ["x_dq", "axes"], ["m"], name="channel_mean")] + q_out + \
        [N("Identity", ["m_dq"], ["y"])]
    graph = _check(_model(nodes, c_in + c_out + [_c("axes", np.array([1], np.int64))]))
    host = next(n for n in graph.nodes if n.op == "float_op")
    assert host.attrs["onnx_op"] == "ReduceMean"
    assert all(graph.tensors[x].quant is None for x in host.inputs + host.outputs if x)
    assert graph.tensors["y"].quant is not None and "y" in graph.output_quant
