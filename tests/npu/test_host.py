"""Host fallback ops against onnxruntime running the same float operator (an independent
implementation): the host's quantised outputs equal ORT's float result quantised the same way,
within 1 LSB (float32 evaluation order differs), and mostly exactly."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from pytest_npu.errors import EmulatorFault
from pytest_npu.npu import host

ort = pytest.importorskip("onnxruntime")
N = 3


def q(scale, zp=0, dtype="int8", axis=None):
    return {"scale": list(np.atleast_1d(scale)), "zero_point": list(np.atleast_1d(zp)), "dtype": dtype, "axis": axis}


def _ort(op_type, xs, attrs=None, consts=(), opset=21):
    """Run one ONNX node on float inputs (batch first) with onnxruntime."""
    names = [f"x{i}" for i in range(len(xs))]
    inits = [numpy_helper.from_array(np.asarray(v), f"c{i}") for i, v in enumerate(consts)]
    node = helper.make_node(op_type, names + [t.name for t in inits], ["y"], **(attrs or {}))
    graph = helper.make_graph([node], "ref", [helper.make_tensor_value_info(n, TensorProto.FLOAT, x.shape)
                                              for n, x in zip(names, xs)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {n: x.astype(np.float32) for n, x in zip(names, xs)})[0]


def _compare(got, want_float, out_q):
    want = host.quantize(want_float, out_q)
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max() <= 1, diff.max()
    assert (diff == 0).mean() >= 0.97
    assert len(np.unique(got)) > 2          # the case is not saturated into a constant


def _ints(shape, seed=0, dtype=np.int8):
    info = np.iinfo(dtype)
    return np.random.default_rng(seed).integers(info.min, info.max + 1, size=(N, *shape), dtype=dtype)


X_Q = q(0.05, -3)
UNARY = [
    ("softmax", {"axis": -1}, "Softmax", {"axis": -1}, q(1 / 256, -128)),
    ("softmax", {"axis": 0}, "Softmax", {"axis": 1}, q(1 / 256, -128)),
    ("sigmoid", {}, "Sigmoid", {}, q(1 / 256, -128)),
    ("tanh", {}, "Tanh", {}, q(1 / 128, 0)),
    ("hardswish", {}, "HardSwish", {}, q(0.05, -20)),
    ("hardsigmoid", {"alpha": 0.25, "beta": 0.4}, "HardSigmoid", {"alpha": 0.25, "beta": 0.4}, q(1 / 256, -128)),
    ("leaky_relu", {"alpha": 0.1}, "LeakyRelu", {"alpha": 0.1}, q(0.04, 20)),
    ("relu", {}, "Relu", {}, q(0.03, -128)),
    ("gelu", {}, "Gelu", {}, q(0.03, -30)),
    ("transpose", {"perm": (2, 0, 1)}, "Transpose", {"perm": [0, 3, 1, 2]}, X_Q),
    ("concat", {"axis": 1}, "Concat", {"axis": 2}, X_Q),
    ("global_avg_pool", {}, None, None, q(0.01, 0)),
]


@pytest.mark.parametrize("op, attrs, onnx_op, onnx_attrs, out_q", UNARY, ids=[u[0] + str(i) for i, u in enumerate(UNARY)])
def test_unary_ops_match_onnxruntime(op, attrs, onnx_op, onnx_attrs, out_q):
    xs = [_ints((4, 5, 6), seed=1)] + ([_ints((4, 5, 6), seed=2)] if op == "concat" else [])
    full = {**attrs, "in_quant": [X_Q] * len(xs), "out_quant": [out_q]}
    got = host.execute(op, full, xs)[0]
    real = [host.dequantize(x, X_Q) for x in xs]
    if onnx_op is None:         # GlobalAveragePool is NCHW in ONNX: compare with numpy directly
        want = real[0].mean(axis=(1, 2), keepdims=True)
    else:
        want = _ort(onnx_op, real, onnx_attrs)
    _compare(got, want, out_q)


def test_clip_and_pad_and_reshape_and_resize():
    x = _ints((4, 6, 2), seed=3)
    real = host.dequantize(x, X_Q)
    got = host.execute("clip", {"min": -1.0, "max": 2.0, "in_quant": [X_Q], "out_quant": [X_Q]}, [x])[0]
    _compare(got, _ort("Clip", [real], consts=(np.float32(-1.0), np.float32(2.0))), X_Q)
    pads = ((1, 2), (0, 1), (0, 0))
    got = host.execute("pad", {"pads": pads, "value": 0.5, "in_quant": [X_Q], "out_quant": [X_Q]}, [x])[0]
    onnx_pads = np.array([0, 1, 0, 0, 0, 2, 1, 0], np.int64)
    _compare(got, _ort("Pad", [real], consts=(onnx_pads, np.float32(0.5))), X_Q)
    got = host.execute("reshape", {"shape": (8, -1), "in_quant": [X_Q], "out_quant": [X_Q]}, [x])[0]
    np.testing.assert_array_equal(got, x.reshape(N, 8, 6))
    got = host.execute("resize", {"scale": (2, 3), "in_quant": [X_Q], "out_quant": [X_Q]}, [x])[0]
    np.testing.assert_array_equal(got, x.repeat(2, axis=1).repeat(3, axis=2))


def test_layernorm_with_gamma_beta_from_attrs():
    x = _ints((5, 8), seed=4)
    gamma, beta = np.linspace(0.5, 1.5, 8, dtype=np.float32), np.linspace(-0.2, 0.2, 8, dtype=np.float32)
    out_q = q(0.02, 0)
    attrs = {"axis": -1, "epsilon": 1e-5, "gamma": gamma.tolist(), "beta": beta.tolist(), "in_quant": [X_Q],
             "out_quant": [out_q]}
    got = host.execute("layernorm", attrs, [x])[0]
    want = _ort("LayerNormalization", [host.dequantize(x, X_Q)], {"axis": -1, "epsilon": 1e-5}, consts=(gamma, beta))
    _compare(got, want, out_q)


@pytest.mark.parametrize("op, onnx_op", [("add", "Add"), ("sub", "Sub"), ("mul", "Mul"), ("min", "Min"), ("max", "Max")])
def test_binary_ops_broadcast_a_channel_vector(op, onnx_op):
    a, b = _ints((4, 4, 6), seed=5), _ints((6,), seed=6)
    b_q = q(0.02, 4)
    out_q = q(0.1, 0) if op != "mul" else q(0.01, 0)
    got = host.execute(op, {"in_quant": [X_Q, b_q], "out_quant": [out_q]}, [a, b])[0]
    real_b = host.dequantize(b, b_q)[:, None, None, :]
    _compare(got, _ort(onnx_op, [host.dequantize(a, X_Q), real_b]), out_q)


def test_matmul_of_two_activations():
    a, b = _ints((5, 16), seed=7), _ints((16, 3), seed=8)
    out_q = q(0.5, 0)
    got = host.execute("matmul", {"in_quant": [X_Q, X_Q], "out_quant": [out_q]}, [a, b])[0]
    _compare(got, _ort("MatMul", [host.dequantize(a, X_Q), host.dequantize(b, X_Q)]), out_q)


@pytest.mark.parametrize("depthwise", [False, True])
def test_conv_with_per_channel_weights_matches_onnx_conv(depthwise):
    """A conv the NPU cannot run (kernel past its limit) goes to the host in float."""
    rng = np.random.default_rng(9)
    cin, cout = 4, (4 if depthwise else 6)
    w = rng.integers(-127, 128, size=(5, 5, cin) if depthwise else (5, 5, cin, cout), dtype=np.int8)
    w_scale = np.linspace(0.01, 0.03, cout)
    bias = rng.integers(-500, 500, size=cout, dtype=np.int32)
    x = _ints((9, 9, cin), seed=10)
    w_q = q(w_scale, np.zeros(cout, int), axis=w.ndim - 1)
    b_q = q(0.05 * w_scale, np.zeros(cout, int), dtype="int32", axis=0)
    out_q = q(0.2, 0)
    attrs = {"stride": (2, 1), "dilation": (1, 2), "padding": (2, 1, 0, 3), "in_quant": [X_Q, w_q, b_q],
             "out_quant": [out_q]}
    weights = np.broadcast_to(w, (N, *w.shape))               # constants arrive batch-first, like DRAM views
    got = host.execute("depthwise_conv2d" if depthwise else "conv2d", attrs,
                       [x, weights, np.broadcast_to(bias, (N, cout))])[0]
    real_w = host.dequantize(w, {**w_q, "axis": w.ndim - 2})  # unbatched: the per-sample axis is one less
    oihw = real_w.transpose(2, 0, 1)[:, None] if depthwise else real_w.transpose(3, 2, 0, 1)
    real_x = host.dequantize(x, X_Q).transpose(0, 3, 1, 2)
    want = _ort("Conv", [real_x], {"strides": [2, 1], "dilations": [1, 2], "pads": [2, 0, 1, 3],
                                   **({"group": cin} if depthwise else {})},
                consts=(oihw.astype(np.float32), (bias * 0.05 * w_scale).astype(np.float32)))
    _compare(got, want.transpose(0, 2, 3, 1), out_q)


def test_pools_match_onnx_pools():
    x = _ints((7, 7, 3), seed=11)
    real = host.dequantize(x, X_Q).transpose(0, 3, 1, 2)
    for op, onnx_op, extra in (("max_pool", "MaxPool", {}), ("avg_pool", "AveragePool", {"count_include_pad": 0})):
        attrs = {"kernel": (3, 3), "stride": (2, 2), "padding": (1, 1, 1, 1), "count_include_pad": False,
                 "in_quant": [X_Q], "out_quant": [X_Q]}
        got = host.execute(op, attrs, [x])[0]
        want = _ort(onnx_op, [real], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], **extra})
        _compare(got, want.transpose(0, 2, 3, 1), X_Q)


def test_float_op_runs_an_arbitrary_onnx_operator():
    x = _ints((4, 6), seed=12)
    out_q = q(0.02, 10)
    attrs = {"onnx_op": "Elu", "onnx_attrs": {"alpha": 0.7}, "in_quant": [X_Q], "out_quant": [out_q]}
    got = host.execute("float_op", attrs, [x])[0]
    real = host.dequantize(x, X_Q)
    _compare(got, np.where(real > 0, real, 0.7 * (np.exp(real) - 1)), out_q)
    assert host.execute("float_op", attrs, [x])[0].tobytes() == got.tobytes()   # cached session, same result


def test_quantize_is_round_half_even_and_saturates():
    out = host.quantize(np.array([0.5, 1.5, 2.5, -0.5, 1000.0, -1000.0]), q(1.0, 0))
    np.testing.assert_array_equal(out, [0, 2, 2, 0, 127, -128])
    per_channel = host.dequantize(np.array([[10, 10]], np.int8), q([0.5, 2.0], [0, 1], axis=0))
    np.testing.assert_allclose(per_channel, [[5.0, 18.0]])


def test_errors_name_the_op():
    x = _ints((4,))
    with pytest.raises(EmulatorFault, match="host op 'fft' is not implemented") as info:
        host.execute("fft", {"in_quant": [X_Q], "out_quant": [X_Q]}, [x])
    assert info.value.operand == "fft" and info.value.kind == "unsupported"
    with pytest.raises(EmulatorFault, match="needs attrs\\['out_quant'\\]"):
        host.execute("relu", {"in_quant": [X_Q]}, [x])
    with pytest.raises(EmulatorFault, match="float_op 'NoSuchOp'"):
        host.execute("float_op", {"onnx_op": "NoSuchOp", "in_quant": [X_Q], "out_quant": [X_Q]}, [x])
    with pytest.raises(EmulatorFault, match="host op 'transpose' failed"):
        host.execute("transpose", {"perm": (0, 1, 2), "in_quant": [X_Q], "out_quant": [X_Q]}, [x])
    with pytest.raises(EmulatorFault, match="no cost model"):
        host.count_ops("fft", {}, [(4,)], [(4,)])


def test_count_ops_scales_with_the_work():
    small = host.count_ops("softmax", {}, [(10,)], [(10,)])
    assert host.count_ops("softmax", {}, [(20,)], [(20,)]) == 2 * small
    assert host.count_ops("conv2d", {}, [(8, 8, 4), (3, 3, 4, 6), (6,)], [(8, 8, 6)]) >= 2 * 8 * 8 * 6 * 3 * 3 * 4
    assert host.count_ops("gelu", {}, [(10,)], [(10,)]) > host.count_ops("relu", {}, [(10,)], [(10,)])
