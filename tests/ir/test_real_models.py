"""Import real torch exports and onnxruntime-quantised models and check them against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from ir_eval import run_ir

from pytest_npu.ir import from_onnx


def _ort(path, x: np.ndarray, *, fused: bool = False) -> np.ndarray:
    """ORT without graph optimisation runs the QDQ model as written (float Conv between Q/DQ): the
    model's defined semantics. With optimisation it fuses integer kernels whose float32
    requantisation differs by 1 LSB per layer, which compounds through the network."""
    options = ort.SessionOptions()
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _ir(graph, x: np.ndarray) -> np.ndarray:
    name = graph.outputs[0]
    return np.concatenate([run_ir(graph, {graph.inputs[0]: x[i:i + 1]})[name] for i in range(len(x))])


@pytest.mark.parametrize("kind", ["qdq8", "qdq_u8", "qdq16"])
def test_qdq_cnn_matches_onnxruntime_within_one_lsb(cnn_models, cnn_inputs, kind):
    graph = from_onnx(cnn_models[kind])
    scale = float(graph.output_quant[graph.outputs[0]].scale)
    ours = _ir(graph, cnn_inputs)
    lsb = np.abs(ours - _ort(cnn_models[kind], cnn_inputs)) / scale
    assert lsb.max() <= 1.01, f"{kind}: max diff {lsb.max():.2f} LSB"
    # most outputs agree exactly: a layout or permutation bug would break nearly all of them
    assert np.mean(lsb < 0.5) >= 0.85
    fused = np.abs(ours - _ort(cnn_models[kind], cnn_inputs, fused=True)) / scale
    assert fused.max() <= 6 and np.mean(fused <= 1.01) >= 0.6


def test_qoperator_model_imports_like_its_qdq_twin(cnn_models, cnn_inputs):
    """QLinearConv/QGemm (uint8) and the QDQ uint8 model share calibration, so the IRs agree."""
    qop, qdq = from_onnx(cnn_models["qop8"]), from_onnx(cnn_models["qdq_u8"])
    assert [n.op for n in qop.nodes] == [n.op for n in qdq.nodes]
    scale = float(qop.output_quant[qop.outputs[0]].scale)
    lsb = np.abs(_ir(qop, cnn_inputs) - _ir(qdq, cnn_inputs)) / scale
    assert lsb.max() <= 1.01
    fused = np.abs(_ir(qop, cnn_inputs) - _ort(cnn_models["qop8"], cnn_inputs)) / scale
    assert fused.max() <= 6


def test_qdq_cnn_structure(cnn_models):
    graph = from_onnx(cnn_models["qdq8"])
    ops = [n.op for n in graph.nodes]
    assert ops == ["conv2d", "max_pool", "depthwise_conv2d", "conv2d", "max_pool", "reshape",
                   "fully_connected"]
    x = graph.inputs[0]
    assert graph.tensors[x].shape == (1, 8, 8, 1) and graph.tensors[x].dtype == "int8"
    assert graph.input_quant[x].dtype == "int8"
    conv = graph.nodes[0]
    w, b = (graph.tensors[n] for n in conv.inputs[1:])
    assert w.shape == (3, 3, 1, 8) and w.dtype == "int8" and w.quant.axis == 3
    assert w.quant.scale.shape == (8,)
    assert b.dtype == "int32" and b.data.dtype == np.int32
    np.testing.assert_allclose(b.quant.scale, graph.input_quant[x].scale * w.quant.scale, rtol=1e-6)
    dw = graph.nodes[2]
    assert graph.tensors[dw.inputs[1]].shape == (3, 3, 8) and graph.tensors[dw.inputs[1]].quant.axis == 2
    fc = graph.nodes[-1]
    assert graph.tensors[fc.inputs[1]].shape == (48, 10)     # rows permuted CHW -> HWC, no transpose
    assert "transpose" not in ops
    assert graph.tensors[fc.outputs[0]].dtype == "int8" and fc.outputs[0] in graph.output_quant


def test_float_cnn_folds_batchnorm_and_relu(cnn_models, cnn_inputs):
    graph = from_onnx(cnn_models["float"])
    assert "BatchNormalization" not in str([n.source_ops for n in graph.nodes]) or any(
        "BatchNormalization" in n.source_ops for n in graph.nodes if n.op == "conv2d")
    conv = graph.nodes[0]
    assert conv.op == "conv2d" and conv.attrs["clamp"] == (0.0, float("inf"))
    np.testing.assert_allclose(_ir(graph, cnn_inputs), _ort(cnn_models["float"], cnn_inputs),
                               atol=1e-4, rtol=1e-4)


def test_dynamic_quantised_model_keeps_integer_ops_on_host(cnn_models, cnn_inputs):
    """quantize_dynamic: activation scales are computed at run time, so ConvInteger & co stay
    host ``float_op`` nodes with ONNX semantics; the import must still compute the same numbers."""
    graph = from_onnx(cnn_models["dynamic"])
    host = {n.attrs["onnx_op"] for n in graph.nodes if n.op == "float_op"}
    assert {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger"} <= host
    # The oracle is onnx's reference evaluator: ORT's x86 u8s8 ConvInteger saturates int16 pair
    # sums with full-range int8 weights. One inference at a time: DynamicQuantizeLinear's scale
    # spans the whole batch.
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(str(cnn_models["dynamic"]))
    want = np.concatenate([ref.run(None, {"x": cnn_inputs[i:i + 1]})[0] for i in range(len(cnn_inputs))])
    np.testing.assert_allclose(_ir(graph, cnn_inputs), want, atol=1e-5, rtol=1e-5)


def test_int16_activations_keep_int16(cnn_models):
    graph = from_onnx(cnn_models["qdq16"])
    conv = graph.nodes[0]
    assert graph.tensors[conv.inputs[0]].dtype == "int16"
    assert graph.tensors[conv.inputs[1]].dtype == "int8"
    assert graph.tensors[conv.outputs[0]].quant.dtype == "int16"


@pytest.mark.parametrize("kind", ["float", "qdq8"])
def test_mixed_export_matches_onnxruntime(mixed_models, kind):
    graph = from_onnx(mixed_models[kind])
    ops = {n.op for n in graph.nodes}
    assert {"hardswish", "sigmoid", "mul", "leaky_relu", "concat", "resize", "avg_pool", "global_avg_pool",
            "layernorm", "gelu", "softmax", "tanh", "conv2d"} <= ops, ops
    x = np.random.default_rng(4).standard_normal((3, 3, 8, 8)).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(mixed_models[kind]), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    assert names == graph.outputs
    for i in range(len(x)):
        want = dict(zip(names, sess.run(None, {"x": x[i:i + 1]})))
        got = run_ir(graph, {"x": x[i:i + 1]})
        for name in names:
            assert got[name].shape == want[name].shape
            if name not in graph.output_quant:      # float model, or an op ORT leaves float (Tanh)
                np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=1e-4)
            else:
                lsb = np.abs(got[name] - want[name]) / float(graph.output_quant[name].scale)
                assert lsb.max() <= 1.01, f"{name}: {lsb.max():.2f} LSB"


def test_batch_three_runs_in_one_graph(cnn_models, cnn_inputs):
    graph = from_onnx(cnn_models["qdq8"], batch=3)
    assert graph.tensors[graph.inputs[0]].shape == (3, 8, 8, 1)
    got = run_ir(graph, {graph.inputs[0]: cnn_inputs[:3]})[graph.outputs[0]]
    scale = float(graph.output_quant[graph.outputs[0]].scale)
    assert np.abs(got - _ort(cnn_models["qdq8"], cnn_inputs[:3])).max() <= 1.01 * scale


def test_legacy_torchscript_export_imports(tmp_path):
    """The deprecated exporter writes other idioms (Flatten, Erf-based GELU at opset 17)."""
    import warnings

    from torch_models import build_mixed

    torch = pytest.importorskip("torch")

    path = tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_mixed(), (torch.randn(1, 3, 8, 8),), path, dynamo=False, opset_version=17,
                          input_names=["inp"], dynamic_axes={"inp": {0: "batch"}})
    graph = from_onnx(path)
    assert "gelu" in {n.op for n in graph.nodes} and "float_op" not in {n.op for n in graph.nodes}
    x = np.random.default_rng(8).standard_normal((1, 3, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = run_ir(graph, {"inp": x})
    for out, want in zip(sess.get_outputs(), sess.run(None, {"inp": x})):
        np.testing.assert_allclose(got[out.name], want, atol=1e-5, rtol=1e-4)
