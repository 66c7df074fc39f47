"""Float graph rewrites done while the model is still ONNX: they need no layout or quant knowledge.

* Identity / Dropout (inference) vanish;
* BatchNormalization after a float Conv is folded into the Conv's weights and bias;
* the Erf-based GELU pattern ``0.5 * x * (1 + erf(x / sqrt(2)))`` becomes one ``Gelu`` node.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from ..errors import ModelError
from .onnx_view import OnnxView, attrs_of


def fold_patterns(view: OnnxView) -> None:
    _drop_identities(view)
    _fold_batchnorm(view)
    _fold_gelu(view)


def _consumers(view: OnnxView, name: str) -> list[onnx.NodeProto]:
    return [n for n in view.nodes if name in n.input]


def _rename(view: OnnxView, old: str, new: str) -> None:
    for node in view.nodes:
        for seq in (node.input, node.output):
            for i, x in enumerate(seq):
                if x == old:
                    seq[i] = new
    tables: tuple[dict, ...] = (view.shapes, view.dtypes)
    for table in tables:
        if old in table and new not in table:
            table[new] = table[old]


def _drop_identities(view: OnnxView) -> None:
    for node in list(view.nodes):
        if node.op_type not in ("Identity", "Dropout") or (node.domain or "") not in ("", "ai.onnx"):
            continue
        if node.op_type == "Dropout":
            mask = node.output[1] if len(node.output) > 1 else ""
            if mask and (_consumers(view, mask) or mask in view.outputs):
                raise ModelError(f"{view.where(node)}: the Dropout mask output is used; at inference "
                                 "Dropout is the identity -- export the model in eval() mode")
            training = node.input[2] if len(node.input) > 2 else ""
            if training and (training not in view.consts or bool(np.asarray(view.consts[training]).reshape(-1)[0])):
                raise ModelError(f"{view.where(node)}: Dropout with training_mode "
                                 f"{'not a constant' if training not in view.consts else 'True'} drops random "
                                 "values; at inference it must be off -- export the model in eval() mode")
        src, dst = node.input[0], node.output[0]
        if dst in view.outputs:
            if src in view.inputs or src in view.consts or src in view.outputs:
                continue        # keep it: lowered as an explicit copy
            view.nodes.remove(node)
            _rename(view, src, dst)
        else:
            view.nodes.remove(node)
            _rename(view, dst, src)


def _fold_batchnorm(view: OnnxView) -> None:
    for bn in [n for n in view.nodes if n.op_type == "BatchNormalization"]:
        producers = [n for n in view.nodes if bn.input[0] in n.output]
        if not producers or producers[0].op_type != "Conv":
            continue
        conv = producers[0]
        w_name = conv.input[1]
        params = bn.input[1:5]
        if (w_name not in view.consts or not all(p in view.consts for p in params)
                or len(_consumers(view, conv.output[0])) != 1 or conv.output[0] in view.outputs
                or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in view.consts)):
            continue
        if len([o for o in bn.output if o]) > 1:
            raise ModelError(f"{view.where(bn)}: BatchNormalization in training mode (running-stat "
                             "outputs); export the model in eval() mode")
        eps = float(attrs_of(bn).get("epsilon", 1e-5))
        scale, bias, mean, var = (view.consts[p].astype(np.float64) for p in params)
        k = scale / np.sqrt(var + eps)
        w = view.consts[w_name].astype(np.float64)
        old_b = (view.consts[conv.input[2]].astype(np.float64)
                 if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0]))
        new_w = (w * k.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        new_b = ((old_b - mean) * k + bias).astype(np.float32)
        w_new_name, b_new_name = f"{conv.name}_bn_weight", f"{conv.name}_bn_bias"
        for name, arr in ((w_new_name, new_w), (b_new_name, new_b)):
            view.consts[name] = arr
            view.shapes[name] = arr.shape
            view.dtypes[name] = "float32"
        fused = helper.make_node("Conv", [conv.input[0], w_new_name, b_new_name], [bn.output[0]],
                                 name=conv.name)
        fused.attribute.extend(conv.attribute)
        view.nodes[view.nodes.index(conv)] = fused
        view.nodes.remove(bn)
        view.folded.setdefault(conv.name, []).append("BatchNormalization")


def _const_scalar(view: OnnxView, name: str) -> float | None:
    arr = view.consts.get(name)
    if arr is None or arr.size != 1:
        return None
    return float(arr.reshape(()))


def _other(node: onnx.NodeProto, name: str) -> str | None:
    ins = list(node.input)
    if len(ins) != 2 or name not in ins:
        return None
    return ins[1] if ins[0] == name else ins[0]


def _single(view: OnnxView, name: str, op: str) -> onnx.NodeProto | None:
    users = _consumers(view, name)
    if len(users) == 1 and users[0].op_type == op and name not in view.outputs:
        return users[0]
    return None


def _fold_gelu(view: OnnxView) -> None:
    """Match Div(x, sqrt2)|Mul(x, 1/sqrt2) -> Erf -> Add 1 -> Mul x -> Mul 0.5 (either order)."""
    for erf in [n for n in view.nodes if n.op_type == "Erf"]:
        pre = next((n for n in view.nodes if erf.input[0] in n.output), None)
        if pre is None or pre.op_type not in ("Div", "Mul") or _single(view, pre.output[0], "Erf") is None:
            continue
        x = pre.input[0]
        c = _const_scalar(view, pre.input[1])
        if c is None or x in view.consts:
            continue
        factor = 1.0 / c if pre.op_type == "Div" else c
        if not math.isclose(factor, 1 / math.sqrt(2), rel_tol=1e-3):
            continue
        add = _single(view, erf.output[0], "Add")
        if add is None or _const_scalar(view, _other(add, erf.output[0]) or "") != 1.0:
            continue
        mul = _single(view, add.output[0], "Mul")
        if mul is None:
            continue
        other = _other(mul, add.output[0])
        chain = [pre, erf, add, mul]
        if other == x:                         # x * (1 + erf) then * 0.5
            half = _single(view, mul.output[0], "Mul")
            if half is None or _const_scalar(view, _other(half, mul.output[0]) or "") != 0.5:
                continue
            chain.append(half)
        else:                                  # (0.5 * x) * (1 + erf)
            half = next((n for n in view.nodes if other in n.output), None)
            if (half is None or half.op_type != "Mul" or _other(half, x) is None
                    or _const_scalar(view, _other(half, x) or "") != 0.5
                    or len(_consumers(view, half.output[0])) != 1):
                continue
            chain.append(half)
        final = chain[-1] if other == x else mul
        gelu = helper.make_node("Gelu", [x], [final.output[0]], name=erf.name)
        position = min(view.nodes.index(n) for n in chain)
        for n in chain:
            view.nodes.remove(n)
        view.nodes.insert(position, gelu)
        view.folded.setdefault(gelu.name, []).extend(n.op_type for n in chain)
