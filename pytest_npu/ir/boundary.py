"""The record of an imported graph's inputs and outputs: is axis 0 a batch axis?

The emulator runs N inferences in lock-step, each on the program compiled for one. Stacking N
samples along the model's axis 0 therefore means "N inferences of the batch-1 model", which is the
model's own semantics only if axis 0 (of size 1) is a batch axis all the way through: no operator
computes along it (a Softmax over axis 0, a Concat on it, a Transpose moving it, a reduction over
it) and no tensor derived from the inputs loses or grows it. :func:`batch_blocker` walks the
quantisation-folded ONNX graph (ONNX op names, NCHW shapes) and names the first node that breaks
this, so ``run()`` can refuse to stack along axis 0 with that node in the message instead of
silently computing something else.
"""

from __future__ import annotations

import numpy as np

from .graph import Tensor
from .qdq import Logical

# operators with an ``axis`` attribute: computing along axis 0 mixes samples
_AXIS_OPS = {"Softmax": -1, "LogSoftmax": -1, "Hardmax": -1, "Concat": None, "Split": 0,
             "LayerNormalization": -1, "Flatten": 1, "CumSum": None, "Gather": 0}
# operators with ``axes`` (attribute or input 1): touching axis 0 mixes samples or moves the batch
_AXES_OPS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                       "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp",
                       "Squeeze", "Unsqueeze"})


def batch_blocker(lg: Logical, opset: int) -> str | None:
    """Why axis 0 of the graph inputs is not a batch axis, or None when it is."""
    for x in lg.inputs:
        shape = lg.tensors[x].shape
        if not shape:
            return f"input '{x}' is a scalar"
        if shape[0] != 1:
            return f"input '{x}' has shape {tuple(shape)}: its axis 0 holds {shape[0]} values of one inference"
    carried = set(lg.inputs)
    for node in lg.nodes:
        live = [i for i, x in enumerate(node.inputs) if x in carried]
        if not live:
            continue
        reason = _mixes(node, live, lg.tensors, opset)
        where = f"node '{node.name}' ({node.op})"
        if reason:
            return f"{where} {reason}"
        for o in node.outputs:
            if not o:
                continue
            shape = lg.tensors[o].shape
            if not shape or shape[0] != 1:
                return f"{where} gives '{o}' the shape {tuple(shape)}, so axis 0 is no batch axis after it"
            carried.add(o)
    lost = [o for o in lg.outputs if o not in carried]
    if lost:
        return f"output '{lost[0]}' does not follow the inputs' axis 0"
    return None


def _mixes(node, live: list[int], tensors: dict[str, Tensor], opset: int) -> str:
    """Why ``node`` computes across axis 0 of its batch-carrying inputs (``live`` positions)."""
    op, a = node.op, node.attrs
    rank = len(tensors[node.inputs[live[0]]].shape)
    if op in _AXIS_OPS:
        default = _AXIS_OPS[op]
        if op in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13:
            default = 1
        axis = a.get("axis", default)
        if axis is not None and int(axis) % max(rank, 1) == 0:
            return "computes along axis 0, the batch axis"
        return ""
    if op in _AXES_OPS:
        axes = a.get("axes")
        if axes is None and len(node.inputs) > 1 and node.inputs[1] and tensors[node.inputs[1]].is_constant:
            axes = np.asarray(tensors[node.inputs[1]].data).reshape(-1).tolist()
        if axes is None or len(axes) == 0:
            if op.startswith("Reduce") and not a.get("noop_with_empty_axes", 0):
                return "reduces over every axis, the batch axis included"
            if op == "Squeeze":
                return "squeezes every size-1 axis, the batch axis included"
            return ""
        out_rank = len(tensors[node.outputs[0]].shape) if node.outputs and node.outputs[0] else rank
        norm = {int(x) % max(out_rank if op == "Unsqueeze" else rank, 1) for x in axes}
        if 0 in norm:
            return "acts on axis 0, the batch axis"
        return ""
    if op == "Slice":
        axes_in = node.inputs[3] if len(node.inputs) > 3 else ""
        if not axes_in:
            return "slices every axis, the batch axis included"
        axes = np.asarray(tensors[axes_in].data).reshape(-1) if tensors[axes_in].is_constant else [0]
        if 0 in {int(x) % max(rank, 1) for x in axes}:
            return "slices axis 0, the batch axis"
        return ""
    if op == "Transpose":
        perm = a.get("perm")
        if perm is None and rank > 1 or perm is not None and int(perm[0]) != 0:
            return "moves axis 0, the batch axis"
        return ""
    if op in ("Gemm", "QGemm"):
        if a.get("transA", 0) or any(i != 0 for i in live):
            return "contracts over axis 0, the batch axis"
        return ""
    if op in ("MatMul", "MatMulInteger"):
        if 1 in live and len(tensors[node.inputs[1]].shape) <= 2:
            return "contracts over axis 0 of its second operand, the batch axis"
        return ""
    if op == "DynamicQuantizeLinear":
        return ("computes one scale over the whole tensor, batch axis included (stack inferences on a "
                "new leading axis to quantise each on its own)")
    return ""
