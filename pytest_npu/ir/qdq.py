"""Fold QDQ pairs and QOperator nodes into quantised nodes over integer tensors.

Input: the cleaned ONNX view (NCHW, ONNX ops). Output: a :class:`Logical` graph whose nodes keep
their ONNX op names and NCHW shapes, but whose tensors are the *integer* tensors with
:class:`~pytest_npu.ir.graph.QuantParams`:

* ``DQ(x), DQ(w), DQ(b) -> Conv -> [Relu|Clip] -> Q`` becomes one quantised ``Conv`` over the
  integer tensors, with the Relu/Clip recorded as ``clamp`` in the output's integer domain (ORT
  drops the Relu altogether: the Q range then does the clipping);
* any other op between DQs and a Q (MaxPool, Reshape, Sigmoid, Add...) becomes a quantised node
  whose input and output tensors carry their own params (equal params = pure integer op, different
  ones = the compiler rescales or builds a LUT);
* ``DQ -> Q`` with different params becomes ``Rescale``; a Q of a float value or a DQ feeding a
  float node becomes a ``Rescale`` to/from float (quantise / dequantise);
* the boundary Q on a graph input and DQ on a graph output become ``input_quant``/``output_quant``
  and the integer tensors take the ONNX input/output names;
* QLinearConv, QLinearMatMul, com.microsoft QGemm/QLinearAdd/... map to the same quantised nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from ..errors import ModelError
from .graph import Node, QuantParams, Tensor
from .onnx_view import OnnxView, attrs_of

# Ops that may become quantised nodes (everything else stays float and is fed dequantised values).
QUANTISABLE = frozenset({
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Min", "Max", "MaxPool", "AveragePool",
    "GlobalAveragePool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Pad",
    "Resize", "Softmax", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "Gelu",
    "Relu", "Clip", "LayerNormalization", "Identity", "ReduceMean", "Slice", "Gather", "Expand",
})
# Ops that act on integer tensors directly in QOperator models; the output keeps the input's params.
PASS_THROUGH = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                          "Pad", "Resize", "Identity", "Concat", "Slice", "Gather", "Expand"})
# Inputs that carry data (the rest are shapes, axes, pads, scales, or float parameters).
_MULTI_DATA = {"Conv": (0, 1), "Gemm": (0, 1), "MatMul": (0, 1), "Add": (0, 1), "Sub": (0, 1),
               "Mul": (0, 1), "Min": (0, 1), "Max": (0, 1)}
_BIAS_INPUT = {"Conv": 2, "Gemm": 2}
# Ops that only move integers: on integer tensors their output holds the input's values, so the
# input's quantisation (known from a DequantizeLinear anywhere along the chain) is the output's.
MOVES = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Slice",
                   "Pad", "Concat", "Gather", "Expand"})
_QUANT_DTYPES = frozenset({"int8", "uint8", "int16", "uint16", "int32"})

# QOperator op -> (float op, [(x, scale, zp) per data input], (y scale, y zp), bias input or None)
_QOPS: dict[str, tuple[str, list[tuple[int, int, int]], tuple[int, int] | None, int | None]] = {
    "QLinearConv": ("Conv", [(0, 1, 2), (3, 4, 5)], (6, 7), 8),
    "QLinearMatMul": ("MatMul", [(0, 1, 2), (3, 4, 5)], (6, 7), None),
    "QGemm": ("Gemm", [(0, 1, 2), (3, 4, 5)], (7, 8), 6),
    "QLinearAdd": ("Add", [(0, 1, 2), (3, 4, 5)], (6, 7), None),
    "QLinearMul": ("Mul", [(0, 1, 2), (3, 4, 5)], (6, 7), None),
    "QLinearSigmoid": ("Sigmoid", [(0, 1, 2)], (3, 4), None),
    "QLinearLeakyRelu": ("LeakyRelu", [(0, 1, 2)], (3, 4), None),
    "QLinearAveragePool": ("AveragePool", [(0, 1, 2)], (3, 4), None),
    "QLinearGlobalAveragePool": ("GlobalAveragePool", [(0, 1, 2)], (3, 4), None),
}


@dataclass
class Logical:
    """Quantisation folded, layout not yet: ONNX op names, NCHW shapes, ONNX per-channel axes."""

    tensors: dict[str, Tensor]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    input_quant: dict[str, QuantParams] = field(default_factory=dict)
    output_quant: dict[str, QuantParams] = field(default_factory=dict)


def quant_params(view: OnnxView, node: onnx.NodeProto, scale: str, zero_point: str | None,
                 dtype: str, axis: int | None, shape: tuple[int, ...]) -> QuantParams:
    """QuantParams from a node's scale/zero-point constants (refusing non-constant ones)."""
    if dtype not in _QUANT_DTYPES:
        raise ModelError(f"{view.where(node)}: {dtype} quantisation is not supported; use int8/uint8 or "
                         "int16/uint16 activations with int8 weights")
    if scale not in view.consts:
        raise ModelError(f"{view.where(node)}: scale '{scale}' is not a constant; only static "
                         "quantisation is supported (quantize_dynamic models run on the host)")
    s = np.asarray(view.consts[scale], np.float32)
    if zero_point and zero_point not in view.consts:
        raise ModelError(f"{view.where(node)}: zero point '{zero_point}' is not a constant")
    zp = (np.asarray(view.consts[zero_point]).astype(np.int64) if zero_point
          else np.zeros(s.shape, np.int64))
    if s.ndim > 1 or s.size < 1:
        raise ModelError(f"{view.where(node)}: scale '{scale}' has shape {s.shape}; only per-tensor or "
                         "per-channel (1-D) quantisation is supported (blocked quantisation is not)")
    explicit = attrs_of(node).get("axis") if node.op_type in ("QuantizeLinear", "DequantizeLinear") else None
    if explicit is not None and not -len(shape) <= int(explicit) < max(len(shape), 1):
        raise ModelError(f"{view.where(node)}: axis={explicit} does not exist in a tensor of shape "
                         f"{tuple(shape)}")
    if zp.shape != s.shape and zp.size != s.size:
        raise ModelError(f"{view.where(node)}: zero point '{zero_point}' has {zp.size} values for {s.size} "
                         "scales; they must match one to one")
    zp = zp.reshape(s.shape)
    if s.size == 1:
        s, zp, axis = s.reshape(()), zp.reshape(()), None
    else:
        rank = len(shape)
        if rank == 0 or not -rank <= (axis if axis is not None else 1) < rank:
            raise ModelError(f"{view.where(node)}: per-channel axis {axis} does not exist in a tensor of "
                             f"shape {tuple(shape)}")
        axis = (axis if axis is not None else 1) % rank
        if shape[axis] != s.size:
            raise ModelError(f"{view.where(node)}: scale '{scale}' has {s.size} values but axis {axis} of "
                             f"the tensor has {shape[axis]} channels; a per-channel scale needs one value "
                             "per channel -- re-run the quantiser")
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise ModelError(f"{view.where(node)}: scale '{scale}' has non-positive or non-finite values")
    return QuantParams(scale=s, zero_point=zp, dtype=dtype, axis=axis)


