"""Every tf2onnx export shipped under ``fixtures/tflite/`` (made from TFLite int8 models by the
script there) compiles for u55-256 with no host layer but, at most, the softmax (u55-256 runs
TFLite's int8 softmax on the NPU), and agrees with onnxruntime's QDQ execution within one LSB per layer: the int8
tensor each softmax reads is compared, and the softmax output against onnxruntime's softmax of the
emulator's own logits (a 1-LSB logit difference moves a 1/256-step probability by more)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import pytest_npu

FIXTURES = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "tflite").rglob("*.onnx"))
# the MLPerf Tiny shapes: every layer on the NPU; the other exports (an operator mix, a Conv1D net)
# may leave layers tf2onnx writes in float to the host, and must agree with onnxruntime all the same
MLPERF = {"resnet8", "ds_cnn", "mobilenet_v1_025", "autoencoder"}


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options)


def _softmax_tails(model: onnx.ModelProto) -> dict[str, tuple[str, list[onnx.NodeProto]]]:
    """graph output -> (the int8 tensor its DQ -> Softmax -> Q tail reads, the tail's nodes)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    tails = {}
    for out in model.graph.output:
        q = producer.get(out.name)
        softmax = producer.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        dq = producer.get(softmax.input[0]) if softmax is not None and softmax.op_type == "Softmax" else None
        if dq is not None and dq.op_type == "DequantizeLinear":
            tails[out.name] = (dq.input[0], [dq, softmax, q])
    return tails


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_tf2onnx_export_runs_on_the_npu_within_one_lsb_per_layer(path):
    model = onnx.load(str(path))
    tails = _softmax_tails(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for logits, _ in tails.values():         # the int8 logits become outputs too
        probe.graph.output.append(inferred[logits])
    compiled = pytest_npu.compile(probe, "u55-256")
    if path.stem in MLPERF:
        assert {op for _, op, _ in compiled.unsupported()} <= {"softmax"}, compiled.unsupported()
    rng = np.random.default_rng(0)
    feeds = {}
    for value in probe.graph.input:
        b = compiled.graph.boundary(value.name)
        info = np.iinfo(np.dtype(b.dtype))
        feeds[value.name] = rng.integers(info.min, info.max + 1, (16, *b.shape[1:])).astype(b.dtype)
    got = compiled.run(feeds).outputs
    session = _session(probe)           # the exports keep TFLite's fixed batch of 1: one sample at a time
    runs = [session.run(None, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(16)]
    want = {o.name: np.concatenate([r[k] for r in runs]) for k, o in enumerate(probe.graph.output)}
    for name, value in want.items():
        if name in tails:
            logits, nodes = tails[name]
            tail = helper.make_model(helper.make_graph(
                nodes, "tail", [inferred[logits]], [o for o in model.graph.output if o.name == name],
                [t for t in model.graph.initializer if t.name in {x for n in nodes for x in n.input}]),
                opset_imports=model.opset_import)
            tail_session = _session(tail)
            value = np.concatenate([tail_session.run(None, {logits: got[logits][i:i + 1]})[0] for i in range(16)])
        assert np.abs(got[name].astype(np.int64) - value.astype(np.int64)).max() <= 1, name
