"""Lower the quant-folded ONNX graph to IR ops in NHWC.

Every 4-D activation becomes ``(N, H, W, C)``; constants are permuted instead of activations
(conv weights to ``(KH, KW, Cin, Cout)``, FC weights to ``(K, N)``, and FC rows from CHW to HWC
order when a Flatten feeds them) so no transpose is needed on the usual CNN path. Where ONNX
semantics depend on NCHW order (a general Reshape/Transpose/MatMul of 4-D tensors, host
``float_op`` nodes) explicit ``transpose`` nodes restore it: correctness first, and a transpose
that moves no data (size-1 axes) becomes a free ``reshape``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError
from .boundary import batch_blocker
from .graph import OPS, Boundary, Graph, Node, QuantParams, Tensor
from .onnx_view import OnnxView
from .qdq import Logical, dequantise, int_clamp, same_quant

NHWC = (0, 2, 3, 1)   # IR axis i holds ONNX (NCHW) axis NHWC[i]
NCHW = (0, 3, 1, 2)   # ONNX axis i holds IR axis NCHW[i]
NWC = (0, 2, 1)       # a rank-3 NCW input of 1-D layers, in the IR
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Min": "min", "Max": "max"}
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "HardSwish": "hardswish",
          "Gelu": "gelu", "Rescale": "rescale"}
# Host ops whose result does not depend on the memory order of their input (elementwise or
# whole-tensor statistics): they run on the NHWC tensor directly, no transposes.
_LAYOUT_FREE = frozenset({"Cast", "Erf", "DynamicQuantizeLinear"})
_RUNTIME_DTYPES = frozenset({"float32", "int8", "uint8", "int16", "int32"})
# ONNX ops whose output only copies input values: exact on integers of one quantisation
_INTEGER_MOVES = frozenset({"Slice", "Gather", "Expand", "Pad", "Transpose", "Reshape", "Squeeze",
                            "Unsqueeze", "Flatten", "Concat", "Identity"})
_CLAMPABLE = frozenset({"conv2d", "depthwise_conv2d", "fully_connected", "matmul", "add", "sub",
                        "mul", "max_pool", "avg_pool", "global_avg_pool"})


def _trivial(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """True when transposing ``shape`` by ``perm`` moves no data (only size-1 axes move)."""
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def _permute_quant(qp: QuantParams | None, perm: tuple[int, ...]) -> QuantParams | None:
    """Quant params of ``x.transpose(perm)``: the per-channel axis follows its data."""
    if qp is None or qp.axis is None:
        return qp
    return QuantParams(qp.scale, qp.zero_point, qp.dtype, perm.index(qp.axis))


def _compose(first: tuple[int, ...], then: tuple[int, ...]) -> tuple[int, ...]:
    """``x.transpose(first).transpose(then) == x.transpose(_compose(first, then))``."""
    return tuple(first[i] for i in then)


class _Lowerer:
    def __init__(self, lg: Logical, view: OnnxView):
        self.lg = lg
        self.view = view
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.flat: dict[str, tuple[int, int, int]] = {}    # 2-D tensors with rows in HWC order
        self.rows: dict[str, tuple[str, Node]] = {}        # rank-3 NCW tensor -> its (N, 1, W, C) image
        self.nchw: dict[str, str] = {}
        self.users: dict[str, list[Node]] = {}
        for n in lg.nodes:
            for x in n.inputs:
                self.users.setdefault(x, []).append(n)
        # 4-D graph inputs/outputs the model keeps NHWC (a tf2onnx export transposes its NHWC input
        # to NCHW first thing): their IR tensor is the model's array as it is, the transpose free
        four = {n for n, t in lg.tensors.items() if len(t.shape) == 4}
        self.native = {x for x in lg.inputs if x in four and x not in lg.outputs and self.users.get(x)
                       and all(u.op == "Transpose" and tuple(u.attrs.get("perm", ())) == NCHW
                               for u in self.users[x])}
        self.native |= {n.outputs[0] for n in lg.nodes if n.op == "Transpose" and n.outputs[0] in lg.outputs
                        and n.inputs[0] in four and tuple(n.attrs.get("perm", ())) == NHWC}
        # rank-3 NCW graph inputs that only 1-D layers read: NWC in the IR (run() transposes them,
        # as it does NCHW images), so the first layer reads a one-row image with no transpose
        self.nwc = {x for x in lg.inputs if len(lg.tensors[x].shape) == 3 and x not in lg.outputs
                    and self.users.get(x) and all(_reads_rows(u, x) for u in self.users[x])}

    # -- helpers ------------------------------------------------------------------------------
    def where(self, node: Node) -> str:
        return f"{self.view.source}: node '{node.name}' ({node.op})"

    def fail(self, node: Node, what: str) -> ModelError:
        return ModelError(f"{self.where(node)}: {what}")

    def lt(self, name: str) -> Tensor:
        return self.lg.tensors[name]

    def is_const(self, name: str) -> bool:
        return bool(name) and self.lg.tensors[name].is_constant

    def add_tensor(self, t: Tensor) -> str:
        old = self.tensors.get(t.name)
        if old is not None and (old.shape != t.shape or old.dtype != t.dtype
                                or (t.data is not None and (old.data is None or not np.array_equal(old.data, t.data)))):
            base, i = t.name, 1
            while f"{base}__{i}" in self.tensors:
                i += 1
            t = Tensor(f"{base}__{i}", t.shape, t.dtype, t.quant, t.data)
        self.tensors.setdefault(t.name, t)
        return t.name

    def act(self, name: str) -> str:
        """The IR activation for a logical tensor (NHWC if 4-D)."""
        if name in self.tensors:
            return name
        if name in self.rows:         # a 1-D convolution's result, asked for in NCW order
            image, node = self.rows[name]
            n, _, w, c = self.tensors[image].shape
            ncw = self.move(node, image, NCHW, tag="ncw")           # (N, C, 1, W)
            t = self.lt(name)
            self.tensors[name] = Tensor(name, tuple(t.shape), t.dtype, t.quant)
            self.emit(node, "reshape", [ncw], [name], {"shape": tuple(t.shape)}, suffix="/rank3")
            return name
        t = self.lt(name)
        if t.is_constant:
            return self.add_tensor(Tensor(name, t.shape, t.dtype, t.quant, t.data))
        if len(t.shape) == 4 and name not in self.native:
            shape = tuple(t.shape[i] for i in NHWC)
            self.tensors[name] = Tensor(name, shape, t.dtype, _permute_quant(t.quant, NHWC))
        elif name in self.nwc:
            self.tensors[name] = Tensor(name, tuple(t.shape[i] for i in NWC), t.dtype, _permute_quant(t.quant, NWC))
        else:
            self.tensors[name] = Tensor(name, t.shape, t.dtype, t.quant)
        return name

    def out(self, name: str) -> str:
        """Declare the IR tensor for a logical node output (NHWC if 4-D); returns its name."""
        t = self.lt(name)
        nhwc = len(t.shape) == 4 and name not in self.native
        shape = tuple(t.shape[i] for i in NHWC) if nhwc else t.shape
        quant = _permute_quant(t.quant, NHWC) if nhwc else t.quant
        self.tensors[name] = Tensor(name, tuple(shape), t.dtype, quant)
        return name

    def emit(self, node: Node, op: str, inputs: list[str], outputs: list[str], attrs=None,
             suffix: str = "") -> Node:
        assert op in OPS, op
        ir = Node(node.name + suffix, op, inputs, outputs, dict(attrs or {}),
                  list(node.source_ops) if not suffix else [])
        self.nodes.append(ir)
        return ir

    def temp(self, base: str, shape: tuple[int, ...], like: Tensor, perm: tuple[int, ...] | None = None) -> str:
        name, i = base, 1
        while name in self.tensors or name in self.lg.tensors:
            name, i = f"{base}{i}", i + 1
        quant = _permute_quant(like.quant, perm) if perm is not None else like.quant
        self.tensors[name] = Tensor(name, tuple(shape), like.dtype, quant)
        return name

    def move(self, node: Node, src: str, perm: tuple[int, ...], dst: str | None = None,
             tag: str = "") -> str:
        """Transpose ``src`` by ``perm`` (a free reshape when no data moves)."""
        t = self.tensors[src]
        shape = tuple(t.shape[p] for p in perm)
        if dst is None:
            dst = self.temp(f"{src}__{tag or 'perm'}", shape, t, perm)
        if _trivial(t.shape, perm):
            self.emit(node, "reshape", [src], [dst], {"shape": shape}, suffix=f"/{tag or 'reshape'}")
        else:
            self.emit(node, "transpose", [src], [dst], {"perm": tuple(perm)}, suffix=f"/{tag or 'transpose'}")
        return dst

    def to_onnx_layout(self, node: Node, name: str) -> str:
        """The tensor in ONNX (NCHW) order: a transpose for 4-D activations, else itself."""
        if self.is_const(name):
            t = self.lt(name)
            return self.add_tensor(Tensor(name, t.shape, t.dtype, t.quant, t.data))
        ir = self.act(name)
        if name in self.flat:
            raise self.fail(node, f"'{name}' is a flattened NHWC tensor that only a fully-connected "
                            "layer may read")
        if len(self.lt(name).shape) != 4:
            return ir
        if name not in self.nchw:
            self.nchw[name] = self.move(node, ir, NCHW, tag="nchw")
        return self.nchw[name]

    def from_onnx_layout(self, node: Node, tmp: str, dst: str) -> None:
        """Give ``dst`` (4-D, IR layout) the data of ``tmp`` (4-D, ONNX layout)."""
        self.out(dst)
        t = self.tensors[tmp]
        perm = NHWC
        if _trivial(t.shape, perm):
            self.emit(node, "reshape", [tmp], [dst], {"shape": self.tensors[dst].shape}, suffix="/nhwc")
        else:
            self.emit(node, "transpose", [tmp], [dst], {"perm": perm}, suffix="/nhwc")

    def const_for(self, name: str, rank: int, *, suffix: str = "") -> str:
        """A constant operand of an elementwise op on a rank-``rank`` activation, in IR layout."""
        t = self.lt(name)
        data = np.asarray(t.data)
        quant = t.quant
        if rank == 4:
            pad = 4 - data.ndim
            data = data.reshape((1,) * pad + data.shape).transpose(NHWC)
            if quant is not None and quant.axis is not None:
                quant = QuantParams(quant.scale, quant.zero_point, quant.dtype,
                                    NHWC.index(quant.axis + pad))
        return self.add_tensor(Tensor(name + suffix, tuple(data.shape), t.dtype, quant,
                                      np.ascontiguousarray(data)))

    def operand4(self, node: Node, name: str) -> str:
        """An activation of rank < 4 broadcast against a 4-D one: align to NCHW, then to NHWC."""
        t = self.lt(name)
        src = self.act(name)
        onnx4 = (1,) * (4 - len(t.shape)) + tuple(t.shape)
        tmp = self.temp(f"{name}__4d", onnx4, self.tensors[src])
        self.emit(node, "reshape", [src], [tmp], {"shape": onnx4}, suffix="/rank4")
        return self.move(node, tmp, NHWC, tag="nhwc")

    # -- driver -------------------------------------------------------------------------------
    def run(self) -> Graph:
        for name in self.lg.inputs:
            self.act(name)
        for node in self.lg.nodes:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                self.float_op(node)
            else:
                handler(node)
        outputs = []
        for name in self.lg.outputs:
            if name in self.flat:
                raise ModelError(f"{self.view.source}: output '{name}' is a flattened tensor")
            if name not in self.tensors:
                self.act(name)
            outputs.append(name)
        self.fold_clamps()
        used = {x for n in self.nodes for x in n.inputs + n.outputs if x} | set(self.lg.inputs) | set(outputs)
        tensors = {k: v for k, v in self.tensors.items() if k in used}
        graph = Graph(name=self.view.name, tensors=tensors, nodes=self.nodes,
                      inputs=list(self.lg.inputs), outputs=outputs,
                      input_quant=dict(self.lg.input_quant), output_quant=dict(self.lg.output_quant),
                      metadata={"opset": self.view.opset})
        blocker = batch_blocker(self.lg, self.view.opset)
        if blocker is not None:
            graph.metadata["batch_blocker"] = blocker
        for name in list(self.lg.inputs) + outputs:
            t = self.lg.tensors[name]
            quant = self.lg.input_quant.get(name) if name in self.lg.inputs else self.lg.output_quant.get(name)
            dtype = "float32" if quant is not None else tensors[name].dtype
            perm = NHWC if len(t.shape) == 4 and name not in self.native else NWC if name in self.nwc else None
            graph.io[name] = Boundary(tuple(int(d) for d in t.shape), dtype, perm, quant, blocker is None)
        return graph

    def fold_clamps(self) -> None:
        """A relu/clip right after a clampable producer becomes that producer's ``clamp``."""
        outputs = set(self.lg.outputs)
        for node in list(self.nodes):
            if node.op not in ("relu", "clip") or node not in self.nodes:
                continue
            src = node.inputs[0]
            prod = next((p for p in self.nodes if src in p.outputs), None)
            users = [n for n in self.nodes if src in n.inputs]
            tin, tout = self.tensors[src], self.tensors[node.outputs[0]]
            if (prod is None or prod.op not in _CLAMPABLE or len(users) != 1 or src in outputs
                    or not same_quant(tin.quant, tout.quant) or tin.dtype != tout.dtype):
                continue
            lo = 0.0 if node.op == "relu" else node.attrs.get("min", -math.inf)
            hi = math.inf if node.op == "relu" else node.attrs.get("max", math.inf)
            clamp: tuple
            if tout.quant is not None:
                clamp = int_clamp(tout.quant, lo, hi)
            else:
                clamp = (float(lo), float(hi))
            if "clamp" in prod.attrs:
                old = prod.attrs["clamp"]
                clamp = (max(old[0], clamp[0]), min(old[1], clamp[1]))
            prod.attrs["clamp"] = clamp
            prod.outputs = [node.outputs[0]]
            prod.source_ops += [s for s in node.source_ops if s not in ("DequantizeLinear", "QuantizeLinear")]
            self.nodes.remove(node)

    # -- convolution and fully connected --------------------------------------------------------
    def _pads(self, node: Node, in_hw: tuple[int, int], kernel: tuple[int, int],
              stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
        a = node.attrs
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for size, k, s, d in zip(in_hw, kernel, stride, dilation):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads.append((small, big) if auto == "SAME_UPPER" else (big, small))
            return pads[0][0], pads[0][1], pads[1][0], pads[1][1]
        if auto == "VALID":
            return 0, 0, 0, 0
        if auto != "NOTSET":
            raise self.fail(node, f"auto_pad='{auto}' is not supported (use NOTSET, SAME_UPPER, "
                            "SAME_LOWER or VALID)")
        p = list(a.get("pads", [0, 0, 0, 0]))
        if len(p) != 4:
            raise self.fail(node, f"pads={p} is not 2-D; only 2-D convolution/pooling is supported")
        return p[0], p[2], p[1], p[3]          # ONNX (t, l, b, r) -> IR (t, b, l, r)

    def _window(self, node: Node, x: str, kernel) -> tuple:
        a = node.attrs
        stride = tuple(a.get("strides", [1, 1]))
        dilation = tuple(a.get("dilations", [1, 1]))
        shape = self.lt(x).shape
        return stride, dilation, self._pads(node, (shape[2], shape[3]), tuple(kernel), stride, dilation)

    # -- rank 3 (Conv1d, 1-D pools): a one-row image ------------------------------------------------
    def _row_image(self, node: Node, x: str) -> str:
        """Logical 4-D name for rank-3 NCW ``x`` seen as (N, C, 1, W); its IR tensor is (N, 1, W, C)
        (already there when a 1-D layer produced ``x``; else a reshape and a transpose of it)."""
        name = f"{x}__row"
        if name in self.tensors:
            return name
        t = self.lt(x)
        n, c, w = t.shape
        self.lg.tensors[name] = Tensor(name, (n, c, 1, w), t.dtype, t.quant)
        src = self.act(x)
        if x in self.nwc:             # already (N, W, C): the image is the same bytes
            self.emit(node, "reshape", [src], [self.out(name)], {"shape": (n, 1, w, c)}, suffix="/row")
            return name
        tmp = self.temp(f"{x}__nc1w", (n, c, 1, w), self.tensors[src])
        self.emit(node, "reshape", [src], [tmp], {"shape": (n, c, 1, w)}, suffix="/row")
        self.from_onnx_layout(node, tmp, name)
        return name

    def _as_rows(self, node: Node) -> Node | None:
        """A rank-3 Conv/pool node rewritten on one-row images (None for other ranks)."""
        x, y = node.inputs[0], node.outputs[0]
        if len(self.lt(x).shape) != 3:
            return None
        a = dict(node.attrs)
        for key in ("kernel_shape", "strides", "dilations"):
            if key in a:
                a[key] = [1, *a[key]]
        if "pads" in a:
            a["pads"] = [0, a["pads"][0], 0, a["pads"][1]]
        inputs = [self._row_image(node, x), *node.inputs[1:]]
        if node.op == "Conv":
            w = self.lt(node.inputs[1])
            if w.data is not None:
                name = f"{w.name}__row"
                data = np.asarray(w.data)
                self.lg.tensors[name] = Tensor(name, (*data.shape[:2], 1, data.shape[2]), w.dtype, w.quant,
                                               data.reshape(*data.shape[:2], 1, data.shape[2]))
                inputs[1] = name
        t = self.lt(y)
        n, c, w_out = t.shape
        image = f"{y}__row"
        self.lg.tensors[image] = Tensor(image, (n, c, 1, w_out), t.dtype, t.quant)
        self.rows[y] = (image, node)
        return Node(node.name, node.op, inputs, [image], a, node.source_ops)

    def op_Conv(self, node: Node) -> None:
        rows = self._as_rows(node)
        if rows is not None:
            self.op_Conv(rows)
            return
        x, w_name = node.inputs[0], node.inputs[1]
        if len(self.lt(x).shape) != 4:
            raise self.fail(node, f"input '{x}' has rank {len(self.lt(x).shape)}: a "
                            f"{len(self.lt(x).shape) - 2}-D convolution; 1-D (NCW) and 2-D (NCHW) ones are supported")
        if not self.is_const(w_name):
            raise self.fail(node, f"weight '{w_name}' is not a constant; the NPU needs constant weights")
        w = self.lt(w_name)
        co, cig, kh, kw = np.asarray(w.data).shape
        ci = self.lt(x).shape[1]
        group = int(node.attrs.get("group", 1))
        if group < 1 or ci != cig * group or co % group:
            raise self.fail(node, f"input '{x}' has {ci} channels, but weight '{w_name}' of shape "
                            f"{tuple(np.asarray(w.data).shape)} with group={group} takes {cig * group} "
                            f"(and needs output channels divisible by the group)")
        stride, dilation, padding = self._window(node, x, (kh, kw))
        data, wq = np.asarray(w.data), w.quant
        attrs = {"stride": stride, "dilation": dilation, "padding": padding}
        if group == 1:
            op, w_ir, axis = "conv2d", data.transpose(2, 3, 1, 0), 3
        elif group == ci == co and cig == 1:
            op, w_ir, axis = "depthwise_conv2d", data[:, 0].transpose(1, 2, 0), 2
        else:
            # Grouped conv as one dense conv with a block-diagonal weight: exact, costs `group`x MACs.
            if ci % group or co % group:
                raise self.fail(node, f"group={group} does not divide channels {ci}->{co}")
            fill = np.zeros((co, 1, 1, 1), data.dtype)
            if wq is not None:
                fill = np.broadcast_to(wq.zero_point, (co,)).reshape(co, 1, 1, 1).astype(data.dtype)
            dense = np.broadcast_to(fill, (co, ci, kh, kw)).copy()
            per = co // group
            for g in range(group):
                dense[g * per:(g + 1) * per, g * cig:(g + 1) * cig] = data[g * per:(g + 1) * per]
            op, w_ir, axis = "conv2d", dense.transpose(2, 3, 1, 0), 3
            attrs["groups_expanded"] = group
        quant = None if wq is None else QuantParams(wq.scale, wq.zero_point, wq.dtype,
                                                    axis if wq.axis is not None else None)
        if wq is not None and wq.axis not in (None, 0):
            raise self.fail(node, f"weight '{w_name}' is quantised per channel along axis {wq.axis}; "
                            "only output-channel (axis 0) weight quantisation is supported")
        w_ir_name = self.add_tensor(Tensor(w_name, tuple(w_ir.shape), w.dtype, quant,
                                           np.ascontiguousarray(w_ir)))
        b_ir = self._bias(node, node.inputs[2] if len(node.inputs) > 2 else "", x, w_name, co)
        attrs.update({k: v for k, v in node.attrs.items() if k == "clamp"})
        self.emit(node, op, [self.act(x), w_ir_name, b_ir], [self.out(node.outputs[0])], attrs)

    def _bias(self, node: Node, b: str, x: str, w: str, n: int, *, wq: QuantParams | None = None,
              beta: float = 1.0) -> str:
        """Bias as ``(n,)``: float32, or int32 with scale ``s_x * s_w`` (requantised if the model
        stored it with another scale, e.g. ORT's Gemm bias carries beta in its scale)."""
        wq = wq if wq is not None else self.lt(w).quant
        xq = self.lt(x).quant
        target = None if wq is None or xq is None else (xq.scale * wq.scale).astype(np.float32)
        if not b:
            if target is None:
                return self.add_tensor(Tensor(f"{node.name}_bias", (n,), "float32", None,
                                              np.zeros(n, np.float32)))
            return self._int_bias(f"{node.name}_bias", np.zeros(n, np.int32), target)
        t = self.lt(b)
        if not t.is_constant:
            raise self.fail(node, f"bias '{b}' is not a constant; the NPU needs a constant bias")
        data = np.asarray(t.data)
        if data.ndim == 2 and data.shape[0] > 1 and not np.all(data == data[:1]):
            raise self.fail(node, f"bias '{b}' differs per row; only a per-column bias is supported")
        data = data.reshape(-1)
        if data.size not in (1, n):
            raise self.fail(node, f"bias '{b}' has {data.size} values for {n} output channels")
        scale = None if t.quant is None else np.broadcast_to(t.quant.scale, (n,))
        data = np.broadcast_to(data, (n,))
        if target is None:
            real = data if t.quant is None else (data.astype(np.int64) - t.quant.zero_point) * scale
            return self.add_tensor(Tensor(b, (n,), "float32", None,
                                          np.ascontiguousarray(np.asarray(real) * beta, np.float32)))
        if t.quant is None or scale is None:
            real = data.astype(np.float64) * beta
        elif (t.dtype == "int32" and beta == 1.0 and not np.any(t.quant.zero_point)
              and np.allclose(scale, np.broadcast_to(target, (n,)), rtol=1e-6, atol=0)):
            return self._int_bias(b, data.astype(np.int32), target)     # stored as the NPU wants it
        else:
            real = (data.astype(np.int64) - t.quant.zero_point) * scale.astype(np.float64) * beta
        q = np.rint(real / np.broadcast_to(target, (n,)).astype(np.float64))
        info = np.iinfo(np.int32)
        return self._int_bias(f"{b}__requantised", np.clip(q, info.min, info.max).astype(np.int32), target)

    def _int_bias(self, name: str, data: np.ndarray, scale: np.ndarray) -> str:
        qp = QuantParams(scale, np.zeros(scale.shape, np.int64), "int32", 0 if scale.ndim else None)
        return self.add_tensor(Tensor(name, tuple(data.shape), "int32", qp, np.ascontiguousarray(data)))

    def _fc_input(self, node: Node, x: str) -> str:
        if node.attrs.get("transA", 0):
            src = self.act(x)
            return self.move(node, src, (1, 0), tag="transA")
        return self.act(x)

    def _fc_weight(self, node: Node, x: str, b_name: str, w: np.ndarray, quant: QuantParams | None) -> str:
        """(K, N) weight; rows permuted CHW -> HWC when ``x`` is a flattened NHWC tensor."""
        if x in self.flat:
            c, h, wd = self.flat[x]
            n = w.shape[1]
            w = w.reshape(c, h, wd, n).transpose(1, 2, 0, 3).reshape(c * h * wd, n)
        t = self.lt(b_name)
        return self.add_tensor(Tensor(b_name, tuple(w.shape), t.dtype, quant, np.ascontiguousarray(w)))

    def op_Gemm(self, node: Node) -> None:
        a = node.attrs
        x, b_name = node.inputs[0], node.inputs[1]
        c_name = node.inputs[2] if len(node.inputs) > 2 else ""
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        if not self.is_const(b_name):
            self._matmul_general(node, transpose_b=bool(a.get("transB", 0)), alpha=alpha)
            if c_name:
                raise self.fail(node, "Gemm with a non-constant B and a C input is not supported")
            return
        bt = self.lt(b_name)
        w = np.asarray(bt.data)
        quant = bt.quant
        if a.get("transB", 0):
            w = w.T
            if quant is not None and quant.axis is not None:
                quant = QuantParams(quant.scale, quant.zero_point, quant.dtype, 1 - quant.axis)
        if quant is not None and quant.axis == 0:
            raise self.fail(node, f"weight '{b_name}' is quantised per input row; only per output "
                            "column is supported")
        if alpha != 1.0:
            if quant is None:
                w = (w * alpha).astype(w.dtype)
            else:
                quant = QuantParams((quant.scale * alpha).astype(np.float32), quant.zero_point,
                                    quant.dtype, quant.axis)
        n = w.shape[1]
        w_name = self._fc_weight(node, x, b_name, w, quant)
        xin = self._fc_input(node, x)
        bias = self._bias(node, c_name, x, b_name, n, wq=quant, beta=beta)
        attrs = {k: v for k, v in a.items() if k == "clamp"}
        self.emit(node, "fully_connected", [xin, w_name, bias], [self.out(node.outputs[0])], attrs)

    def op_MatMul(self, node: Node) -> None:
        x, b_name = node.inputs
        xs = self.lt(x).shape
        if self.is_const(b_name) and not self.is_const(x) and np.asarray(self.lt(b_name).data).ndim == 2 and len(xs) >= 2:
            bt = self.lt(b_name)
            w, quant = np.asarray(bt.data), bt.quant
            if quant is not None and quant.axis == 0:
                raise self.fail(node, f"weight '{b_name}' is quantised per input row; only per output "
                                "column is supported")
            n = w.shape[1]
            w_name = self._fc_weight(node, x, b_name, w, quant)
            bias = self._bias(node, "", x, b_name, n, wq=quant)
            attrs = {k: v for k, v in node.attrs.items() if k == "clamp"}
            if len(xs) == 2:
                self.emit(node, "fully_connected", [self.act(x), w_name, bias],
                          [self.out(node.outputs[0])], attrs)
                return
            src = self.to_onnx_layout(node, x)
            rows = int(np.prod(xs[:-1]))
            flat = self.temp(f"{x}__rows", (rows, xs[-1]), self.tensors[src])
            self.emit(node, "reshape", [src], [flat], {"shape": (rows, xs[-1])}, suffix="/rows")
            res = self.temp(f"{node.outputs[0]}__rows", (rows, n), self.lt(node.outputs[0]))
            self.emit(node, "fully_connected", [flat, w_name, bias], [res], attrs)
            self._reshape_to(node, res, tuple(self.lt(node.outputs[0]).shape), node.outputs[0])
            return
        self._matmul_general(node)

    def _matmul_general(self, node: Node, transpose_b: bool = False, alpha: float = 1.0) -> None:
        if alpha != 1.0:
            raise self.fail(node, f"alpha={alpha} with a non-constant B is not supported")
        a = self.to_onnx_layout(node, node.inputs[0])
        b = self.to_onnx_layout(node, node.inputs[1])
        if len(self.tensors[a].shape) == 1 or len(self.tensors[b].shape) == 1:
            # ONNX promotes a vector to a (1, K) row or a (K, 1) column and drops that axis after
            for k, shape in ((0, (1, *self.tensors[a].shape)), (1, (*self.tensors[b].shape, 1))):
                src = (a, b)[k]
                if len(self.tensors[src].shape) == 1:
                    dst = self.temp(f"{src}__2d", shape, self.tensors[src])
                    self.emit(node, "reshape", [src], [dst], {"shape": shape}, suffix=f"/promote{k}")
                    a, b = (dst, b) if k == 0 else (a, dst)
            sa, sb = self.tensors[a].shape, self.tensors[b].shape
            batch = np.broadcast_shapes(tuple(sa[:-2]), tuple(sb[:-2]))
            out = self.lt(node.outputs[0])
            full = self.temp(f"{node.outputs[0]}__2d", (*batch, sa[-2], sb[-1]), out)
            self.tensors[full].quant = out.quant
            self.emit(node, "matmul", [a, b], [full], {k: v for k, v in node.attrs.items() if k == "clamp"})
            self._reshape_to(node, full, tuple(out.shape), node.outputs[0])
            return
        if transpose_b:
            bs = self.tensors[b].shape
            perm = tuple(range(len(bs) - 2)) + (len(bs) - 1, len(bs) - 2)
            b = self.move(node, b, perm, tag="transB")
        self._onnx_layout_result(node, "matmul", [a, b], {k: v for k, v in node.attrs.items() if k == "clamp"})

    def _onnx_layout_result(self, node: Node, op: str, inputs: list[str], attrs: dict) -> None:
        """Emit ``op`` on ONNX-layout inputs; bring a 4-D result back to NHWC."""
        out = node.outputs[0]
        t = self.lt(out)
        if len(t.shape) == 4:
            tmp = self.temp(f"{out}__nchw", t.shape, t)
            self.tensors[tmp].quant = t.quant
            self.emit(node, op, inputs, [tmp], attrs)
            self.from_onnx_layout(node, tmp, out)
        else:
            self.emit(node, op, inputs, [self.out(out)], attrs)

    # -- elementwise ----------------------------------------------------------------------------
    def _binary(self, node: Node, op: str, inputs: list[str]) -> None:
        out = node.outputs[0]
        rank = len(self.lt(out).shape)
        ir_inputs = []
        for i, x in enumerate(inputs):
            if self.is_const(x):
                ir_inputs.append(self.const_for(x, rank))
            elif rank == 4 and len(self.lt(x).shape) < 4:
                ir_inputs.append(self.operand4(node, x))
            elif x in self.flat:
                raise self.fail(node, f"input {i} '{x}' is a flattened NHWC tensor")
            else:
                ir_inputs.append(self.act(x))
        attrs = {k: v for k, v in node.attrs.items() if k == "clamp"}
        self.emit(node, op, ir_inputs, [self.out(out)], attrs)

    def op_Add(self, node: Node) -> None:
        self._binary(node, "add", node.inputs)

    def op_Sub(self, node: Node) -> None:
        self._binary(node, "sub", node.inputs)

    def op_Mul(self, node: Node) -> None:
        self._binary(node, "mul", node.inputs)

    def op_Min(self, node: Node) -> None:
        self._variadic(node, "min")

    def op_Max(self, node: Node) -> None:
        self._variadic(node, "max")

    def _variadic(self, node: Node, op: str) -> None:
        if len(node.inputs) != 2:
            self.float_op(node)        # one or three+ operands: the host runs the ONNX operator
            return
        self._binary(node, op, node.inputs)

    def op_Div(self, node: Node) -> None:
        x, d = node.inputs
        t = self.lt(d)
        if t.is_constant and t.quant is None and not self.is_const(x):
            recip = f"{d}__reciprocal"
            self.lg.tensors[recip] = Tensor(recip, t.shape, "float32", None,
                                            (1.0 / np.asarray(t.data, np.float64)).astype(np.float32))
            self._binary(node, "mul", [x, recip])
        else:
            self.float_op(node)

    def _unary(self, node: Node, op: str, attrs: dict) -> None:
        x = node.inputs[0]
        src = self.act(x)
        out = node.outputs[0]
        if x in self.flat:
            self.flat[out] = self.flat[x]
            t = self.lt(out)
            self.tensors[out] = Tensor(out, self.tensors[src].shape, t.dtype, t.quant)
        else:
            self.out(out)
        attrs.update({k: v for k, v in node.attrs.items() if k == "clamp"})
        self.emit(node, op, [src], [out], attrs)

    def op_Relu(self, node: Node) -> None:
        self._unary(node, "relu", {})

    def op_Sigmoid(self, node: Node) -> None:
        self._unary(node, "sigmoid", {})

    def op_Tanh(self, node: Node) -> None:
        self._unary(node, "tanh", {})

    def op_HardSwish(self, node: Node) -> None:
        self._unary(node, "hardswish", {})

    def op_Rescale(self, node: Node) -> None:
        self._unary(node, "rescale", {})

    def op_HardSigmoid(self, node: Node) -> None:
        self._unary(node, "hardsigmoid", {"alpha": float(node.attrs.get("alpha", 0.2)),
                                          "beta": float(node.attrs.get("beta", 0.5))})

    def op_LeakyRelu(self, node: Node) -> None:
        self._unary(node, "leaky_relu", {"alpha": float(node.attrs.get("alpha", 0.01))})

    def op_Gelu(self, node: Node) -> None:
        if node.attrs.get("approximate", "none") != "none":
            self.float_op(node)
        else:
            self._unary(node, "gelu", {})

    def op_Clip(self, node: Node) -> None:
        bounds = []
        for i, key in ((1, "min"), (2, "max")):
            name = node.inputs[i] if len(node.inputs) > i else ""
            if name:
                if not self.is_const(name):
                    raise self.fail(node, f"{key} '{name}' is not a constant")
                bounds.append(float(np.asarray(self.lt(name).data).reshape(())))
            else:
                bounds.append(float(node.attrs.get(key, -math.inf if key == "min" else math.inf)))
        node.inputs = node.inputs[:1]
        self._unary(node, "clip", {"min": bounds[0], "max": bounds[1]})

    def op_BatchNormalization(self, node: Node) -> None:
        x = node.inputs[0]
        if self.lt(x).quant is not None:
            raise self.fail(node, "a BatchNormalization between quantised tensors cannot be imported; "
                            "fold BatchNorm into the preceding Conv before quantising")
        if len([o for o in node.outputs if o]) > 1:
            raise self.fail(node, "training-mode BatchNormalization; export in eval() mode")
        if not all(self.is_const(p) for p in node.inputs[1:5]):
            raise self.fail(node, "BatchNormalization parameters must be constants")
        scale, bias, mean, var = (np.asarray(self.lt(p).data, np.float64) for p in node.inputs[1:5])
        eps = float(node.attrs.get("epsilon", 1e-5))
        k = scale / np.sqrt(var + eps)
        rank = len(self.lt(x).shape)
        shape = (1, -1) + (1,) * (rank - 2)
        for tag, arr in (("scale", k), ("shift", bias - mean * k)):
            name = f"{node.name}__bn_{tag}"
            self.lg.tensors[name] = Tensor(name, tuple(np.reshape(arr, shape).shape), "float32", None,
                                           np.reshape(arr, shape).astype(np.float32))
        out = node.outputs[0]
        mid_logical = f"{out}__bn_scaled"
        self.lg.tensors[mid_logical] = Tensor(mid_logical, self.lt(out).shape, "float32")
        first = Node(node.name, "Mul", [x, f"{node.name}__bn_scale"], [mid_logical], {}, node.source_ops)
        self._binary(first, "mul", first.inputs)
        second = Node(node.name + "/shift", "Add", [mid_logical, f"{node.name}__bn_shift"], [out],
                      {k: v for k, v in node.attrs.items() if k == "clamp"}, node.source_ops)
        self._binary(second, "add", second.inputs)

    # -- pooling ------------------------------------------------------------------------------------
    def _pool(self, node: Node, op: str) -> None:
        rows = self._as_rows(node)
        if rows is not None:
            self._pool(rows, op)
            return
        x = node.inputs[0]
        a = node.attrs
        if len(self.lt(x).shape) != 4:
            raise self.fail(node, f"{len(self.lt(x).shape) - 2}-D pooling is not supported (1-D and 2-D are)")
        if len([o for o in node.outputs if o]) > 1:
            raise self.fail(node, "the Indices output of MaxPool is not supported")
        if any(d != 1 for d in a.get("dilations", [1, 1])) or a.get("storage_order", 0):
            self.float_op(node)          # dilated pooling: the host runs the ONNX operator
            return
        kernel = tuple(a["kernel_shape"])
        stride, _, padding = self._window(node, x, kernel)
        if a.get("ceil_mode", 0):
            in_shape = self.lt(x).shape
            out_shape = self.lt(node.outputs[0]).shape
            top, bottom, left, right = padding
            extra_h = (out_shape[2] - 1) * stride[0] + kernel[0] - (in_shape[2] + top + bottom)
            extra_w = (out_shape[3] - 1) * stride[1] + kernel[1] - (in_shape[3] + left + right)
            if (extra_h > 0 or extra_w > 0) and op == "avg_pool":
                self.float_op(node)      # a partial last window averages fewer values: the host
                return
            padding = (top, bottom + max(extra_h, 0), left, right + max(extra_w, 0))
        attrs = {"kernel": kernel, "stride": stride, "padding": padding}
        if op == "avg_pool":
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        attrs.update({k: v for k, v in a.items() if k == "clamp"})
        self.emit(node, op, [self.act(x)], [self.out(node.outputs[0])], attrs)

    def op_MaxPool(self, node: Node) -> None:
        self._pool(node, "max_pool")

    def op_AveragePool(self, node: Node) -> None:
        self._pool(node, "avg_pool")

    def op_GlobalAveragePool(self, node: Node) -> None:
        x, y = node.inputs[0], node.outputs[0]
        rank = len(self.lt(x).shape)
        attrs = {k: v for k, v in node.attrs.items() if k == "clamp"}
        if rank == 3:
            t = self.lt(y)
            image = f"{y}__row"
            self.lg.tensors[image] = Tensor(image, (t.shape[0], t.shape[1], 1, 1), t.dtype, t.quant)
            self.rows[y] = (image, node)
            self.emit(node, "global_avg_pool", [self.act(self._row_image(node, x))], [self.out(image)], attrs)
            return
        if rank != 4:
            raise self.fail(node, f"GlobalAveragePool on a rank-{rank} tensor (1-D and 2-D pooling are supported)")
        self.emit(node, "global_avg_pool", [self.act(x)], [self.out(y)], attrs)

    # -- data movement ------------------------------------------------------------------------------
    def _reshape_to(self, node: Node, src: str, onnx_shape: tuple[int, ...], out: str) -> None:
        """``out`` (logical) = ``src`` (IR tensor in ONNX order) reshaped to ``onnx_shape``."""
        if len(onnx_shape) == 4:
            t = self.tensors[src]
            if _trivial(onnx_shape, NHWC):
                self.out(out)
                self.emit(node, "reshape", [src], [out], {"shape": self.tensors[out].shape})
                return
            tmp = self.temp(f"{out}__nchw", onnx_shape, t)
            self.emit(node, "reshape", [src], [tmp], {"shape": onnx_shape})
            self.from_onnx_layout(node, tmp, out)
        else:
            self.out(out)
            self.emit(node, "reshape", [src], [out], {"shape": tuple(onnx_shape)})

    def _fc_only(self, name: str) -> bool:
        users = self.users.get(name, [])
        return bool(users) and name not in self.lg.outputs and all(
            u.inputs[0] == name and (
                (u.op == "Gemm" and not u.attrs.get("transA", 0) and self.is_const(u.inputs[1]))
                or (u.op == "MatMul" and self.is_const(u.inputs[1])
                    and np.asarray(self.lt(u.inputs[1]).data).ndim == 2))
            for u in users)

    def _reshape(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        xs, os_ = tuple(self.lt(x).shape), tuple(self.lt(out).shape)
        if self.is_const(x):
            raise self.fail(node, f"reshaping the constant '{x}' should have been folded")
        if x in self.flat:
            raise self.fail(node, f"'{x}' is a flattened NHWC tensor")
        if (len(xs) == 4 and len(os_) == 2 and os_[0] == xs[0] and os_[1] == xs[1] * xs[2] * xs[3]
                and not _trivial(xs, NHWC) and self._fc_only(out)):
            src = self.act(x)
            self.out(out)
            self.flat[out] = (xs[1], xs[2], xs[3])
            self.emit(node, "reshape", [src], [out], {"shape": os_})
            return
        if len(xs) == 4:
            src = self.act(x)
            if not _trivial(xs, NHWC):
                src = self.to_onnx_layout(node, x)
            elif len(os_) == 4 and _trivial(os_, NHWC):
                self.out(out)
                self.emit(node, "reshape", [src], [out], {"shape": self.tensors[out].shape})
                return
        else:
            src = self.act(x)
        self._reshape_to(node, src, os_, out)

    op_Reshape = op_Flatten = op_Squeeze = op_Unsqueeze = op_Identity = _reshape

    def op_Transpose(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        xs = self.lt(x).shape
        perm = tuple(node.attrs.get("perm", tuple(reversed(range(len(xs))))))
        src = self.act(x)
        if len(xs) == 4:    # IR x = x.T(P_in), IR out = out.T(P_out): P = NHWC, or none if native
            if x not in self.native:
                perm = _compose(NCHW, perm)
            if out not in self.native:
                perm = _compose(perm, NHWC)
        self.out(out)
        if _trivial(self.tensors[src].shape, perm):
            self.emit(node, "reshape", [src], [out], {"shape": self.tensors[out].shape})
        else:
            self.emit(node, "transpose", [src], [out], {"perm": perm})

    def op_Concat(self, node: Node) -> None:
        out = node.outputs[0]
        rank = len(self.lt(out).shape)
        axis = int(node.attrs["axis"]) % rank
        inputs = []
        for x in node.inputs:
            if self.is_const(x):
                inputs.append(self.const_for(x, rank))
            elif x in self.flat:
                raise self.fail(node, f"'{x}' is a flattened NHWC tensor")
            else:
                inputs.append(self.act(x))
        ir_axis = NHWC.index(axis) if rank == 4 else axis
        self.emit(node, "concat", inputs, [self.out(out)], {"axis": ir_axis})

    def op_Pad(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        a = node.attrs
        mode = a.get("mode", "constant")
        if mode != "constant":
            self.float_op(node)          # edge / reflect / wrap padding: the host runs the ONNX operator
            return
        rank = len(self.lt(x).shape)
        pads = self._const_input(node, 1, "pads") if len(node.inputs) > 1 else a.get("pads")
        if pads is None:
            raise self.fail(node, "has no pads")
        pads = [int(p) for p in np.asarray(pads).reshape(-1)]
        axes = list(range(rank))
        if len(node.inputs) > 3 and node.inputs[3]:
            axes = [int(v) % rank for v in self._const_input(node, 3, "axes").reshape(-1)]
        per_axis = [(0, 0)] * rank
        for i, ax in enumerate(axes):
            per_axis[ax] = (pads[i], pads[i + len(axes)])
        if any(lo < 0 or hi < 0 for lo, hi in per_axis):
            self.float_op(node)          # negative pads crop: the host runs the ONNX operator
            return
        given = self._const_input(node, 2, "constant_value") if len(node.inputs) > 2 and node.inputs[2] \
            else np.asarray(a.get("value", 0.0), np.float32)
        value = float(np.asarray(given).reshape(()))
        xq = self.lt(x).quant
        stored: float | int = value
        if xq is not None:     # an integer constant_value pads integers as they are (no DequantizeLinear)
            stored = int(value) if np.asarray(given).dtype.kind in "iu" else int(xq.quantize(np.asarray(value, np.float32)))
        if rank == 4:
            per_axis = [per_axis[i] for i in NHWC]
        self.emit(node, "pad", [self.act(x)], [self.out(out)],
                  {"pads": tuple(per_axis), "value": stored})

    def _const_input(self, node: Node, i: int, what: str) -> np.ndarray:
        name = node.inputs[i]
        if not self.is_const(name):
            raise self.fail(node, f"{what} input '{name}' is not a constant")
        return np.asarray(self.lt(name).data)

    def op_Resize(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        a = node.attrs
        mode = a.get("mode", "nearest")
        xs, os_ = self.lt(x).shape, self.lt(out).shape
        factors = []
        if mode == "nearest" and len(xs) == 4 and xs[:2] == os_[:2]:
            for axis in (2, 3):
                factor = os_[axis] // xs[axis]
                got = _nearest_index(a, xs[axis], os_[axis])
                if os_[axis] % xs[axis] == 0 and got is not None and np.array_equal(np.arange(os_[axis]) // factor, got):
                    factors.append(factor)
        if len(factors) != 2:
            # not a pixel repeat of H and W (linear/cubic, a fractional or downscale, another
            # coordinate mode or axis): the host runs the ONNX operator
            self.float_op(node)
            return
        self.emit(node, "resize", [self.act(x)], [self.out(out)], {"scale": tuple(factors)})

    def op_Softmax(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        rank = len(self.lt(x).shape)
        default = -1 if self.view.opset >= 13 else 1
        axis = int(node.attrs.get("axis", default)) % rank
        if self.view.opset < 13 and axis != rank - 1:
            raise self.fail(node, f"opset {self.view.opset} Softmax over axis {axis} flattens trailing "
                            "axes; re-export with opset >= 13")
        if x in self.flat:
            raise self.fail(node, f"'{x}' is a flattened NHWC tensor")
        ir_axis = NHWC.index(axis) if rank == 4 else axis
        self.emit(node, "softmax", [self.act(x)], [self.out(out)], {"axis": ir_axis})

    def op_LayerNormalization(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        if len([o for o in node.outputs if o]) > 1:
            raise self.fail(node, "the Mean/InvStdDev outputs are not supported")
        xs = tuple(self.lt(x).shape)
        rank = len(xs)
        axis = int(node.attrs.get("axis", -1)) % rank
        eps = float(node.attrs.get("epsilon", 1e-5))
        params = []
        for i, tag in ((1, "scale"), (2, "bias")):
            name = node.inputs[i] if len(node.inputs) > i else ""
            if name and not self.is_const(name):
                raise self.fail(node, f"{tag} '{name}' is not a constant")
            data = (np.asarray(self.lt(name).data, np.float32) if name
                    else np.full(xs[axis:], 0.0 if i == 2 else 1.0, np.float32))
            params.append((name or f"{node.name}__{tag}", np.broadcast_to(data, xs[axis:])))
        if rank == 4 and axis <= 1:
            perm = NHWC if axis == 0 else (1, 2, 0)       # (C, H, W) -> (H, W, C)
            names = [self.add_tensor(Tensor(n + "__nhwc", tuple(d.transpose(perm).shape), "float32", None,
                                            np.ascontiguousarray(d.transpose(perm)))) for n, d in params]
            self.emit(node, "layernorm", [self.act(x), *names], [self.out(out)],
                      {"axis": axis, "epsilon": eps})
            return
        names = [self.add_tensor(Tensor(n, tuple(d.shape), "float32", None, np.ascontiguousarray(d)))
                 for n, d in params]
        src = self.to_onnx_layout(node, x)
        self._onnx_layout_result(node, "layernorm", [src, *names], {"axis": axis, "epsilon": eps})

    def op_ReduceMean(self, node: Node) -> None:
        """A mean over every spatial axis with the channels kept is a global average pool: H and W
        of a 4-D NCHW tensor (``x.mean((2, 3))``, ``AdaptiveAvgPool2d(1)``), W of a 3-D NCW one
        (``AdaptiveAvgPool1d(1)``), or the middle axes of a channels-last tensor (tf2onnx's
        ``GlobalAveragePooling1D``: ReduceMean over axis 1 of (N, T, C))."""
        x, out = node.inputs[0], node.outputs[0]
        xs = tuple(self.lt(x).shape)
        if len(node.inputs) > 1 and node.inputs[1]:
            axes = [int(a) for a in self._const_input(node, 1, "axes").reshape(-1)]
        else:
            axes = list(node.attrs.get("axes", range(len(xs))))
        axes = sorted({a % len(xs) for a in axes}) if xs else []
        t = self.lt(out)
        if len(xs) == 4 and axes == [2, 3]:
            src = self.act(x)
        elif len(xs) == 3 and axes == [2]:
            src = self.act(self._row_image(node, x))
        elif len(xs) == 3 and axes == [1] and x not in self.flat:
            src = self.act(x)             # (N, T, C) in IR order: a (N, T, 1, C) image
            image = self.temp(f"{x}__image", (xs[0], xs[1], 1, xs[2]), self.tensors[src])
            self.emit(node, "reshape", [src], [image], {"shape": (xs[0], xs[1], 1, xs[2])}, suffix="/image")
            src = image
        else:
            self.float_op(node)
            return
        channels = self.tensors[src].shape[-1]
        if len(xs) == 4 and int(node.attrs.get("keepdims", 1)):
            self.emit(node, "global_avg_pool", [src], [self.out(out)])
            return
        pooled = self.temp(f"{out}__pooled", (xs[0], 1, 1, channels), t)
        self.tensors[pooled].quant = t.quant
        self.emit(node, "global_avg_pool", [src], [pooled])
        self.emit(node, "reshape", [pooled], [self.out(out)], {"shape": tuple(t.shape)}, suffix="/squeeze")

    # -- host fallback ------------------------------------------------------------------------------
    def float_op(self, node: Node) -> None:
        """An ONNX node the NPU cannot express: run on the host with ONNX semantics (NCHW).

        Quantised operands are dequantised first and quantised results requantised after
        (``rescale`` nodes), so the host always computes on real values -- except for an op that
        only moves integers between tensors of one quantisation, which runs on the integers."""
        integers = self._moves_integers(node)
        if not integers and any(x and self.lt(x).quant is not None for x in node.inputs + node.outputs):
            self._float_op_on_reals(node)
            return
        op = node.op
        if op in _LAYOUT_FREE and len(node.inputs) == 1 and node.inputs[0] not in self.flat:
            x = self.act(node.inputs[0]) if not self.is_const(node.inputs[0]) else self.to_onnx_layout(node, node.inputs[0])
            outs = [self.out(o) if o else "" for o in node.outputs]
            self.emit(node, "float_op", [x], outs, {"onnx_op": op, "onnx_attrs": dict(node.attrs)})
            return
        attrs = {k: v for k, v in node.attrs.items() if k != "clamp"}
        consts = []      # constant inputs of types no runtime tensor has (int64 axes, shapes...)
        inputs = []
        for i, x in enumerate(node.inputs):
            if x and self.is_const(x) and self.lt(x).dtype not in _RUNTIME_DTYPES:
                data = np.asarray(self.lt(x).data)
                consts.append([i, data.dtype.name, list(data.shape), data.reshape(-1).tolist()])
                inputs.append("")
            else:
                inputs.append(self.to_onnx_layout(node, x) if x else "")

        outs = []
        fix = []
        for o in node.outputs:
            if not o:
                outs.append("")
                continue
            t = self.lt(o)
            if len(t.shape) == 4:
                tmp = self.temp(f"{o}__nchw", t.shape, t)
                outs.append(tmp)
                fix.append((tmp, o))
            else:
                outs.append(self.out(o))
        empty = [i for i, x in enumerate(node.inputs) if not x]
        self.emit(node, "float_op", inputs, outs, {"onnx_op": op, "onnx_attrs": attrs,
                                                   **({"onnx_consts": consts} if consts else {}),
                                                   **({"onnx_empty": empty} if empty else {}),
                                                   **({"onnx_integers": True} if integers else {})})
        for tmp, o in fix:
            self.from_onnx_layout(node, tmp, o)

    def _moves_integers(self, node: Node) -> bool:
        """``node`` copies integers between activations of one quantisation (Slice, Gather, Pad,
        Expand...): the host runs the ONNX operator on the integers themselves, exactly."""
        if node.op not in _INTEGER_MOVES:
            return False
        data = [x for i, x in enumerate(node.inputs[:1] + node.outputs[:1]) if x]
        tensors = [self.lt(x) for x in data]
        if any(t.quant is None or t.is_constant for t in tensors):
            return False
        if node.op == "Pad" and len(node.inputs) > 2 and node.inputs[2] \
                and self.lt(node.inputs[2]).dtype.startswith("float"):
            return False        # a real pad value: the host pads real values
        return all(same_quant(tensors[0].quant, t.quant) and t.dtype == tensors[0].dtype for t in tensors)

    def _float_op_on_reals(self, node: Node) -> None:
        reals = []
        for x in node.inputs:
            t = self.lt(x) if x else None
            if t is None or t.quant is None:
                reals.append(x)
            elif t.data is not None:
                name = _real_name(x)
                self.lg.tensors[name] = Tensor(name, t.shape, "float32", None, dequantise(t.data, t.quant))
                reals.append(name)
            else:
                name = _real_name(x)
                if name not in self.tensors:
                    self.lg.tensors[name] = Tensor(name, t.shape, "float32")
                    self._unary(Node(node.name + "/dequantize", "Rescale", [x], [name], {}, []), "rescale", {})
                reals.append(name)
        outs = []
        requant = []
        for o in node.outputs:
            t = self.lt(o) if o else None
            if t is None or t.quant is None:
                outs.append(o)
                continue
            name = _real_name(o)
            self.lg.tensors[name] = Tensor(name, t.shape, "float32")
            outs.append(name)
            requant.append((name, o))
        self.float_op(Node(node.name, node.op, reals, outs, dict(node.attrs), node.source_ops))
        for name, o in requant:
            self._unary(Node(node.name + "/quantize", "Rescale", [name], [o], {}, []), "rescale", {})


def _reads_rows(node: Node, x: str) -> bool:
    """``node`` reads rank-3 ``x`` as a one-row image (a 1-D convolution, pool or global mean)."""
    if node.inputs[0] != x or x in node.inputs[1:]:
        return False
    if node.op in ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool"):
        return True
    return node.op == "ReduceMean" and node.attrs.get("axes") in ([2], [-1])


def _real_name(base: str) -> str:
    return f"{base}__real"


def _nearest_index(attrs: dict, size_in: int, size_out: int) -> np.ndarray | None:
    """ONNX Resize(nearest) source index per output pixel, or None for modes not handled."""
    mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    scale = size_out / size_in
    x = np.arange(size_out, dtype=np.float64)
    if mode in ("half_pixel", "pytorch_half_pixel"):
        orig = (x + 0.5) / scale - 0.5 if (mode == "half_pixel" or size_out > 1) else np.zeros_like(x)
    elif mode == "asymmetric":
        orig = x / scale
    elif mode == "align_corners":
        orig = x * (size_in - 1) / (size_out - 1) if size_out > 1 else np.zeros_like(x)
    elif mode == "tf_half_pixel_for_nn":
        orig = (x + 0.5) / scale
    else:
        return None
    rounding = attrs.get("nearest_mode", "round_prefer_floor")
    if rounding == "round_prefer_floor":
        idx = np.ceil(orig - 0.5)
    elif rounding == "round_prefer_ceil":
        idx = np.floor(orig + 0.5)
    elif rounding == "floor":
        idx = np.floor(orig)
    elif rounding == "ceil":
        idx = np.ceil(orig)
    else:
        return None
    return np.clip(idx, 0, size_in - 1).astype(np.int64)


def lower(lg: Logical, view: OnnxView) -> Graph:
    return _Lowerer(lg, view).run()