def same_quant(a: QuantParams | None, b: QuantParams | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.dtype == b.dtype and a.axis == b.axis and a.scale.shape == b.scale.shape
            and bool(np.all(a.scale == b.scale)) and bool(np.all(a.zero_point == b.zero_point)))


class _Folder:
    def __init__(self, view: OnnxView):
        self.view = view
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.dq: dict[str, str] = {}           # float DQ output -> integer source tensor
        self.materialised: set[str] = set()
        self.absorbed: set[int] = set()        # ids of ONNX nodes folded into another
        self.rename: dict[str, str] = {}
        self.input_quant: dict[str, QuantParams] = {}
        self.output_quant: dict[str, QuantParams] = {}
        self.users: dict[str, list[onnx.NodeProto]] = {}
        for node in view.nodes:
            for x in node.input:
                self.users.setdefault(x, []).append(node)

    # -- tensors ------------------------------------------------------------------------------
    def tensor(self, name: str, quant: QuantParams | None = None) -> Tensor:
        if name not in self.tensors:
            v = self.view
            self.tensors[name] = Tensor(name, v.shapes.get(name, ()), v.dtypes.get(name, "float32"),
                                        quant, v.consts.get(name))
        elif quant is not None and self.tensors[name].quant is None:
            self.tensors[name].quant = quant
        return self.tensors[name]

    def claim(self, name: str, quant: QuantParams | None, node: onnx.NodeProto) -> Tensor:
        """``self.tensor(name, quant)`` for a tensor ``node`` produces: its integers must not be read
        with other parameters (a DequantizeLinear with another scale would need a guessed rescale)."""
        t = self.tensor(name, quant)
        if quant is not None and t.quant is not None and not t.is_constant and not same_quant(t.quant, quant):
            readers = [u.name for u in self.users.get(name, []) if u.op_type == "DequantizeLinear"]
            raise ModelError(f"{self.view.where(node)}: produces '{name}' with scale "
                             f"{np.asarray(quant.scale).tolist()} / zero point {np.asarray(quant.zero_point).tolist()}, "
                             f"but {', '.join(repr(r) for r in readers) or 'another node'} reads it with scale "
                             f"{np.asarray(t.quant.scale).tolist()} / zero point {np.asarray(t.quant.zero_point).tolist()}; "
                             "the integers mean one thing -- re-run the quantiser")
        return t

    def int_source(self, name: str) -> str | None:
        """The integer tensor behind a float name (via DQ), or the name itself if it is quantised."""
        if name in self.dq:
            return self.dq[name]
        t = self.tensors.get(name)
        if t is not None and t.quant is not None and not t.dtype.startswith("float"):
            return name
        return None

    # -- Q / DQ -------------------------------------------------------------------------------
    def record_dq(self, node: onnx.NodeProto) -> None:
        v = self.view
        a = attrs_of(node)
        if a.get("block_size", 0):
            raise ModelError(f"{v.where(node)}: blocked DequantizeLinear is not supported")
        x = node.input[0]
        qp = quant_params(v, node, node.input[1], node.input[2] if len(node.input) > 2 else None,
                          v.dtypes.get(x, "int8"), a.get("axis", 1), v.shapes.get(x, ()))
        t = self.tensor(x)
        if t.quant is None:
            t.quant = qp
        elif not same_quant(t.quant, qp):
            if t.is_constant:       # the same integers dequantised two ways: keep both readings
                alias = f"{x}__{node.name}"
                self.tensors[alias] = Tensor(alias, t.shape, t.dtype, qp, t.data)
                x = alias
            else:
                raise ModelError(f"{v.where(node)}: dequantises '{x}' with params that differ from "
                                 "its QuantizeLinear; re-run the quantiser")
        self.dq[node.output[0]] = x

    def q_params(self, node: onnx.NodeProto) -> QuantParams:
        v = self.view
        a = attrs_of(node)
        if a.get("block_size", 0):
            raise ModelError(f"{v.where(node)}: blocked QuantizeLinear is not supported")
        zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
        dtype = v.dtypes.get(node.output[0]) or (v.consts[zp].dtype.name if zp else "uint8")
        return quant_params(v, node, node.input[1], zp, dtype, a.get("axis", 1),
                            v.shapes.get(node.input[0], ()))

    def dequantised(self, name: str) -> str:
        """A float reading of a DQ output: a float constant, or a Rescale node (dequantise)."""
        src = self.dq.get(name)
        if src is None or name in self.materialised:
            self.tensor(name)
            return name
        self.materialised.add(name)
        t = self.tensors[src]
        if t.data is not None:
            assert t.quant is not None
            self.tensors[name] = Tensor(name, t.shape, "float32", None, dequantise(t.data, t.quant))
        else:
            self.tensors[name] = Tensor(name, t.shape, "float32")
            self.nodes.append(Node(f"{name}_dequantize", "Rescale", [src], [name],
                                   source_ops=["DequantizeLinear"]))
        return name

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> Logical:
        v = self.view
        for node in v.nodes:
            if node.op_type == "QuantizeLinear" and node.input[0] in v.consts:
                self.quantise_constant(node)
        for node in v.nodes:
            if node.op_type == "DequantizeLinear":
                self.record_dq(node)
        self.carry_through_moves()
        for node in v.nodes:
            if id(node) in self.absorbed or node.op_type == "DequantizeLinear":
                continue
            if node.op_type == "QuantizeLinear":
                self.lone_quantize(node)
            elif node.op_type in _QOPS or node.op_type == "QLinearConcat":
                self.qoperator(node)
            else:
                self.compute(node)
        self.boundaries()
        return self.finish()

    def quantise_constant(self, node: onnx.NodeProto) -> None:
        """Q of a constant is a constant: store the integers (the quantiser left it to runtime)."""
        v = self.view
        qp = self.q_params(node)
        data = np.asarray(v.consts[node.input[0]], np.float32)
        scale, zp = qp.scale, qp.zero_point
        if qp.axis is not None:
            shape = [1] * data.ndim
            shape[qp.axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        info = np.iinfo(np.dtype(qp.dtype))
        q = np.clip(np.rint(data / scale) + zp, info.min, info.max).astype(qp.dtype)
        y = node.output[0]
        v.consts[y], v.shapes[y], v.dtypes[y] = q, q.shape, q.dtype.name
        self.tensors[y] = Tensor(y, q.shape, q.dtype.name, qp, q)
        self.absorbed.add(id(node))

    def lone_quantize(self, node: onnx.NodeProto) -> None:
        x, y = node.input[0], node.output[0]
        qp = self.q_params(node)
        self.claim(y, qp, node)
        src = self.dq.get(x)
        if src is not None and not self.tensors[src].is_constant:
            if same_quant(self.tensors[src].quant, qp) and y not in self.view.outputs:
                self.rename[y] = src
            else:
                self.nodes.append(Node(node.name, "Rescale", [src], [y], source_ops=["DequantizeLinear",
                                                                                     "QuantizeLinear"]))
            return
        if x in self.view.inputs and all(u.op_type == "QuantizeLinear" for u in self.users[x]) \
                and x not in self.input_quant and x not in self.view.outputs and y not in self.view.outputs:
            self.input_quant[x] = qp
            self.rename[y] = x
            return
        self.nodes.append(Node(node.name, "Rescale", [self.dequantised(x)], [y],
                               source_ops=["QuantizeLinear"]))

    def carry_through_moves(self) -> None:
        """Give the integer tensors on either side of an op that only moves integers (Transpose,
        Reshape, Concat... on int8 data, as tf2onnx writes before its first DequantizeLinear) the
        quantisation known on the other side, so they stay integer tensors the NPU moves as they
        are; an op that would have to relabel integers (two different scales meeting) is refused."""
        v = self.view
        known: dict[str, QuantParams] = {}
        for name, t in self.tensors.items():
            if t.quant is not None and not t.is_constant:
                known[name] = t.quant
        for node in v.nodes:
            if node.op_type == "QuantizeLinear" and node.input[0] not in v.consts:
                known.setdefault(node.output[0], self.q_params(node))
        moves = [n for n in v.nodes if n.op_type in MOVES and (n.domain or "") in ("", "ai.onnx")]
        changed = True
        while changed:
            changed = False
            for node in moves:
                ins = [x for i, x in enumerate(node.input)
                       if x and (i == 0 or node.op_type == "Concat") and x not in v.consts]
                out = node.output[0]
                names = ins + [out]
                if not ins or any(v.dtypes.get(n, "float32") not in _QUANT_DTYPES for n in names) \
                        or len({v.dtypes[n] for n in names}) != 1:
                    continue
                if all(n in known for n in names) or not any(n in known for n in names):
                    continue
                if out not in known:
                    src = next(x for x in ins if x in known)
                    known[out] = _through(v, node, src, out, known[src])
                for x in ins:
                    if x not in known:
                        known[x] = _through(v, node, out, x, known[out])
                changed = True
        for name, qp in known.items():
            self.tensor(name, qp)

    def q_chain(self, out: str) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto]] | None:
        """Relu/Clip nodes then the QuantizeLinear consumers of ``out``, or None if not quantised."""
        v = self.view
        clamps: list[onnx.NodeProto] = []
        cur = out
        while cur not in v.outputs:
            users = self.users.get(cur, [])
            if len(users) == 1 and users[0].op_type in ("Relu", "Clip") and all(
                    x in v.consts for x in users[0].input[1:] if x):
                clamps.append(users[0])
                cur = users[0].output[0]
                continue
            if users and all(u.op_type == "QuantizeLinear" and id(u) not in self.absorbed
                             for u in users):
                return clamps, users
            return None
        return None

    def compute(self, node: onnx.NodeProto) -> None:
        v = self.view
        op = node.op_type
        data = _MULTI_DATA.get(op, tuple(range(len(node.input))) if op == "Concat" else (0,))
        sources = [self.int_source(node.input[i]) if i < len(node.input) else None for i in data]
        outs = [o for o in node.output if o]
        if op == "MatMul" and all(s is not None for s in sources) and self.matmul_add(node, sources):
            return
        if op in QUANTISABLE and len(outs) == 1 and all(s is not None for s in sources):
            if not v.dtypes.get(outs[0], "float32").startswith("float"):
                if op in PASS_THROUGH and all(x not in self.dq for x in node.input[:1]):
                    self.emit(node, op, {i: s for i, s in zip(data, sources) if s}, outs[0],
                              self.tensors[sources[0]].quant)   # type: ignore[index]
                    return
            else:
                chain = self.q_chain(outs[0])
                if chain is not None:
                    clamps, qs = chain
                    qp = self.q_params(qs[0])
                    main = qs[0].output[0]
                    self.emit(node, op, {i: s for i, s in zip(data, sources) if s}, main, qp,
                              clamp=_clamp(v, clamps, qp), extra=[c.op_type for c in clamps])
                    for c in clamps:
                        self.absorbed.add(id(c))
                    for q in qs:
                        self.absorbed.add(id(q))
                    for q in qs[1:]:
                        self.claim(q.output[0], self.q_params(q), q)
                        self.nodes.append(Node(q.name, "Rescale", [main], [q.output[0]],
                                               source_ops=["QuantizeLinear"]))
                    return
        inputs = [self.dequantised(x) if x else "" for x in node.input]
        for o in outs:
            self.tensor(o)
        self.nodes.append(Node(node.name, op, inputs, list(node.output), attrs_of(node),
                               source_ops=[op] + v.folded.get(node.name, [])))

    def matmul_add(self, node: onnx.NodeProto, sources: list) -> bool:
        """``DQ(x) -> MatMul(DQ(w)) -> Add(DQ(int32 bias)) [-> Relu] -> Q`` (how tf2onnx writes a
        dense layer) is one quantised Gemm: the Add's constant is the fully-connected bias."""
        v = self.view
        y = node.output[0]
        users = self.users.get(y, [])
        if (len(users) != 1 or users[0].op_type != "Add" or y in v.outputs or len(v.shapes.get(node.input[0], ())) != 2
                or not self.tensors[sources[1]].is_constant or len(self.tensors[sources[1]].shape) != 2):
            return False
        add = users[0]
        bias = add.input[1] if add.input[0] == y else add.input[0]
        n = self.tensors[sources[1]].shape[1]
        constant = bias in v.consts or (bias in self.dq and self.tensors[self.dq[bias]].is_constant)
        if not constant or int(np.prod(v.shapes.get(bias, (0,)))) != n or v.shapes[bias][-1] != n:
            return False
        chain = self.q_chain(add.output[0])
        if chain is None:
            return False
        clamps, qs = chain
        qp = self.q_params(qs[0])
        gemm = onnx.helper.make_node("Gemm", [node.input[0], node.input[1], bias], [qs[0].output[0]], name=node.name)
        self.emit(gemm, "Gemm", {0: sources[0], 1: sources[1]}, qs[0].output[0], qp,
                  clamp=_clamp(v, clamps, qp), extra=["Add", *(c.op_type for c in clamps)])
        for absorbed in [add, *clamps, *qs]:
            self.absorbed.add(id(absorbed))
        for q in qs[1:]:
            self.claim(q.output[0], self.q_params(q), q)
            self.nodes.append(Node(q.name, "Rescale", [qs[0].output[0]], [q.output[0]], source_ops=["QuantizeLinear"]))
        return True

    def emit(self, node: onnx.NodeProto, op: str, data: dict[int, str], out: str,
             out_quant: QuantParams | None, *, clamp=None, extra=()) -> None:
        """A quantised node: data inputs are integer tensors; parameters are dequantised floats."""
        v = self.view
        inputs = []
        for i, x in enumerate(node.input):
            if i in data:
                inputs.append(data[i])
            elif i == _BIAS_INPUT.get(op) and x and x in self.dq and self.tensors[self.dq[x]].is_constant:
                inputs.append(self.dq[x])     # the layout stage requantises it to s_x * s_w if needed
            else:
                inputs.append(self.dequantised(x) if x else "")
        self.claim(out, out_quant, node)
        attrs = attrs_of(node)
        if clamp is not None:
            attrs["clamp"] = clamp
        # the op itself first (reports show it), then what was folded into it
        sources = [op] + v.folded.get(node.name, []) + list(extra) + ["DequantizeLinear", "QuantizeLinear"]
        self.nodes.append(Node(node.name, op, inputs, [out], attrs, source_ops=sources))

    def qoperator(self, node: onnx.NodeProto) -> None:
        v = self.view
        if node.op_type == "QLinearConcat":
            out_spec: tuple[int, int] | None = (0, 1)
            specs = [(i, i + 1, i + 2) for i in range(2, len(node.input), 3)]
            base, bias_at = "Concat", None
        else:
            base, specs, out_spec, bias_at = _QOPS[node.op_type]
        a = attrs_of(node)
        if a.get("channels_last"):
            raise ModelError(f"{v.where(node)}: channels_last=1 is not supported; quantise the NCHW model")
        inputs = []
        for k, (x_i, s_i, z_i) in enumerate(specs):
            x = node.input[x_i]
            axis = 0          # per-channel weights: QLinearConv's output channels ...
            if k == 1 and base == "MatMul":
                axis = -1     # ... QLinearMatMul's columns, QGemm's N axis
            elif k == 1 and base == "Gemm":
                axis = 0 if a.get("transB", 0) else 1
            qp = quant_params(v, node, node.input[s_i], node.input[z_i] if z_i < len(node.input) else None,
                              v.dtypes.get(x, "uint8"), axis, v.shapes.get(x, ()))
            t = self.tensor(x)
            if t.quant is None:
                t.quant = qp
            elif not same_quant(t.quant, qp):
                if not t.is_constant:
                    raise ModelError(f"{v.where(node)}: reads '{x}' with params that differ from "
                                     "the ones it was produced with")
                x = f"{x}__{node.name}"
                self.tensors[x] = Tensor(x, t.shape, t.dtype, qp, t.data)
            inputs.append(x)
        if out_spec is None or out_spec[0] >= len(node.input) or not node.input[out_spec[0]]:
            raise ModelError(f"{v.where(node)}: has no output scale (float output); only quantised "
                             "outputs are supported")
        y = node.output[0]
        out_q = quant_params(v, node, node.input[out_spec[0]],
                             node.input[out_spec[1]] if out_spec[1] < len(node.input) else None,
                             v.dtypes.get(y, "uint8"), None, v.shapes.get(y, ()))
        if bias_at is not None and bias_at < len(node.input) and node.input[bias_at]:
            b = node.input[bias_at]
            xq, wq = self.tensors[inputs[0]].quant, self.tensors[inputs[1]].quant
            assert xq is not None and wq is not None
            scale = (xq.scale * wq.scale).astype(np.float32)
            bq = QuantParams(scale, np.zeros(scale.shape, np.int64), "int32", 0 if scale.ndim else None)
            self.tensors[b] = Tensor(b, v.shapes[b], "int32", bq, v.consts[b].astype(np.int32))
            inputs.append(b)
        self.claim(y, out_q, node)
        attrs = {k: val for k, val in a.items() if k != "channels_last"}
        if base == "Gemm" and attrs.get("alpha", 1.0) != 1.0:
            raise ModelError(f"{v.where(node)}: QGemm alpha={attrs['alpha']} is not supported")
        self.nodes.append(Node(node.name, base, inputs, [y], attrs, source_ops=[node.op_type]))

    # -- boundaries ---------------------------------------------------------------------------
    def boundaries(self) -> None:
        v = self.view
        claimed: set[str] = set()
        for o in v.outputs:
            src = self.dq.get(o)
            root = self.resolve(src) if src is not None else None
            # an output reading the integers of an input or of another output gets its own copy
            if src is None or o in self.materialised or root in claimed or root in v.inputs \
                    or self.tensors[src].is_constant:
                if o in self.dq and o not in self.materialised:
                    self.dequantised(o)
                continue
            claimed.add(root)   # type: ignore[arg-type]
            self.output_quant[o] = self.tensors[src].quant   # type: ignore[assignment]
            self.rename[root] = o   # type: ignore[index]

    def resolve(self, x: str) -> str:
        """The tensor ``x`` stands for after the renames so far (a Q that aliased its source)."""
        seen = set()
        while x in self.rename and x not in seen:
            seen.add(x)
            x = self.rename[x]
        return x

    def finish(self) -> Logical:
        name = self.resolve

        tensors: dict[str, Tensor] = {}
        for node in self.nodes:
            node.inputs = [name(x) if x else "" for x in node.inputs]
            node.outputs = [name(x) if x else "" for x in node.outputs]
        for old, t in self.tensors.items():
            new = name(old)
            if new in tensors and new != old:
                continue
            if new != old:
                t = Tensor(new, t.shape, t.dtype, t.quant, t.data)
                if new in self.input_quant:
                    t.quant = self.input_quant[new]
            tensors[new] = t
        for x in self.view.inputs:
            if x not in tensors:
                tensors[x] = Tensor(x, self.view.shapes.get(x, ()), self.view.dtypes.get(x, "float32"))
        for x, qp in self.input_quant.items():
            tensors[x] = Tensor(x, tensors[x].shape, qp.dtype, qp)
        used = {x for n in self.nodes for x in n.inputs + n.outputs} | set(self.view.inputs) \
            | set(self.view.outputs)
        tensors = {k: t for k, t in tensors.items() if k in used}
        return Logical(tensors, self.nodes, list(self.view.inputs), list(self.view.outputs),
                       self.input_quant, self.output_quant)


