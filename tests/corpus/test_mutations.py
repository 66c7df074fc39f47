"""Property: valid QDQ models mutated at random (dims, dtypes, attributes, initializer contents,
node order, wiring, opset) end in a ``pytest_npu`` error or in results equal to onnxruntime's --
never a foreign exception, and never a result for a model onnxruntime finds invalid.

``NPU_FUZZ_EXAMPLES`` sets the example count (a few hundred here; ``tox -e fuzz`` runs thousands).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from functools import cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import pytest_npu
from pytest_npu import targets
from pytest_npu.errors import EmulatorFault, NpuError

# u55-256 with TOSA single rounding: the 2-LSB comparison below is end to end, and the CNN's
# softmax multiplies a 1-LSB difference in its logits by up to ~10; single rounding keeps the
# logits within ties of ORT's float requantisation (max 1 LSB at the output over 200 inputs),
# where the built-in u55-256's TFLite semantics (double rounding) reach 5 LSB on 5 % of inputs.
# What this test checks is that mutated models give NPU errors or ORT's results, not a rounding.
TARGET = dataclasses.replace(targets.load("u55-256"), rounding="single")

EXAMPLES = int(os.environ.get("NPU_FUZZ_EXAMPLES", 150))


@cache
def base_models() -> tuple[bytes, ...]:
    """Two valid QDQ models quantised by onnxruntime: a CNN with a residual Add, a pool, a
    Concat and a classifier with Softmax; and a 3-D (N, T, C) model with a MatMul and a mean."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from pytest_npu.compress.quantize import op_types_to_quantize

    rng = np.random.default_rng(0)

    def w(*shape):
        return numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), f"w{len(inits)}")

    inits: list = []
    nodes = []

    def conv(x, cin, cout, name):
        inits.append(w(cout, cin, 3, 3))
        inits.append(w(cout))
        nodes.append(helper.make_node("Conv", [x, inits[-2].name, inits[-1].name], [name], name=name,
                                      pads=[1, 1, 1, 1], kernel_shape=[3, 3]))
        return name

    c1 = conv("x", 2, 4, "c1")
    nodes.append(helper.make_node("Relu", [c1], ["r1"], name="relu1"))
    c2 = conv("r1", 4, 4, "c2")
    nodes.append(helper.make_node("Add", [c2, "r1"], ["res"], name="residual"))
    nodes.append(helper.make_node("MaxPool", ["res"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Concat", ["p", "p"], ["cat"], name="concat", axis=1))
    nodes.append(helper.make_node("Flatten", ["cat"], ["flat"], name="flatten", axis=1))
    inits.append(w(5, 32))
    inits.append(w(5))
    nodes.append(helper.make_node("Gemm", ["flat", inits[-2].name, inits[-1].name], ["logits"], name="fc",
                                  transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1))
    cnn = helper.make_model(helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=9)

    inits, nodes = [], []
    inits.append(w(6, 8))
    nodes.append(helper.make_node("MatMul", ["x", inits[-1].name], ["m"], name="dense"))
    nodes.append(helper.make_node("Relu", ["m"], ["r"], name="relu"))
    nodes.append(helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[0, 2, 1]))
    nodes.append(helper.make_node("ReduceMean", ["t"], ["y"], name="mean", axes=[2], keepdims=0))
    seq = helper.make_model(helper.make_graph(
        nodes, "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=9)

    out = []
    for model, shape in ((cnn, (4, 2, 4, 4)), (seq, (4, 5, 6))):
        batches = [{"x": rng.normal(0, 1, shape).astype(np.float32)} for _ in range(4)]

        class Reader(CalibrationDataReader):
            def __init__(self, feeds=batches):
                self.batches = iter(feeds)

            def get_next(self):
                return next(self.batches, None)

        with tempfile.TemporaryDirectory() as tmp:
            onnx.save(model, f"{tmp}/f.onnx")
            quantize_static(f"{tmp}/f.onnx", f"{tmp}/q.onnx", Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=op_types_to_quantize())
            out.append(onnx.load(f"{tmp}/q.onnx").SerializeToString())
    return tuple(out)


_TYPES = [t for t in range(1, 24) if t not in (TensorProto.UNDEFINED,)]
_ATTR_NAMES = ["axis", "perm", "pads", "strides", "kernel_shape", "group", "keepdims", "transB", "alpha",
               "dilations", "auto_pad", "ceil_mode"]


@st.composite
def mutations(draw):
    return (draw(st.integers(0, 1)),
            draw(st.lists(st.tuples(st.sampled_from(["dim", "dtype", "attr", "init", "order", "wire", "drop",
                                                     "opset"]),
                                    st.integers(0, 2**16)), min_size=1, max_size=3)),
            draw(st.integers(0, 2**16)))


def _random_value(rng, template):
    kind = template.type
    if kind == onnx.AttributeProto.INT:
        return int(rng.choice([-2, -1, 0, 1, 2, 3, 7, 2**31]))
    if kind == onnx.AttributeProto.INTS:
        return [int(v) for v in rng.integers(-2, 5, rng.integers(1, 6))]
    if kind == onnx.AttributeProto.FLOAT:
        return float(rng.choice([0.0, -1.0, 1e-30, 1e30, float("nan"), 0.5]))
    if kind == onnx.AttributeProto.STRING:
        return str(rng.choice(["", "SAME_UPPER", "VALID", "nonsense", "NOTSET"]))
    return 1


def mutate(model: onnx.ModelProto, steps, rng) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for kind, seed in steps:
        r = np.random.default_rng(seed)
        if kind == "dim":
            dims = g.input[0].type.tensor_type.shape.dim
            dims[int(r.integers(0, len(dims)))].dim_value = int(r.choice([0, 1, 2, 3, 5, 9]))
        elif kind == "dtype":
            target = r.choice(["input", "output", "init"])
            if target == "init" and g.initializer:
                t = g.initializer[int(r.integers(0, len(g.initializer)))]
                array = numpy_helper.to_array(t)
                new = int(r.choice([TensorProto.INT8, TensorProto.UINT8, TensorProto.INT32, TensorProto.FLOAT,
                                    TensorProto.FLOAT16, TensorProto.INT64, TensorProto.BOOL]))
                np_type = helper.tensor_dtype_to_np_dtype(new)
                t.CopyFrom(numpy_helper.from_array(array.astype(np_type), t.name))
            else:
                vi = g.input[0] if target == "input" else g.output[0]
                vi.type.tensor_type.elem_type = int(r.choice(_TYPES))
        elif kind == "attr":
            nodes = [n for n in g.node]
            node = nodes[int(r.integers(0, len(nodes)))]
            if node.attribute and r.random() < 0.6:
                a = node.attribute[int(r.integers(0, len(node.attribute)))]
                value = _random_value(r, a)
                name = a.name
                node.attribute.remove(a)
                if r.random() < 0.8:
                    node.attribute.append(helper.make_attribute(name, value))
            else:
                node.attribute.append(helper.make_attribute(str(r.choice(_ATTR_NAMES)), int(r.integers(-1, 4))))
        elif kind == "init" and g.initializer:
            t = g.initializer[int(r.integers(0, len(g.initializer)))]
            array = numpy_helper.to_array(t)
            if r.random() < 0.3 and array.size > 1:
                array = array.reshape(-1)[: int(r.integers(1, array.size))]
            elif array.dtype.kind == "f":
                array = r.choice([0.0, 1e-30, 1e30, np.nan, np.inf, -np.inf, 0.1], array.shape).astype(array.dtype)
            elif array.dtype.kind in "iu":
                info = np.iinfo(array.dtype)
                array = r.integers(info.min, info.max, array.shape, endpoint=True, dtype=np.int64).astype(array.dtype)
            t.CopyFrom(numpy_helper.from_array(array, t.name))
        elif kind == "order":
            order = r.permutation(len(g.node))
            nodes = [onnx.NodeProto() for _ in g.node]
            for copy, i in zip(nodes, order):
                copy.CopyFrom(g.node[int(i)])
            del g.node[:]
            g.node.extend(nodes)
        elif kind == "wire":
            names = [x for n in g.node for x in n.output] + [t.name for t in g.initializer] + ["x"]
            node = g.node[int(r.integers(0, len(g.node)))]
            if node.input:
                node.input[int(r.integers(0, len(node.input)))] = str(r.choice(names))
        elif kind == "drop" and len(g.node) > 1:
            del g.node[int(r.integers(0, len(g.node)))]
        elif kind == "opset":
            m.opset_import[0].version = int(r.integers(1, 30))
    return m


def _feeds(model: onnx.ModelProto, rng) -> dict | None:
    vi = model.graph.input[0]
    tt = vi.type.tensor_type
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
    except Exception:      # noqa: BLE001 - an element type numpy has no dtype for
        return None
    shape = [d.dim_value if d.HasField("dim_value") else 2 for d in tt.shape.dim]
    if np.dtype(dtype).kind == "f":
        return {vi.name: rng.normal(0, 1, shape).astype(dtype)}
    if np.dtype(dtype).kind in "iu":
        return {vi.name: rng.integers(-3, 4, shape).astype(dtype)}
    return {vi.name: np.zeros(shape, dtype)}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(mutations())
def test_mutated_models_give_npu_errors_or_onnxruntime_results(mutation):
    which, steps, seed = mutation
    rng = np.random.default_rng(seed)
    model = mutate(onnx.load_from_string(base_models()[which]), steps, rng)
    data = model.SerializeToString()
    feeds = _feeds(model, rng)
    try:
        compiled = pytest_npu.compile(data, TARGET)
        if feeds is None:
            return
        got = compiled.run(feeds).outputs
    except NpuError as exc:
        event(f"refused: {type(exc).__name__}")
        if isinstance(exc, EmulatorFault):      # the compiler made a program the emulator rejects
            pytest.fail(f"{steps}: {exc}")
        return
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        want = ort.InferenceSession(data, options).run(None, feeds)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
        if "NOT_IMPLEMENTED" in str(exc) or "Could not find an implementation" in str(exc):
            event("ran; onnxruntime has no kernel to compare with")
            return     # onnxruntime lacks a kernel for the type: nothing to compare against
        pytest.fail(f"pytest-npu ran a model onnxruntime rejects ({steps}): {str(exc)[:300]}")
    event("ran; compared with onnxruntime")
    for out, value in zip(model.graph.output, want):
        have = np.asarray(got[out.name], np.float64)
        value = np.asarray(value, np.float64)
        assert have.shape == value.shape, (steps, out.name, have.shape, value.shape)
        quant = compiled.graph.boundary(out.name).quant or compiled.graph.tensors[out.name].quant
        if quant is not None and quant.scale.size == 1:
            step = float(quant.scale) if compiled.graph.boundary(out.name).quant is not None else 1.0
            assert np.nanmax(np.abs(have - value), initial=0) <= 2 * step + 1e-6, (steps, out.name)
        else:
            np.testing.assert_allclose(have, value, rtol=1e-4, atol=1e-4, err_msg=str(steps))
