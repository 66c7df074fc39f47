"""ONNX's own operator test cases (``onnx.backend.test.case.node``) as a corpus for the import,
the compiler and ``CompiledModel.run()``.

Every case whose nodes the importer knows runs in up to three variants:

* ``as-is``: the case's model and inputs; outputs must equal the case's expected outputs
  (integers exactly, floats within the case's own tolerance);
* ``frozen``: the inputs that parametrise the op (weights, shapes, scales, pads...) become
  initializers, as in a deployed model; compared like ``as-is``;
* ``qdq``: the frozen model quantised the way a QDQ quantiser writes it (int8 QuantizeLinear /
  DequantizeLinear around every float activation, int8 weights), compared with onnxruntime's
  execution of that QDQ model with graph optimisations off, within one output LSB.

Each (case, variant) ends in one outcome: ``exact`` / ``ort`` (passed against the expected output /
onnxruntime), ``refused`` (a ``pytest_npu`` error naming a node, tensor or input of the model),
``unnamed`` (a ``pytest_npu`` error naming none), ``foreign`` (any other exception) or ``wrong``
(completed with a wrong result). The corpus must have only the first three.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import pytest_npu
from pytest_npu.errors import NpuError
from pytest_npu.ir.onnx_import import FOLD_ONLY_OPS, SUPPORTED_OPS

KNOWN = SUPPORTED_OPS | FOLD_ONLY_OPS
TARGET = "u55-256"
# inputs that carry activations (the rest parametrise the op and are frozen as initializers)
_ALL = None
_DATA = {"Conv": (0,), "ConvInteger": (0,), "QLinearConv": (0,), "Gemm": (0,), "MatMul": (0, 1),
         "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3), "Concat": _ALL, "Add": _ALL, "Sub": _ALL,
         "Mul": _ALL, "Div": _ALL, "Min": _ALL, "Max": _ALL, "Sum": _ALL, "Mean": _ALL, "Pow": _ALL,
         "Equal": _ALL, "Where": _ALL}
_WEIGHT = {("Conv", 1), ("Gemm", 1)}
_BIAS = {("Conv", 2)}


@dataclass
class Outcome:
    case: str
    variant: str
    kind: str            # exact | ort | refused | foreign | wrong
    detail: str = ""


@cache
def cases() -> tuple:
    """The node test cases whose every node uses an op the importer knows (collected once)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        found = collect_testcases()
    out = []
    for c in found:
        if c.kind != "node" or not c.model.graph.node or not c.data_sets \
                or not all(n.op_type in KNOWN for n in c.model.graph.node):
            continue
        inputs, outputs = (_arrays(values) for values in c.data_sets[0])
        if inputs is not None and outputs is not None:     # sequences and optionals are not tensors
            c.data_sets = [(inputs, outputs)]
            out.append(c)
    return tuple(out)


def _arrays(values) -> list[np.ndarray] | None:
    """A data set's values as arrays (the case files store exotic dtypes as TensorProto)."""
    out = []
    for v in values:
        if isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, np.generic):
            v = np.asarray(v)
        if not isinstance(v, np.ndarray):
            return None
        out.append(v)
    return out


def op_of(case) -> str:
    return case.model.graph.node[0].op_type


def _is_live(model: onnx.ModelProto, name: str) -> bool:
    uses = [(n.op_type, i) for n in model.graph.node for i, x in enumerate(n.input) if x == name]
    return bool(uses) and all(_DATA.get(op, (0,)) is _ALL or i in _DATA.get(op, (0,)) for op, i in uses)


def frozen(model: onnx.ModelProto, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, dict] | None:
    """The model with its op-parametrising inputs as initializers (None when there are none)."""
    names = [i.name for i in model.graph.input]
    live = [n for n in names if _is_live(model, n)] or names[:1]
    if len(live) == len(names):
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [i for i in out.graph.input if i.name in live]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    for name, value in zip(names, inputs):
        if name not in live:
            out.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return out, {n: v for n, v in zip(names, inputs) if n in live}