def _through(view: OnnxView, node: onnx.NodeProto, src: str, dst: str, qp: QuantParams) -> QuantParams:
    """``qp`` of tensor ``src`` as the quantisation of ``dst`` on the other side of move ``node``."""
    if qp.axis is None:
        return qp
    a_shape, b_shape = view.shapes.get(src, ()), view.shapes.get(dst, ())
    axis = None
    if node.op_type == "Transpose":
        perm = list(attrs_of(node).get("perm", reversed(range(len(a_shape)))))
        axis = perm.index(qp.axis) if src == node.input[0] else perm[qp.axis]
    elif node.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"):
        before = int(np.prod(a_shape[:qp.axis], dtype=np.int64))
        for j in range(len(b_shape)):
            if int(np.prod(b_shape[:j], dtype=np.int64)) == before and b_shape[j] == a_shape[qp.axis]:
                axis = j
                break
    elif a_shape[qp.axis:qp.axis + 1] == b_shape[qp.axis:qp.axis + 1]:     # Pad/Slice/Concat elsewhere
        axis = qp.axis
    if axis is None:
        raise ModelError(f"{view.where(node)}: moves integers quantised per channel along axis {qp.axis} "
                         f"of '{src}' so that the channels do not map onto '{dst}'; quantise that tensor "
                         "per tensor")
    return QuantParams(qp.scale, qp.zero_point, qp.dtype, axis)


