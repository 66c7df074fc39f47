"""Property: random small chains of ops that only move integers (Transpose, Reshape, Squeeze,
Unsqueeze, Flatten, Concat, Pad with the zero point, Slice), between QuantizeLinear/DequantizeLinear
pairs or applied to the raw int8 tensors as tf2onnx writes them, run by the emulator equal
onnxruntime's QDQ execution (graph optimisations off) exactly: the quantisation is carried, never
invented. ``NPU_FUZZ_EXAMPLES`` raises the example count (``tox -e fuzz``)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import pytest_npu

EXAMPLES = int(os.environ.get("NPU_FUZZ_EXAMPLES", 60))
OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Pad", "Slice")


@st.composite
def chains(draw):
    rank = draw(st.integers(2, 4))
    shape = [1] + [draw(st.integers(1, 4)) for _ in range(rank - 1)]
    steps = []
    cur = list(shape)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(OPS))
        raw = draw(st.booleans())          # on the int8 tensor itself, or between DQ and Q
        if op == "Transpose":
            perm = [0] + draw(st.permutations(list(range(1, len(cur)))))
            cur = [cur[p] for p in perm]
            steps.append((op, raw, {"perm": perm}))
        elif op == "Reshape":
            total = int(np.prod(cur))
            splits = [d for d in range(1, total + 1) if total % d == 0]
            a = draw(st.sampled_from(splits))
            cur = [1, a, total // a]
            steps.append((op, raw, {"shape": cur}))
        elif op == "Squeeze":
            ones = [i for i, d in enumerate(cur) if d == 1 and i > 0]
            if not ones or len(cur) <= 2:
                continue
            axis = draw(st.sampled_from(ones))
            cur = cur[:axis] + cur[axis + 1:]
            steps.append((op, raw, {"axes": [axis]}))
        elif op == "Unsqueeze":
            if len(cur) >= 5:
                continue
            axis = draw(st.integers(1, len(cur)))
            cur = cur[:axis] + [1] + cur[axis:]
            steps.append((op, raw, {"axes": [axis]}))
        elif op == "Flatten":
            cur = [1, int(np.prod(cur[1:]))]
            steps.append((op, raw, {"axis": 1}))
        elif op == "Concat":
            axis = draw(st.integers(1, len(cur) - 1))
            cur = cur[:axis] + [cur[axis] * 2] + cur[axis + 1:]
            steps.append((op, raw, {"axis": axis}))
        elif op == "Pad":
            pads = [0] * (2 * len(cur))
            axis = draw(st.integers(1, len(cur) - 1))
            pads[axis], pads[axis + len(cur)] = draw(st.integers(0, 2)), draw(st.integers(0, 2))
            cur = [d + pads[i] + pads[i + len(cur)] for i, d in enumerate(cur)]
            steps.append((op, raw, {"pads": pads}))
        else:   # Slice
            axis = draw(st.integers(1, len(cur) - 1))
            start = draw(st.integers(0, cur[axis] - 1))
            end = draw(st.integers(start + 1, cur[axis]))
            cur = cur[:axis] + [end - start] + cur[axis + 1:]
            steps.append((op, raw, {"axis": axis, "start": start, "end": end}))
    return shape, steps, draw(st.booleans()), draw(st.integers(-20, 20)), draw(st.integers(0, 2**16))


def build(shape, steps, int8_input: bool, zp: int) -> onnx.ModelProto:
    """x (float, or int8 as tf2onnx) -> Q -> [move on int8 | DQ -> move -> Q]... -> DQ -> y."""
    inits = [numpy_helper.from_array(np.float32(0.05), "s"), numpy_helper.from_array(np.int8(zp), "z")]
    nodes = []
    cur = "x"
    if not int8_input:
        nodes.append(helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"))
        cur = "xq"
    for i, (op, raw, a) in enumerate(steps):
        src = cur
        if not raw:
            nodes.append(helper.make_node("DequantizeLinear", [cur, "s", "z"], [f"d{i}"], name=f"dq{i}"))
            src = f"d{i}"
        out = f"m{i}" if raw else f"f{i}"
        extra: list[str] = []
        attrs = {}
        if op == "Transpose":
            attrs = {"perm": a["perm"]}
        elif op == "Reshape":
            inits.append(numpy_helper.from_array(np.array(a["shape"], np.int64), f"shape{i}"))
            extra = [f"shape{i}"]
        elif op in ("Squeeze", "Unsqueeze"):
            inits.append(numpy_helper.from_array(np.array(a["axes"], np.int64), f"axes{i}"))
            extra = [f"axes{i}"]
        elif op == "Flatten":
            attrs = {"axis": 1}
        elif op == "Concat":
            attrs = {"axis": a["axis"]}
            extra = [src]
        elif op == "Pad":
            inits.append(numpy_helper.from_array(np.array(a["pads"], np.int64), f"pads{i}"))
            value = np.int8(zp) if raw else np.float32(0.0)          # the zero point, either way
            inits.append(numpy_helper.from_array(value, f"value{i}"))
            extra = [f"pads{i}", f"value{i}"]
        else:
            for k, v in (("starts", a["start"]), ("ends", a["end"]), ("axes", a["axis"])):
                inits.append(numpy_helper.from_array(np.array([v], np.int64), f"{k}{i}"))
            extra = [f"starts{i}", f"ends{i}", f"axes{i}"]
        nodes.append(helper.make_node(op, [src, *extra], [out], name=f"{op.lower()}{i}", **attrs))
        cur = out
        if not raw:
            nodes.append(helper.make_node("QuantizeLinear", [out, "s", "z"], [f"q{i}"], name=f"q{i}"))
            cur = f"q{i}"
    nodes.append(helper.make_node("DequantizeLinear", [cur, "s", "z"], ["y"], name="dq_out"))
    x = helper.make_tensor_value_info("x", TensorProto.INT8 if int8_input else TensorProto.FLOAT, shape)
    graph = helper.make_graph(nodes, "moves", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    model.graph.output[0].CopyFrom(inferred.graph.output[0])
    return model


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains())
def test_integer_moves_between_qdq_pairs_equal_onnxruntime(chain):
    shape, steps, int8_input, zp, seed = chain
    model = build(shape, steps, int8_input, zp)
    rng = np.random.default_rng(seed)
    x = (rng.integers(-128, 128, (3, *shape)).astype(np.int8) if int8_input
         else rng.uniform(-7, 7, (3, *shape)).astype(np.float32))          # 3 inferences, stacked
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options)
    want = np.stack([session.run(None, {"x": sample})[0] for sample in x])
    compiled = pytest_npu.compile(model, "u55-256")
    got = compiled.run(x).outputs["y"]
    np.testing.assert_array_equal(got, want)
    # the moves stay on integers with their quantisation (no float copy of them on the host)
    assert not [(layer, op) for layer, op, reason in compiled.unsupported()
                if op in ("transpose", "reshape", "concat") and "not quantised" in reason]
