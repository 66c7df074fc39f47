"""Where a quantised model loses accuracy: per-layer SQNR of every activation against the float model.

Only computed when an accuracy budget breaks (it runs two extra onnxruntime inferences).
"""

from __future__ import annotations

import contextlib
import math

_SKIP = {"QuantizeLinear", "DequantizeLinear", "Constant", "Identity", "Shape", "Reshape", "Flatten"}
_MAX_SAMPLES = 64


def lowest_sqnr_layers(float_ref, qmodel, feeds: dict, intermediates: dict | None, count: int = 3):
    """(rows, note): the ``count`` activations with the lowest SQNR vs the float model, lowest first."""
    import numpy as np

    from .. import metrics

    feeds = {name: value[:_MAX_SAMPLES] for name, value in feeds.items()}
    float_acts, ops = _activations(float_ref.proto, feeds)
    if intermediates:
        measured = {name: np.asarray(value)[:_MAX_SAMPLES] for name, value in intermediates.items()}
        note = "emulator intermediates"
    else:
        quantised = _quantised_views(qmodel.proto, set(float_acts))
        values, _ = _activations(qmodel.proto, feeds, only=set(quantised.values()), skip=set())
        measured = {name: values[view] for name, view in quantised.items() if view in values}
        note = "activations of the QDQ model in onnxruntime, which matches the NPU to ~1 LSB"
    rows = []
    for name, reference in float_acts.items():
        value = measured.get(name)
        if value is None or value.shape != reference.shape or reference.size == 0:
            continue
        sqnr = float(metrics.sqnr_db(reference, value))
        rows.append({"layer": name, "op": ops.get(name, "?"), "sqnr_db": sqnr,
                     "mse": float(metrics.mse(reference, value))})
    if not rows:
        return None, "not available: the float and quantised models share no activation names"
    rows.sort(key=lambda row: row["sqnr_db"] if math.isfinite(row["sqnr_db"]) else math.inf)
    return rows[:count], note


def _quantised_views(proto, names: set[str]) -> dict[str, str]:
    """float tensor name -> the tensor holding its quantised value (DequantizeLinear(QuantizeLinear(t))).

    The quantiser keeps the float names on the pre-quantisation tensors (and may fuse a Relu into the
    quantisation range), so the value the next layer really sees is the DequantizeLinear output.
    """
    dequantised = {node.input[0]: node.output[0] for node in proto.graph.node if node.op_type == "DequantizeLinear"}
    views = {name: name for name in names if name in dequantised.values()}   # renamed graph outputs
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in names and node.output[0] in dequantised:
            views[node.input[0]] = dequantised[node.output[0]]
    return views


def _activations(proto, feeds: dict, only: set[str] | None = None, skip: set[str] = _SKIP):
    """Run ``proto`` in onnxruntime with every (or every wanted) node output exposed as a graph output."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    # Shape inference only adds types to intermediate outputs; a model it cannot infer still
    # exposes the outputs it already declares, so the diagnosis degrades instead of failing.
    with contextlib.suppress(onnx.shape_inference.InferenceError, ValueError):
        model = onnx.shape_inference.infer_shapes(model)
    typed = {value.name: value for value in [*model.graph.value_info, *model.graph.output]}
    ops = {}
    declared = {value.name for value in model.graph.output}
    for node in model.graph.node:
        if node.op_type in skip:
            continue
        for name in node.output:
            if not name or (only is not None and name not in only):
                continue
            ops[name] = node.op_type
            if name not in declared and name in typed:
                model.graph.output.append(typed[name])
                declared.add(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # keep tensors by name
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = [out.name for out in session.get_outputs() if out.name in ops]
    inputs = {i.name: feeds[i.name] for i in session.get_inputs() if i.name in feeds}
    values = session.run(wanted, inputs)
    return dict(zip(wanted, values)), ops