def _params(values: np.ndarray) -> tuple[np.float32, np.int8]:
    """Asymmetric int8 parameters covering ``values`` (and 0, as quantisers require)."""
    finite = values[np.isfinite(values)] if values.size else values
    lo = min(float(finite.min(initial=0.0)), 0.0)
    hi = max(float(finite.max(initial=0.0)), 0.0)
    scale = np.float32(max((hi - lo) / 255.0, 1e-4))
    zp = int(np.clip(np.rint(-128 - lo / float(scale)), -128, 127))
    return scale, np.int8(zp)


def qdq(model: onnx.ModelProto, feeds: dict, expected: list[np.ndarray]) -> onnx.ModelProto | None:
    """Quantise ``model`` (float32 I/O, parameters frozen) as a QDQ quantiser would."""
    g = model.graph
    if any(i.type.tensor_type.elem_type != TensorProto.FLOAT for i in g.input) or not g.input:
        return None
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset < 13:
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes, extra_inits = [], []
    scales: dict[str, float] = {}

    def qdq_of(name: str, values: np.ndarray) -> str:
        s, z = _params(values)
        scales[name] = float(s)
        extra_inits.extend([numpy_helper.from_array(np.asarray(s), f"{name}__s"),
                            numpy_helper.from_array(np.asarray(z), f"{name}__z")])
        new_nodes.append(helper.make_node("QuantizeLinear", [name, f"{name}__s", f"{name}__z"], [f"{name}__q"]))
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{name}__q", f"{name}__s", f"{name}__z"],
                                          [f"{name}__dq"]))
        return f"{name}__dq"

    renamed = {i.name: qdq_of(i.name, np.asarray(feeds[i.name], np.float32)) for i in g.input}
    for node in g.node:
        for k, x in enumerate(node.input):
            if x in renamed:
                node.input[k] = renamed[x]
            elif (node.op_type, k) in _WEIGHT and x in inits and inits[x].data_type == TensorProto.FLOAT:
                w = numpy_helper.to_array(inits[x]).astype(np.float32)
                s = np.float32(max(float(np.abs(w).max(initial=0.0)) / 127.0, 1e-6))
                q = np.clip(np.rint(w / s), -127, 127).astype(np.int8)
                scales[x] = float(s)
                extra_inits.extend([numpy_helper.from_array(q, f"{x}__q"), numpy_helper.from_array(np.asarray(s), f"{x}__ws")])
                new_nodes.append(helper.make_node("DequantizeLinear", [f"{x}__q", f"{x}__ws"], [f"{x}__wdq"]))
                node.input[k] = f"{x}__wdq"
    outputs = {o.name: v for o, v in zip(g.output, expected)}
    for o in g.output:
        if o.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        raw = f"{o.name}__raw"
        for node in g.node:
            node.output[:] = [raw if y == o.name else y for y in node.output]
            node.input[:] = [raw if x == o.name else x for x in node.input]
        s, z = _params(np.asarray(outputs[o.name], np.float32))
        extra_inits.extend([numpy_helper.from_array(np.asarray(s), f"{o.name}__os"),
                            numpy_helper.from_array(np.asarray(z), f"{o.name}__oz")])
        new_nodes.append(helper.make_node("QuantizeLinear", [raw, f"{o.name}__os", f"{o.name}__oz"], [f"{o.name}__oq"]))
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{o.name}__oq", f"{o.name}__os", f"{o.name}__oz"],
                                          [o.name]))
    nodes = [n for n in new_nodes if n.op_type == "DequantizeLinear" and n.output[0].endswith(("__dq", "__wdq"))]
    nodes = [n for n in new_nodes if n not in nodes and n.output[0].endswith("__q")] + nodes
    tail = [n for n in new_nodes if n not in nodes]
    body = list(g.node)
    del g.node[:]
    g.node.extend(nodes + body + tail)
    g.initializer.extend(extra_inits)
    return out


def ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _close(got, want, rtol: float, atol: float) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    if want.dtype.kind in "fc":
        return bool(np.allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol,
                                equal_nan=True))
    return got.dtype == want.dtype and np.array_equal(got, want)


