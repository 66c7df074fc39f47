"""ONNX -> :class:`~pytest_npu.ir.graph.Graph`: load, validate, bind shapes, fold constants.

The import runs in three stages so each has one job:

1. this module: read the file safely, refuse what cannot be imported (with every culprit named at
   once), bind dynamic dims, infer shapes and fold constant subgraphs (shape arithmetic, BatchNorm,
   the Erf-based GELU pattern) -- the model stays ONNX, in NCHW;
2. :mod:`.qdq`: fold QuantizeLinear/DequantizeLinear pairs and QOperator nodes into quantised
   nodes over integer tensors (still ONNX op names and NCHW shapes);
3. :mod:`.layout`: lower to IR ops in NHWC, permuting weights instead of activations.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from ..errors import ModelError
from .graph import Graph
from .onnx_view import OnnxView, attrs_of

# Ops the import understands (standard domain). Fold-only ops are accepted when they fold to
# constants (shape arithmetic); if they survive folding the import says which input kept them live.
SUPPORTED_OPS = frozenset({
    "Conv", "Gemm", "MatMul", "Add", "Mul", "Sub", "Div", "Min", "Max", "Relu", "Clip",
    "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat",
    "Pad", "Resize", "Softmax", "BatchNormalization", "Identity", "Dropout",
    "LayerNormalization", "Gelu", "Erf", "ReduceMean", "QuantizeLinear", "DequantizeLinear", "QLinearConv",
    "QLinearMatMul", "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "Cast", "Constant",
    # run on the host with ONNX semantics when they do not fold to constants
    "Gather", "Slice", "Expand", "Where", "Equal", "Not", "Floor", "Ceil", "Sqrt", "Neg", "Abs",
    "Pow", "ReduceProd",
})
FOLD_ONLY_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "Range"})
MICROSOFT_OPS = frozenset({
    "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QuantizeLinear",
    "DequantizeLinear", "Gelu",
})
# Never folded even when every input is constant: the quantiser's weight DequantizeLinear must
# survive so weights stay integers with their QuantParams.
_NEVER_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
                         "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"})
_SIZE_LIMIT = 2**31 - 1


def from_onnx(model: str | os.PathLike | onnx.ModelProto | bytes, *, batch: int = 1,
              bindings: dict[str, int] | None = None) -> Graph:
    """Import an ONNX model (float, QDQ or QOperator form) as an NHWC, quantised IR graph.

    ``batch`` is the value the leading symbolic dim of every input takes (the emulator runs
    batches in lock-step, so 1 is the norm); ``bindings`` gives values for other symbolic dims.
    """
    proto, source, folder = load_model(model)
    leading = _fixed_batch(proto)
    if leading is not None and batch == 1:
        # A fixed batch of N: if the model is the same computation on each of its N samples, import
        # it for one and let run() stack N (the NPU runs one image at a time); otherwise as it is.
        if proto.graph.value_info:
            _infer(proto, source)       # the declared shapes hold for the model as it is
        trial = onnx.ModelProto()
        trial.CopyFrom(proto)
        del trial.graph.value_info[:]
        for value in _graph_inputs(trial.graph):
            value.type.tensor_type.shape.dim[0].dim_value = 1
        try:
            graph = _import(trial, source, folder, batch, bindings)
        except ModelError:
            graph = None
        if graph is not None and "batch_blocker" not in graph.metadata:
            graph.metadata["model_batch"] = leading
            return graph
    return _import(proto, source, folder, batch, bindings)


def _import(proto: onnx.ModelProto, source: str, folder: Path | None, batch: int,
            bindings: dict[str, int] | None) -> Graph:
    from .layout import lower
    from .qdq import fold_quantization

    view = prepare(proto, source=source, folder=folder, batch=batch, bindings=bindings)
    logical = fold_quantization(view)
    graph = lower(logical, view)
    graph.source = source
    _prune_unused(graph)
    check_graph(graph)
    return graph


def _graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in graph.initializer}
    return [v for v in graph.input if v.name not in initializers and v.type.HasField("tensor_type")]


def _fixed_batch(proto: onnx.ModelProto) -> int | None:
    """The fixed leading size N > 1 every graph input shares (None if they do not)."""
    sizes = set()
    for value in _graph_inputs(proto.graph):
        dims = value.type.tensor_type.shape.dim
        sizes.add(dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0)
    return sizes.pop() if len(sizes) == 1 and min(sizes) > 1 else None


def check_graph(graph: Graph) -> None:
    """The contract with the compiler, verified on every import: known ops with their attrs,
    every tensor declared, nodes topologically sorted, constants carrying data of their shape."""
    from .graph import OPS

    problems = []
    ready = set(graph.inputs) | {n for n, t in graph.tensors.items() if t.is_constant}
    for node in graph.nodes:
        if node.op not in OPS:
            problems.append(f"node '{node.name}' has unknown op '{node.op}'")
            continue
        missing = [a for a in OPS[node.op] if a not in node.attrs]
        if missing:
            problems.append(f"node '{node.name}' ({node.op}) lacks attrs {missing}")
        for x in node.inputs:
            if x and x not in graph.tensors:
                problems.append(f"node '{node.name}' reads undeclared tensor '{x}'")
            elif x and x not in ready:
                problems.append(f"node '{node.name}' reads '{x}' before it is produced")
        ready.update(o for o in node.outputs if o)
    for name, t in graph.tensors.items():
        if t.data is not None and tuple(np.shape(t.data)) != tuple(t.shape):
            problems.append(f"constant '{name}' has data of shape {np.shape(t.data)}, declared {t.shape}")
    problems += [f"output '{o}' is never produced" for o in graph.outputs if o not in ready]
    if problems:
        raise ModelError(f"{graph.source}: the importer produced an inconsistent graph (an importer "
                         f"bug; please report it with the model): {'; '.join(problems[:5])}")


# --------------------------------------------------------------------------------------------
# loading


def load_model(model: str | os.PathLike | onnx.ModelProto | bytes
               ) -> tuple[onnx.ModelProto, str, Path | None]:
    """Parse without trusting the file: garbage, truncation and escaping external data -> ModelError."""
    if isinstance(model, onnx.ModelProto):
        proto, source, folder = onnx.ModelProto(), "<ModelProto>", None
        proto.CopyFrom(model)
    elif isinstance(model, bytes | bytearray | memoryview):
        proto, source, folder = _parse(bytes(model), "<bytes>"), "<bytes>", None
    elif isinstance(model, str | os.PathLike):
        path = Path(model)
        source = str(path)
        if not path.is_file():
            raise ModelError(f"{source}: no such ONNX file; pass the path of a .onnx model")
        proto, folder = _parse(path.read_bytes(), source), path.resolve().parent
    else:
        raise ModelError(f"from_onnx() got a {type(model).__name__}; pass a path, bytes or an "
                         "onnx.ModelProto")
    if not proto.HasField("graph") or not proto.graph.node:
        raise ModelError(f"{source}: the protobuf parsed but holds no ONNX graph (no nodes); is "
                         "this really an .onnx model file?")
    _load_external_data(proto, source, folder)
    return proto, source, folder


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    if not data:
        raise ModelError(f"{source}: the file is empty; re-export the model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:   # protobuf's DecodeError and friends
        raise ModelError(f"{source}: not a readable ONNX protobuf ({type(exc).__name__}: {exc}); the "
                         "file is truncated or not an .onnx model -- re-export it") from None
    if not proto.HasField("graph"):
        raise ModelError(f"{source}: the bytes parse as a protobuf but not as an ONNX model (no "
                         "graph); the file is truncated or of another format")
    return proto


def _load_external_data(proto: onnx.ModelProto, source: str, folder: Path | None) -> None:
    """Read external tensors only from inside the model's folder; never follow an escaping path."""
    for tensor in _all_tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if folder is None:
            raise ModelError(f"{source}: initializer '{tensor.name}' keeps its data in external file "
                             f"'{location}', which cannot be found for a model given as bytes; pass "
                             "the model's path instead")
        rel = Path(location)
        resolved = (folder / rel).resolve()
        if rel.is_absolute() or ".." in rel.parts or not resolved.is_relative_to(folder):
            raise ModelError(f"{source}: initializer '{tensor.name}' points at external data "
                             f"'{location}', outside the model's folder; refusing to read it. Keep "
                             "external data files next to the model (or export with "
                             "external_data=False)")
        if not resolved.is_file():
            raise ModelError(f"{source}: initializer '{tensor.name}' needs external data file "
                             f"'{location}', which is missing next to the model")
        try:
            offset = int(info.get("offset", 0) or 0)
            length = int(info["length"]) if info.get("length") not in (None, "") else None
        except ValueError:
            raise ModelError(f"{source}: initializer '{tensor.name}' has a non-numeric external data "
                             f"offset/length ({info.get('offset')!r}, {info.get('length')!r}); re-export "
                             "the model") from None
        size = resolved.stat().st_size
        if offset < 0 or (length is not None and length < 0) or offset > size:
            raise ModelError(f"{source}: initializer '{tensor.name}' reads '{location}' at offset {offset}"
                             f"{'' if length is None else f', length {length}'}, outside the file's {size} "
                             "bytes; the model or its data file is corrupt -- re-export it")
        with open(resolved, "rb") as fh:
            fh.seek(offset)
            raw = fh.read(length) if length is not None else fh.read()
        expected = _expected_bytes(tensor)
        if expected is not None and len(raw) != expected:
            raise ModelError(f"{source}: initializer '{tensor.name}' expects {expected} bytes in "
                             f"'{location}' but found {len(raw)}; the data file is truncated")
        tensor.raw_data = raw
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def _expected_bytes(tensor: onnx.TensorProto) -> int | None:
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except Exception:
        return None
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def _all_tensors(graph: onnx.GraphProto) -> Iterable[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_tensors(attr.g)


# --------------------------------------------------------------------------------------------
# validation, binding, shape inference, folding


def prepare(proto: onnx.ModelProto, *, source: str, folder: Path | None = None, batch: int = 1,
            bindings: dict[str, int] | None = None) -> OnnxView:
    """Validate, bind dims, infer shapes and fold constants until nothing changes."""
    graph = proto.graph
    _name_nodes(graph)
    opset = _opset(proto, source)
    if not graph.output:
        raise ModelError(f"{source}: the graph declares no outputs, so nothing would be computed; "
                         "list the tensors to return in graph.output")
    _check_ops(graph, source)
    _check_inputs_defined(graph, source)
    _sort_or_refuse_cycles(graph, source)
    _light_check(proto, source)
    if graph.value_info:
        _infer(proto, source)           # shapes the model declares must agree with its inputs' (as onnxruntime checks)
    _bind_dims(graph, source, batch, bindings or {})
    view = None
    for _ in range(8):
        inferred = _infer(proto, source)
        view = _view(inferred, source, opset)
        changed = _fold_constants(view)
        _check_outputs(view)
        _write_back(proto, view)
        if not changed:
            break
    assert view is not None
    from .patterns import fold_patterns
    fold_patterns(view)
    _check_static(view)
    _check_leftover_fold_only(view)
    _check_dtypes(view)
    _check_weights(view)
    return view


def _name_nodes(graph: onnx.GraphProto) -> None:
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _opset(proto: onnx.ModelProto, source: str) -> int:
    newest = onnx.defs.onnx_opset_version()
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            if not 1 <= imp.version <= newest:
                raise ModelError(f"{source}: the model declares ONNX opset {imp.version}; the installed onnx "
                                 f"knows opsets 1..{newest}, so its operators' semantics are unknown. "
                                 "Re-export with a released opset (pytest_npu.compress exports 21)")
            return int(imp.version)
    return 1


def _check_ops(graph: onnx.GraphProto, source: str) -> None:
    unknown = []
    for node in graph.node:
        domain = node.domain or ""
        if domain in ("", "ai.onnx"):
            ok = node.op_type in SUPPORTED_OPS or node.op_type in FOLD_ONLY_OPS
        elif domain == "com.microsoft":
            ok = node.op_type in MICROSOFT_OPS
        else:
            ok = False
        if not ok:
            qualified = node.op_type if domain in ("", "ai.onnx") else f"{domain}::{node.op_type}"
            unknown.append(f"'{node.name}' ({qualified})")
    if unknown:
        raise ModelError(f"{source}: {len(unknown)} node(s) use ops the importer does not support: "
                         f"{', '.join(unknown)}. Replace them in the exporter (or add them to "
                         "pytest_npu.ir) -- supported: " + ", ".join(sorted(SUPPORTED_OPS)))


def _check_inputs_defined(graph: onnx.GraphProto, source: str) -> None:
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    known |= {o for n in graph.node for o in n.output}
    for node in graph.node:
        for name in node.input:
            if name not in known:
                raise ModelError(f"{source}: node '{node.name}' ({node.op_type}) reads '{name}', which "
                                 "is neither a graph input, an initializer nor any node's output "
                                 "(missing initializer?); re-export the model with its weights")
    for out in graph.output:
        if out.name not in known:
            raise ModelError(f"{source}: graph output '{out.name}' is produced by no node")


def _sort_or_refuse_cycles(graph: onnx.GraphProto, source: str) -> None:
    """Kahn's algorithm: reorder an unsorted graph; refuse a cyclic one naming its nodes."""
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    deps = [{producer[x] for x in n.input if x in producer} for n in graph.node]
    users: dict[int, list[int]] = {i: [] for i in range(len(graph.node))}
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    missing = [len(d) for d in deps]
    ready = [i for i, m in enumerate(missing) if m == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users[i]:
            missing[u] -= 1
            if missing[u] == 0:
                ready.append(u)
    if len(order) != len(graph.node):
        stuck = {i for i in range(len(graph.node)) if missing[i] > 0}
        pruned = True
        while pruned:        # drop nodes merely downstream of the cycle: name only its members
            sinks = {i for i in stuck if not any(u in stuck for u in users[i])}
            pruned = bool(sinks)
            stuck -= sinks
        stuck_names = [f"'{graph.node[i].name}'" for i in sorted(stuck)]
        raise ModelError(f"{source}: the graph has a cycle through node(s) {', '.join(stuck_names)}; an "
                         "ONNX graph must be acyclic -- fix the exporter or the edited model")
    if order != sorted(order):
        nodes = [graph.node[i] for i in order]
        copies = [onnx.NodeProto() for _ in nodes]
        for c, n in zip(copies, nodes):
            c.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(copies)


def _prune_unused(graph: Graph) -> None:
    """Drop nodes that feed no graph output (onnxruntime runs but never uses them), after the
    import checked them like any other node."""
    needed = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if any(o in needed for o in node.outputs if o):
            keep.append(node)
            needed.update(x for x in node.inputs if x)
    graph.nodes = keep[::-1]
    graph.tensors = {k: t for k, t in graph.tensors.items() if k in needed or k in graph.inputs}


def _light_check(proto: onnx.ModelProto, source: str) -> None:
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{source}: the ONNX checker rejects the model: {first}") from None


def _bind_dims(graph: onnx.GraphProto, source: str, batch: int, bindings: dict[str, int]) -> None:
    if batch < 1:
        raise ModelError(f"{source}: batch={batch}; pass a positive batch")
    initializers = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                continue
            param = dim.dim_param
            if param and param in bindings:
                dim.dim_value = int(bindings[param])
            elif axis == 0:
                dim.dim_value = batch
            else:
                label = f"'{param}'" if param else "(unnamed)"
                raise ModelError(f"{source}: input '{value.name}' has dynamic dim {label} at axis "
                                 f"{axis}; pass bindings={{'{param or 'dim'}': <size>}} to from_onnx "
                                 "(or export with a static shape)")
    # Output and intermediate shapes are re-inferred from the bound inputs (a stale static batch
    # of 1 on an output would contradict batch=N).
    for value in graph.output:
        if value.type.HasField("tensor_type"):
            for dim in value.type.tensor_type.shape.dim:
                dim.Clear()
    del graph.value_info[:]


def _infer(proto: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """ONNX shape inference; com.microsoft ops (unknown to it) get their shapes from us, then again."""
    work = proto
    for _ in range(len(proto.graph.node) + 1):
        try:
            inferred = shape_inference.infer_shapes(work, check_type=True, strict_mode=True,
                                                    data_prop=True)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where = re.search(r"\(op_type:(\w+), node name: ([^)]*)\)", str(exc))
            at = f" at node '{where.group(2)}' ({where.group(1)})" if where else ""
            raise ModelError(f"{source}: ONNX shape inference failed{at}: {first}. Check the input "
                             "shapes (and the shapes the model declares for its tensors) and the bindings "
                             "you passed") from None
        extra = _contrib_value_infos(inferred)
        if not extra:
            return inferred
        work = onnx.ModelProto()
        work.CopyFrom(inferred)
        work.graph.value_info.extend(extra)
    return inferred


def _contrib_value_infos(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Shapes and dtypes of com.microsoft quantised ops' outputs that inference left unknown."""
    graph = proto.graph
    known: dict[str, tuple[int, tuple[int, ...] | None]] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value for d in tt.shape.dim) if tt.HasField("shape") and all(
            d.HasField("dim_value") for d in tt.shape.dim) else None
        known[vi.name] = (tt.elem_type, dims)
    for t in graph.initializer:
        known[t.name] = (t.data_type, tuple(t.dims))
    out = []
    for node in graph.node:
        if node.domain != "com.microsoft" or not node.output:
            continue
        y = node.output[0]
        if y in known and known[y][1] is not None:
            continue
        shape = _contrib_shape(node, known)
        if shape is None:
            continue
        op = node.op_type
        zp_at = {"QGemm": 8, "QLinearConcat": 1, "QuantizeLinear": 2}.get(op, 4 if op in (
            "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool")
            else 7)
        if op in ("DequantizeLinear", "Gelu"):
            elem = known.get(node.input[1] if op == "DequantizeLinear" else node.input[0], (1, None))[0]
        elif zp_at < len(node.input) and node.input[zp_at] in known:
            elem = known[node.input[zp_at]][0]
        else:
            elem = onnx.TensorProto.FLOAT if op == "QGemm" else onnx.TensorProto.UINT8
        out.append(helper.make_tensor_value_info(y, elem, list(shape)))
        known[y] = (elem, shape)
    return out


def _contrib_shape(node: onnx.NodeProto, known: dict) -> tuple[int, ...] | None:
    def shape(i: int) -> tuple[int, ...] | None:
        return known.get(node.input[i], (0, None))[1] if i < len(node.input) else None

    op, a = node.op_type, attrs_of(node)
    if op == "QGemm":
        sa, sb = shape(0), shape(3)
        if sa is None or sb is None:
            return None
        m = sa[1] if a.get("transA", 0) else sa[0]
        n = sb[0] if a.get("transB", 0) else sb[1]
        return (m, n)
    if op in ("QLinearAdd", "QLinearMul"):
        sa, sb = shape(0), shape(3)
        return None if sa is None or sb is None else tuple(np.broadcast_shapes(sa, sb))
    if op in ("QLinearSigmoid", "QLinearLeakyRelu", "QuantizeLinear", "DequantizeLinear", "Gelu"):
        return shape(0)
    if op == "QLinearGlobalAveragePool":
        s = shape(0)
        return None if s is None else (s[0], s[1]) + (1,) * (len(s) - 2)
    if op == "QLinearConcat":
        found = [shape(i) for i in range(2, len(node.input), 3)]
        parts = [p for p in found if p is not None]
        if len(parts) != len(found) or not parts:
            return None
        axis = int(a["axis"]) % len(parts[0])
        total = sum(p[axis] for p in parts)
        return tuple(total if i == axis else d for i, d in enumerate(parts[0]))
    if op == "QLinearAveragePool":
        s = shape(0)
        if s is None:
            return None
        k = a["kernel_shape"]
        strides = a.get("strides", [1] * len(k))
        pads = a.get("pads", [0] * 2 * len(k))
        spatial = []
        for i, (size, kk, st) in enumerate(zip(s[2:], k, strides)):
            span = size + pads[i] + pads[i + len(k)] - kk
            spatial.append((-(-span // st) if a.get("ceil_mode", 0) else span // st) + 1)
        return tuple(s[:2]) + tuple(spatial)
    return None


def _view(proto: onnx.ModelProto, source: str, opset: int) -> OnnxView:
    graph = proto.graph
    consts: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        consts[t.name] = _to_array(t, source)
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            continue
        if tt.elem_type:
            dtypes[vi.name] = ("string" if tt.elem_type == onnx.TensorProto.STRING
                               else np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name)
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
    for name, arr in consts.items():
        shapes[name] = tuple(arr.shape)
        dtypes[name] = arr.dtype.name
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant" and (node.domain or "") in ("", "ai.onnx"):
            consts[node.output[0]] = _constant_value(node, source)
            shapes[node.output[0]] = tuple(consts[node.output[0]].shape)
            dtypes[node.output[0]] = consts[node.output[0]].dtype.name
            continue
        nodes.append(node)
    inputs = [i.name for i in graph.input if i.name not in consts]
    return OnnxView(nodes=nodes, consts=consts, shapes=shapes, dtypes=dtypes, inputs=inputs,
                    outputs=[o.name for o in graph.output], opset=opset, source=source,
                    name=graph.name or "model")


def _to_array(tensor: onnx.TensorProto, source: str) -> np.ndarray:
    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except Exception as exc:
        raise ModelError(f"{source}: initializer '{tensor.name}' cannot be decoded ({exc}); the "
                         "file is corrupt -- re-export it") from None


def _constant_value(node: onnx.NodeProto, source: str) -> np.ndarray:
    attr = node.attribute[0] if node.attribute else None
    if attr is None:
        raise ModelError(f"{source}: Constant node '{node.name}' has no value attribute")
    if attr.name == "value":
        return _to_array(attr.t, source)
    scalar_kinds = {"value_float": np.float32, "value_int": np.int64}
    list_kinds = {"value_floats": np.float32, "value_ints": np.int64}
    value = helper.get_attribute_value(attr)
    if attr.name in scalar_kinds:
        return np.asarray(value, scalar_kinds[attr.name])
    if attr.name in list_kinds:
        return np.asarray(value, list_kinds[attr.name])
    raise ModelError(f"{source}: Constant node '{node.name}' uses attribute '{attr.name}', which the "
                     "importer does not read; use 'value'")


def _fold_constants(view: OnnxView) -> bool:
    """Evaluate nodes whose inputs are all known (plus Shape/Size of static tensors)."""
    changed = False
    kept = []
    for node in view.nodes:
        domain = node.domain or ""
        value: list[np.ndarray] | None = None
        if domain in ("", "ai.onnx") and node.op_type in ("Shape", "Size") and node.input[0] in view.shapes:
            shape = np.asarray(view.shapes[node.input[0]], np.int64)
            if node.op_type == "Size":
                value = [np.asarray(shape.prod(), np.int64)]
            else:
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                value = [shape[attrs.get("start", 0):attrs.get("end", len(shape))]]
        elif (domain in ("", "ai.onnx") and node.op_type not in _NEVER_FOLD
              and all(x == "" or x in view.consts for x in node.input) and node.input):
            try:
                feeds = {x: view.consts[x] for x in node.input if x}
                value = evaluate_node(node, feeds, view.opset)
            except Exception as exc:
                raise ModelError(f"{view.where(node)}: folding this constant-only node failed "
                                 f"({type(exc).__name__}: {exc}); check its inputs") from None
        if value is None:
            kept.append(node)
            continue
        for name, arr in zip([o for o in node.output if o], value):
            if name:
                view.consts[name] = arr
                view.shapes[name] = tuple(arr.shape)
                view.dtypes[name] = arr.dtype.name
        changed = True
    view.nodes = kept
    return changed


def _write_back(proto: onnx.ModelProto, view: OnnxView) -> None:
    """Make the ModelProto match the view so the next shape-inference round sees the constants."""
    graph = proto.graph
    used = {x for n in view.nodes for x in n.input} | set(view.outputs)
    del graph.initializer[:]
    for name, arr in view.consts.items():
        if name in used:
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
    inputs = [i for i in graph.input if i.name in view.inputs]
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.node[:]
    graph.node.extend(view.nodes)
    del graph.value_info[:]


def _check_static(view: OnnxView) -> None:
    for node in view.nodes:
        for name in list(node.input) + list(node.output):
            if name and name not in view.shapes:
                raise ModelError(f"{view.where(node)}: the shape of '{name}' is unknown after shape "
                                 "inference and constant folding; export with static shapes or pass "
                                 "bindings={...} for the symbolic dims")


# dtypes a tensor computed at run time may have (npu.isa.DTYPES): the rest are refused by name
RUNTIME_DTYPES = frozenset({"float32", "int8", "uint8", "int16", "int32"})
_DTYPE_HINTS = {"float16": "export in float32 (model.float()) or quantise it",
                "bfloat16": "export in float32 (model.float()) or quantise it",
                "float64": "export in float32 (model.float())",
                "uint16": "quantise activations as int16 (QuantType.QInt16)",
                "bool": "compute masks in the exporter as constants, or outside the model",
                "int64": "keep int64 for shapes and indices that fold to constants"}


def _check_dtypes(view: OnnxView) -> None:
    """Every tensor computed at run time has a dtype the NPU or the host can hold."""
    def problem(name: str) -> str | None:
        dtype = view.dtypes.get(name, "float32")
        if dtype in RUNTIME_DTYPES or name in view.consts:
            return None
        hint = _DTYPE_HINTS.get(dtype, "pytest-npu runs float32, int8/uint8/int16 quantised and int32 tensors")
        return f"is {dtype}, which pytest-npu cannot run ({hint})"

    for name in view.inputs:
        if (why := problem(name)) is not None:
            raise ModelError(f"{view.source}: input '{name}' {why}")
    for node in view.nodes:
        for name in node.output:
            if name and (why := problem(name)) is not None:
                raise ModelError(f"{view.where(node)}: output '{name}' {why}")


# positions of weight-like constants: a NaN or infinity there is a corrupt model, not a value
# (an infinite constant elsewhere can be meant: an attention mask's -inf, a Clip bound)
_WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1),
                  "BatchNormalization": (1, 2, 3, 4), "LayerNormalization": (1, 2), "PRelu": (1,)}


def _check_weights(view: OnnxView) -> None:
    for node in view.nodes:
        for i, name in enumerate(node.input):
            arr = view.consts.get(name) if name else None
            if arr is None or arr.dtype.kind != "f" or arr.size == 0:
                continue
            bad = ~np.isfinite(arr) if i in _WEIGHT_INPUTS.get(node.op_type, ()) else np.isnan(arr)
            if bad.any():
                what = "NaN" if np.isnan(arr).any() else "infinite values"
                raise ModelError(f"{view.where(node)}: constant '{name}' holds {what} ({int(bad.sum())} of "
                                 f"{arr.size}); the weights are corrupt -- re-export or retrain the model")


def _check_outputs(view: OnnxView) -> None:
    view.outputs = list(dict.fromkeys(view.outputs))   # an output listed twice is one output
    for name in view.outputs:
        if name in view.consts:
            raise ModelError(f"{view.source}: output '{name}' is a constant (it folds to a value that "
                             "does not depend on any input), so there is nothing to run for it; drop it "
                             "from the graph outputs")
        if name in view.inputs:
            raise ModelError(f"{view.source}: output '{name}' is the graph input itself; there is "
                             "nothing to run for it -- drop it from the graph outputs")


def _check_leftover_fold_only(view: OnnxView) -> None:
    for node in view.nodes:
        if (node.domain or "") in ("", "ai.onnx") and node.op_type in FOLD_ONLY_OPS:
            live = [x for x in node.input if x and x not in view.consts]
            raise ModelError(f"{view.where(node)}: only supported when it folds to a constant (shape "
                             f"arithmetic), but its input '{live[0] if live else '?'}' depends on the "
                             "model input; rewrite this part of the model")


def evaluate_node(node: onnx.NodeProto, feeds: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Run one node with onnx's reference evaluator at the model's opset (semantics change by opset)."""
    from onnx.reference import ReferenceEvaluator

    inputs = [helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(feeds[x].dtype), None)
              for x in dict.fromkeys(node.input) if x]
    outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
               for o in node.output if o]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    results = ReferenceEvaluator(model).run(None, {k: np.asarray(v) for k, v in feeds.items()})
    return [np.asarray(v) for v in results]
