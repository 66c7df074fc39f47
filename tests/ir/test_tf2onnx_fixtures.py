"""The tf2onnx exports shipped under ``fixtures/tflite/`` (made from TFLite int8 models by the
script there): the MLPerf-Tiny-shaped ones compile for u55-256 with no host layer but, at most, the
softmax, and every one agrees with onnxruntime's QDQ execution within one LSB per layer. Each int8
tensor the export quantises is computed from onnxruntime's own int8 inputs of that layer, so the
check is per layer as stated: fed the emulator's own activations instead, 1-LSB rounding
differences compound along a deep network (a 30-layer pruned MobileNet trained like these reached
11 LSB at its logits with every layer within 1 LSB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
import pytest

import pytest_npu

FIXTURES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "tflite").rglob("*.onnx"))
# the MLPerf Tiny shapes: every layer on the NPU; the other exports (an operator mix, a Conv1D net)
# may leave layers tf2onnx writes in float to the host, and must agree with onnxruntime all the same
MLPERF = {"resnet8", "ds_cnn", "mobilenet_v1_025", "autoencoder"}
SAMPLES = 16


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options)


def _layers(model: onnx.ModelProto) -> list[tuple[list[str], str]]:
    """(int8 tensors a layer reads, the int8 tensor it writes) for every QuantizeLinear output:
    the nodes between are one layer as tf2onnx writes it (DQ -> op(s) -> Q)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    quantised = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    boundaries = quantised | {i.name for i in model.graph.input}
    layers = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        reads, stack, seen = set(), list(node.input), set()
        while stack:
            name = stack.pop()
            if name in seen or not name:
                continue
            seen.add(name)
            if name in boundaries:
                reads.add(name)
            elif name in producer:
                stack.extend(producer[name].input)
        if reads:                    # a QuantizeLinear of constants is no layer
            layers.append((sorted(reads), node.output[0]))
    return layers


def _inputs(compiled, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.input:
        b = compiled.graph.boundary(value.name)
        info = np.iinfo(np.dtype(b.dtype))
        feeds[value.name] = rng.integers(info.min, info.max + 1, (SAMPLES, *b.shape[1:])).astype(b.dtype)
    return feeds


@pytest.mark.parametrize("path", [p for p in FIXTURES if p.stem in MLPERF], ids=lambda p: p.stem)
def test_tf2onnx_export_runs_on_the_npu(path):
    compiled = pytest_npu.compile(onnx.load(str(path)), "u55-256")
    assert {op for _, op, _ in compiled.unsupported()} <= {"softmax"}, compiled.unsupported()


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_tf2onnx_export_within_one_lsb_per_layer(path):
    model = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(model)
    values = {v.name: v for v in inferred.graph.value_info}
    layers = _layers(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(values[q] for _, q in layers if q not in known)
    feeds = _inputs(pytest_npu.compile(model, "u55-256"), model)
    session = _session(probe)           # the exports keep TFLite's fixed batch of 1: one sample at a time
    runs = [session.run(None, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(SAMPLES)]
    reference = {o.name: np.concatenate([r[k] for r in runs]) for k, o in enumerate(probe.graph.output)}
    reference.update(feeds)
    extractor = onnx.utils.Extractor(inferred)
    worst = {}
    for reads, q in layers:
        layer = pytest_npu.compile(extractor.extract_model(reads, [q]), "u55-256")
        got = layer.run({name: reference[name] for name in reads}).outputs[q]
        worst[q] = int(np.abs(got.astype(np.int64) - reference[q].astype(np.int64)).max())
    assert len(worst) == len(layers) > 0
    assert {q: d for q, d in worst.items() if d > 1} == {}