def _run(model: onnx.ModelProto, feeds: dict) -> dict:
    cm = pytest_npu.compile(model, TARGET)
    return cm.run(feeds).outputs


def run_variant(case, variant: str) -> Outcome | None:
    """One (case, variant): its outcome, or None when the variant does not apply to the case."""
    inputs, expected = case.data_sets[0]
    model = case.model
    names = [i.name for i in model.graph.input]
    feeds = dict(zip(names, inputs))
    if variant != "as-is":
        made = frozen(model, list(inputs))
        if made is None and variant == "frozen":
            return None
        if made is not None:
            model, feeds = made
    scales: dict[str, float] = {}
    if variant == "qdq":
        qmodel = qdq(model, feeds, list(expected))
        if qmodel is None:
            return None
        try:
            expected = ort_run(qmodel, feeds)
        except Exception:        # onnxruntime cannot run this QDQ form: not a comparable variant
            return None
        for node in qmodel.graph.node:
            if node.op_type == "QuantizeLinear" and node.output[0].endswith("__oq"):
                scales[node.output[0][:-4]] = float(numpy_helper.to_array(
                    next(t for t in qmodel.graph.initializer if t.name == node.input[1])))
        model = qmodel
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            got = _run(model, feeds)
    except NpuError as exc:
        text = f"{type(exc).__name__}: {exc}"
        return Outcome(case.name, variant, "refused" if names_culprit(model, text) else "unnamed", text)
    except Exception as exc:  # noqa: BLE001 - the corpus exists to catch exactly these
        import traceback
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return Outcome(case.name, variant, "foreign",
                       f"{type(exc).__name__}: {exc} at {frame.filename}:{frame.lineno}")
    for o, want in zip(model.graph.output, expected):
        have = got.get(o.name)
        if variant == "qdq" and o.name in scales:
            ok = have is not None and np.shape(have) == np.shape(want) and bool(
                np.all(np.abs(np.asarray(have, np.float64) - np.asarray(want, np.float64))
                       <= scales[o.name] * (1 + 1e-5)))
        else:
            ok = have is not None and _close(have, want, case.rtol, case.atol)
        if not ok:
            return Outcome(case.name, variant, "wrong",
                           f"output '{o.name}': got {np.asarray(have).ravel()[:6]} want {np.asarray(want).ravel()[:6]}")
    return Outcome(case.name, variant, "ort" if variant == "qdq" else "exact")


VARIANTS = ("as-is", "frozen", "qdq")


def run_all(selected=None) -> list[Outcome]:
    out = []
    for case in cases():
        if selected is not None and op_of(case) not in selected:
            continue
        for variant in VARIANTS:
            result = run_variant(case, variant)
            if result is not None:
                out.append(result)
    return out


def names_culprit(model: onnx.ModelProto, message: str) -> bool:
    """The refusal names a node, tensor or input of ``model`` (or says the whole model is float)."""
    g = model.graph
    names = {n.name for n in g.node if n.name} | {f"{n.op_type}_{i}" for i, n in enumerate(g.node)}
    names |= {x for n in g.node for x in [*n.input, *n.output] if x}
    names |= {v.name for v in [*g.input, *g.output]}
    return "every tensor is float32" in message or any(f"'{name}" in message for name in names)


def table(outcomes: list[Outcome]) -> str:
    """Cases per outcome class and variant, as the resolve note shows them."""
    kinds = ("exact", "ort", "refused", "unnamed", "foreign", "wrong")
    rows = [f"| variant | {' | '.join(kinds)} |", "|---|" + "---|" * len(kinds)]
    for variant in (*VARIANTS, "all"):
        picked = [o for o in outcomes if variant in ("all", o.variant)]
        rows.append(f"| {variant} | " + " | ".join(str(sum(o.kind == k for o in picked)) for k in kinds) + " |")
    return "\n".join(rows)


if __name__ == "__main__":      # the full table: python tests/corpus/onnx_cases.py
    results = run_all()
    print(f"{len(cases())} cases, {len(results)} (case, variant) runs on {TARGET}")
    print(table(results))
    for o in results:
        if o.kind in ("unnamed", "foreign", "wrong"):
            print(o)