def dequantise(data: np.ndarray, qp: QuantParams) -> np.ndarray:
    scale, zp = qp.scale, qp.zero_point
    if qp.axis is not None and scale.ndim == 1:
        shape = [1] * data.ndim
        shape[qp.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((data.astype(np.int64) - zp) * scale).astype(np.float32)


def _clamp(view: OnnxView, clamps: list[onnx.NodeProto], qp: QuantParams) -> tuple[int, int] | None:
    """Relu/Clip bounds in the output's integer domain (Q is monotone, so it commutes with clip)."""
    if not clamps:
        return None
    lo, hi = -np.inf, np.inf
    for node in clamps:
        if node.op_type == "Relu":
            lo = max(lo, 0.0)
            continue
        a = attrs_of(node)
        cmin = view.consts[node.input[1]] if len(node.input) > 1 and node.input[1] else a.get("min")
        cmax = view.consts[node.input[2]] if len(node.input) > 2 and node.input[2] else a.get("max")
        if cmin is not None:
            lo = max(lo, float(np.asarray(cmin).reshape(())))
        if cmax is not None:
            hi = min(hi, float(np.asarray(cmax).reshape(())))
    if qp.per_channel:
        raise ModelError(f"{view.source}: a Relu/Clip after a per-channel quantised output cannot be "
                         "folded; quantise activations per tensor")
    return int_clamp(qp, lo, hi)


def int_clamp(qp: QuantParams, lo: float, hi: float) -> tuple[int, int]:
    """Real bounds [lo, hi] as integer bounds of ``qp`` (infinite bounds -> the dtype's range)."""
    info = np.iinfo(np.dtype(qp.dtype))
    qlo = int(qp.quantize(np.asarray(lo, np.float32))) if np.isfinite(lo) else int(info.min)
    qhi = int(qp.quantize(np.asarray(hi, np.float32))) if np.isfinite(hi) else int(info.max)
    return qlo, qhi


def fold_quantization(view: OnnxView) -> Logical:
    return _Folder(view).run()
