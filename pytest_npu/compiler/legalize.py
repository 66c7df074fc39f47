"""Legalise: turn each IR node into one NPU step (instruction kind + integer parameters) or a host call.

Every decision records *why* (the reason string ends up in ``CompiledModel.unsupported()`` and the
inspect table), Vela style: one predicate per rule, the failing rule is the report text.
Requantisation parameters are derived here from the tensors' quant params, so later passes only
move bytes around and never touch scales.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CompileError
from ..ir.graph import Graph, Node, QuantParams, Tensor
from ..npu.isa import Requant, Softmax, dtype_range
from ..npu.requant import SHIFT_RANGE
from ..targets.model import Target
from . import tflite_tables

# IR ops the NPU can run and the target operation each needs.
_OPERATION_FOR = {
    "conv2d": "conv2d", "depthwise_conv2d": "depthwise_conv2d", "fully_connected": "fully_connected",
    "matmul": "matmul", "max_pool": "max_pool", "avg_pool": "avg_pool", "global_avg_pool": "avg_pool",
    "add": "add", "sub": "sub", "mul": "mul", "min": "min", "max": "max", "resize": "resize",
    "sigmoid": "lut", "tanh": "lut", "hardswish": "lut", "hardsigmoid": "lut", "gelu": "lut",
    "leaky_relu": "lut", "relu": "rescale", "clip": "rescale", "rescale": "rescale", "concat": "rescale",
    "transpose": "dma", "softmax": Softmax.STEPS, "pad": "rescale",
}
ALIAS_OPS = frozenset({"reshape"})
_RAW_MOVES = frozenset({"reshape", "transpose", "concat", "pad"})   # exact on integers with no scale
ADD_LEFT_SHIFT = 20      # TFLite's quantised int8 add: inputs pre-shifted by 20 bits before rescaling


def _whole_window_stride(kernel, stride, padding, shape) -> tuple[int, int]:
    """A window that covers the whole (padded) input has one output position per axis, so its
    stride never applies: lower it to 1 so a global pool written as AveragePool(k=8, s=8) is not
    refused by a target's max_stride."""
    h, w, _ = fmap_shape(shape)
    top, bottom, left, right = padding
    return (1 if h + top + bottom == kernel[0] else stride[0],
            1 if w + left + right == kernel[1] else stride[1])


@dataclass
class Step:
    """One layer after legalisation: what runs, where, with which integer parameters.

    ``inputs`` are the activation tensors it reads (constants are in ``consts``); ``params`` holds
    the instruction fields (stride, padding, zero points, Requant, table...). ``kind`` is the
    instruction family the tiler and code generator dispatch on.
    """

    name: str
    op: str
    kind: str
    inputs: list[str]
    outputs: list[str]
    where: str = "npu"
    reason: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    host_inputs: list[str] = field(default_factory=list)   # host steps: every operand (incl. constants)
    hint: str = ""                    # host steps: what would move the layer to the NPU

    @property
    def output(self) -> str:
        return self.outputs[0]


@dataclass
class Legalized:
    steps: list[Step]
    aliases: dict[str, str]          # tensor -> tensor whose bytes it reuses (reshape / flatten)
    alias_steps: list[Step]          # free layers, reported with zero cost


class _Refuse(Exception):
    """Internal: the NPU cannot run this node; the message is the user-facing reason."""


def sample_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """IR shapes carry a leading batch of 1; programs are per inference, so it is dropped."""
    shape = tuple(int(d) for d in shape)
    return shape[1:] if len(shape) >= 2 and shape[0] == 1 else shape


def fmap_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Canonical (rows, width, channels) view of an activation: tiling works on rows x channels."""
    s = sample_shape(shape)
    if len(s) == 3:
        return s  # type: ignore[return-value]
    if len(s) == 2:
        return (s[0], 1, s[1])
    if len(s) == 1:
        return (1, 1, s[0])
    if len(s) == 0:
        return (1, 1, 1)
    rows = int(np.prod(s[:-2]))
    return (rows, s[-2], s[-1])


def quant_dict(q: QuantParams | None) -> dict[str, Any] | None:
    """Quant params as the plain dict npu.host expects (JSON-friendly, saved in programs)."""
    if q is None:
        return None
    return {"scale": np.atleast_1d(q.scale).astype(float).tolist(),
            "zero_point": np.atleast_1d(q.zero_point).astype(int).tolist(),
            "dtype": q.dtype, "axis": q.axis}


def _scalar(values: np.ndarray) -> float:
    return float(np.asarray(values).reshape(-1)[0])


def _per_tensor(q: QuantParams, what: str) -> tuple[float, int]:
    if np.asarray(q.scale).size != 1:
        raise _Refuse(f"{what} is quantised per channel; the NPU needs a per-tensor scale")
    return _scalar(q.scale), int(_scalar(q.zero_point))


def _clamp(node: Node, out_q: QuantParams) -> tuple[int, int]:
    """Fused activation clamp intersected with the output dtype's range."""
    lo, hi = dtype_range(out_q.dtype)
    clamp = node.attrs.get("clamp")
    if clamp is not None:
        lo, hi = max(lo, int(clamp[0])), min(hi, int(clamp[1]))
    return lo, hi


def _requant(acc_scale, out_q: QuantParams, lo: int, hi: int, bits: int, where: str = "", rule: str = "",
             tflite: bool = False) -> Requant:
    from ..npu import requant as rq
    out_scale, out_zp = _per_tensor(out_q, "the output")
    req = rq.requant_for(np.asarray(acc_scale, np.float64), out_scale, out_zp, out_q.dtype,
                         clamp=(lo, hi), bits=bits, where=where, rule=rule, tflite=tflite)
    return req


def _multiplier(real: float, bits: int, where: str = "") -> tuple[int, int]:
    from ..npu import requant as rq
    m, s = rq.quantize_multiplier(float(real), bits=bits, where=where)
    return int(m), int(s)


def _f32_ratio(numerator, denominator) -> float:
    """A scale ratio as TFLite computes it where its Prepare divides floats (MUL, RELU)."""
    return float(np.float32(np.float32(numerator) / np.float32(denominator)))


def _unit_scale(q: QuantParams) -> QuantParams:
    """``q`` with scale 1, for a requant given the whole ratio already."""
    return dataclasses.replace(q, scale=np.array(1.0, np.float32))


def _where(node: Node) -> str:
    """How requantisation errors name the layer at fault."""
    return f"layer '{node.name}' ({node.op})"


class Legalizer:
    """Walks the IR graph once; each ``_lower_<op>`` returns a Step or raises _Refuse(reason)."""

    def __init__(self, graph: Graph, target: Target, fallback: str):
        self.graph = graph
        self.target = target
        self.fallback = fallback
        # rounding = "tflite": every layer computes what LiteRT's reference kernel for it computes
        self.tflite = target.rounding == "tflite"

    # ---- helpers -------------------------------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        try:
            return self.graph.tensors[name]
        except KeyError:
            raise CompileError(f"{self.graph.source or self.graph.name}: tensor '{name}' is used but "
                               "not declared in the IR graph; re-import the model with ir.from_onnx") from None

    def quant(self, name: str, node: Node) -> QuantParams:
        t = self.tensor(name)
        if t.quant is None or t.dtype == "float32":
            raise _Refuse(f"tensor '{name}' is float (not quantised)" if t.dtype == "float32"
                          else f"{t.dtype} tensor '{name}' has no quantisation parameters (not quantised)")
        return t.quant

    def _check_dtype(self, name: str, node: Node) -> str:
        q = self.quant(name, node)
        if q.dtype not in self.target.dtypes:
            hint = "; quantise activations as int8 (activation_type=QuantType.QInt8)" if q.dtype == "uint8" else ""
            raise _Refuse(f"{q.dtype} activations ('{name}') are not in {self.target.name}'s dtypes "
                          f"{sorted(self.target.dtypes)}{hint}")
        return q.dtype

    def _bits(self, dtype: str) -> int:
        return 16 if dtype == "int16" else 32

    def _requant_bounded(self, node: Node, acc_scale, out_q: QuantParams, lo: int, hi: int, dtype: str,
                         acc_bound: int, tflite_bits: int | None = None) -> Requant:
        """int16 activations need apply_scale_16 (15-bit multipliers, 48-bit accumulators) only
        when the accumulator can leave int32; otherwise the 31-bit multiplier is 2**16 times more
        precise. TOSA's apply_scale_32 also needs |acc| < 2**(shift-1), checked on the result.
        Under TFLite semantics the layer's kernel decides: ``tflite_bits`` 16 is TFLite's int64
        accumulator path (a 15-bit multiplier rounded from the 31-bit one), 32 its int32 path."""
        where = _where(node)
        if self.tflite and tflite_bits is not None:
            return _requant(acc_scale, out_q, lo, hi, tflite_bits, where, tflite=True)
        if dtype == "int16" and acc_bound < 2 ** 31:
            req = _requant(acc_scale, out_q, lo, hi, 32, where)
            if acc_bound < 2 ** (min(min(req.shift), 32) - 1):
                return req
        return _requant(acc_scale, out_q, lo, hi, self._bits(dtype), where)

    @staticmethod
    def _input_span(dtype: str, zp: int) -> int:
        lo, hi = dtype_range(dtype)
        return max(abs(lo - zp), abs(hi - zp))

    def _one_image(self, name: str) -> None:
        """Image instructions take one (H, W, C) feature map per inference."""
        shape = tuple(self.tensor(name).shape)
        if len(shape) != 4 or shape[0] != 1:
            raise _Refuse(f"input '{name}' of shape {shape} is not one NHWC image (a leading axis of "
                          f"{shape[0] if shape else 0} is part of the data, not a batch)")

    def _check_limits(self, node: Node, kernel=(1, 1), stride=(1, 1), dilation=(1, 1),
                      padding=(0, 0, 0, 0), channels: int = 0) -> None:
        lim = self.target.limits
        checks = [("kernel", max(kernel), lim.max_kernel), ("stride", max(stride), lim.max_stride),
                  ("dilation", max(dilation), lim.max_dilation),
                  ("padding", max(padding) if padding else 0, lim.max_padding),
                  ("channels", channels, lim.max_channels)]
        for what, value, limit in checks:
            if value > limit:
                raise _Refuse(f"{what} {value} exceeds {self.target.name}'s max_{what} {limit}")

    # ---- driver --------------------------------------------------------------------------------
    def run(self) -> Legalized:
        if self.graph.tensors and all(t.dtype == "float32" for t in self.graph.tensors.values()):
            raise CompileError(
                f"{self.graph.source or self.graph.name}: every tensor is float32, so nothing could run "
                "on the NPU (float parts of a model run on the host). Quantise the model first "
                "(pytest_npu.compress.quantize, onnxruntime.quantization.quantize_static or quantize_dynamic)")
        steps: list[Step] = []
        aliases: dict[str, str] = {}
        alias_steps: list[Step] = []
        self.pad_overrides: dict[str, tuple[str, tuple[int, int, int, int]]] = {}
        self.folded_pads = self._foldable_pads()
        islands, in_island = self._float_islands()
        for node in self.graph.nodes:
            if node.name in in_island:
                alias_steps.append(Step(node.name, node.op, "alias", [n for n in node.inputs if n],
                                        list(node.outputs), where="host",
                                        reason=f"part of host layer {in_island[node.name]}"))
                continue
            if node.name in islands:
                steps.append(islands[node.name])
                continue
            if node.name in self.folded_pads:
                consumer = self.folded_pads[node.name]
                alias_steps.append(Step(node.name, node.op, "alias", [node.inputs[0]], list(node.outputs),
                                        reason=f"folded into {consumer}'s padding"))
                continue
            if node.op in ALIAS_OPS and self._is_free_reshape(node):
                aliases[node.outputs[0]] = node.inputs[0]
                alias_steps.append(Step(node.name, node.op, "alias", [node.inputs[0]], list(node.outputs),
                                        reason="free: same bytes in row-major order"))
                continue
            try:
                unquantised = self._unquantised(node)
                if unquantised:
                    raise _Refuse(unquantised)
                operation = _OPERATION_FOR.get(node.op)
                if operation is None and node.op == "float_op":
                    raise _Refuse(f"{node.attrs['onnx_op']} has no NPU form (run by onnxruntime on the host)")
                if operation is None:
                    raise _Refuse(f"{node.op} is not in {self.target.name}'s instruction set "
                                  "(no NPU instruction computes it)")
                needed = (operation,) if isinstance(operation, str) else operation
                missing = [op for op in needed if not self.target.supports(op)]
                if missing:
                    needs = "" if missing == [node.op] else f" needs {'/'.join(missing)}, which"
                    are = "is" if len(missing) == 1 else "are"
                    raise _Refuse(f"{node.op}{needs} {are} not in {self.target.name}'s instruction set")
                lowered = getattr(self, f"_lower_{node.op}")(node)
            except _Refuse as refusal:
                if self.fallback != "host":
                    raise CompileError(
                        f"layer '{node.name}' ({node.op}): {refusal} and {self.target.name} has "
                        "fallback = \"error\"; pass fallback=\"host\" or change the model") from None
                lowered = self._host_step(node, str(refusal))
                lowered.hint = move_hint(node, str(refusal), self.target)
            steps.extend(lowered if isinstance(lowered, list) else [lowered])
        steps = self._write_concat_slices_in_place(steps, alias_steps)
        return Legalized(steps, aliases, alias_steps)

    def _write_concat_slices_in_place(self, steps: list[Step], alias_steps: list[Step]) -> list[Step]:
        """A concat operand whose NPU producer feeds only the concat, with the concat's quant
        params, is written by that producer straight into its channel slice (strided ofm): the
        copy step disappears. Other operands keep their rescale-into-slice step."""
        by_output = {s.output: s for s in steps if s.where == "npu" and s.outputs}
        kept: list[Step] = []
        folded: dict[str, list[str]] = {}
        for step in steps:
            p = step.params
            producer = by_output.get(step.inputs[0]) if "out_c0" in p else None
            if (producer is not None and "out_c0" not in producer.params
                    and producer.kind in ("conv2d", "depthwise_conv2d", "pool", "elementwise", "lut",
                                          "rescale", "resize")
                    and len(self.graph.consumers(step.inputs[0])) == 1
                    and step.inputs[0] not in self.graph.outputs
                    and self._same_quant(step.inputs[0], step.output)):
                producer.outputs = [step.output]
                producer.params = {**producer.params, "out_c0": p["out_c0"], "channels": p["channels"]}
                folded.setdefault(step.name, []).append(producer.name)
                continue
            kept.append(step)
        for concat, producers in folded.items():
            node = next(n for n in self.graph.nodes if n.name == concat)
            if any(s.name == concat for s in kept):
                continue   # some operands still need copies: the concat stays a (smaller) layer
            alias_steps.append(Step(concat, node.op, "alias", list(node.inputs), list(node.outputs),
                                    reason=f"free: {', '.join(producers)} write their channel slices"))
        return kept

    def _same_quant(self, a: str, b: str) -> bool:
        qa, qb = self.tensor(a).quant, self.tensor(b).quant
        return (qa is not None and qb is not None and qa.dtype == qb.dtype
                and np.array_equal(np.atleast_1d(qa.scale), np.atleast_1d(qb.scale))
                and np.array_equal(np.atleast_1d(qa.zero_point), np.atleast_1d(qb.zero_point)))

    def _foldable_pads(self) -> dict[str, str]:
        """Spatial zero-point pads feeding only a conv: the conv's own padding does the job."""
        folded = {}
        for node in self.graph.nodes:
            if node.op != "pad" or not self._is_free_reshape(node):
                continue
            pads = [tuple(int(v) for v in p) for p in node.attrs.get("pads", ())]
            consumers = self.graph.consumers(node.outputs[0])
            if (len(pads) != 4 or pads[0] != (0, 0) or pads[3] != (0, 0) or len(consumers) != 1
                    or consumers[0].op not in ("conv2d", "depthwise_conv2d")
                    or node.outputs[0] in self.graph.outputs):
                continue
            in_q = self.tensor(node.inputs[0]).quant
            zp = int(_scalar(in_q.zero_point)) if in_q is not None else 0
            if in_q is None or int(node.attrs.get("value", zp)) != zp:
                continue
            conv = consumers[0]
            t, b, left, r = conv.attrs.get("padding", (0, 0, 0, 0))
            padding = (t + pads[1][0], b + pads[1][1], left + pads[2][0], r + pads[2][1])
            if max(padding) > self.target.limits.max_padding:
                continue
            self.pad_overrides[conv.name] = (node.inputs[0], padding)   # the graph stays untouched
            folded[node.name] = conv.name
        return folded

    def _float_islands(self) -> tuple[dict[str, Step], dict[str, str]]:
        """``int -> rescale(dequantise) [-> transpose] -> float_op [-> transpose] -> rescale(quantise)
        -> int`` becomes one host step on the integer tensors: the host dequantises and quantises
        itself, and the layout transposes become permuted-stride views of its DRAM operands, so no
        float tensor ever exists in the program."""
        islands: dict[str, Step] = {}
        in_island: dict[str, str] = {}
        for node in self.graph.nodes:
            if node.op != "float_op":
                continue
            found = self._island(node)
            if found is None:
                continue
            step, members = found
            islands[node.name] = step
            in_island.update({m: node.name for m in members})
        return islands, in_island

    def _onnx_shapes(self, inputs: list[str], outputs: list[str]) -> dict[str, list[list[int]]]:
        """The ONNX operator's operand shapes for one inference (the host runs it per sample)."""
        return {"in": [[int(d) for d in self.tensor(n).shape] for n in inputs if n],
                "out": [[int(d) for d in self.tensor(n).shape] for n in outputs if n]}

    def _only_consumer(self, tensor: str) -> Node | None:
        consumers = self.graph.consumers(tensor)
        return consumers[0] if len(consumers) == 1 and tensor not in self.graph.outputs else None

    def _island(self, node: Node) -> tuple[Step, list[str]] | None:
        def is_float(name: str) -> bool:
            return self.tensor(name).dtype == "float32" and not self.tensor(name).is_constant

        def sample_perm(perm) -> tuple[int, ...]:
            perm = [int(p) for p in perm]
            return tuple(p - 1 for p in perm[1:]) if perm and perm[0] == 0 else tuple(perm)

        members: list[str] = []
        ins: list[str] = []
        in_views: list[list[int] | None] = []
        for x in node.inputs:
            if not x or not is_float(x) or self._only_consumer(x) is not node:
                return None
            producer = self.graph.producer(x)
            perm = None
            if producer is not None and producer.op == "transpose":
                perm = sample_perm(producer.attrs["perm"])
                members.append(producer.name)
                x = producer.inputs[0]
                if self._only_consumer(x) is not producer:
                    return None
                producer = self.graph.producer(x)
            if producer is None or producer.op != "rescale" or is_float(producer.inputs[0]) \
                    or self.tensor(producer.inputs[0]).quant is None:
                return None
            members.append(producer.name)
            ins.append(producer.inputs[0])
            in_views.append(list(perm) if perm else None)
        outs: list[str] = []
        out_views: list[list[int] | None] = []
        for o in node.outputs:
            consumer = self._only_consumer(o) if o and is_float(o) else None
            perm = None
            if consumer is not None and consumer.op == "transpose":
                inverse = np.argsort(sample_perm(consumer.attrs["perm"]))
                perm = tuple(int(p) for p in inverse)
                members.append(consumer.name)
                consumer = self._only_consumer(consumer.outputs[0])
            if consumer is None or consumer.op != "rescale" or is_float(consumer.outputs[0]):
                return None
            members.append(consumer.name)
            outs.append(consumer.outputs[0])
            out_views.append(list(perm) if perm else None)
        attrs: dict[str, Any] = {k: node.attrs[k] for k in ("onnx_consts", "onnx_empty", "onnx_integers")
                                 if k in node.attrs}
        attrs.update({"onnx_op": node.attrs["onnx_op"], "onnx_attrs": _jsonable(node.attrs.get("onnx_attrs", {})),
                      "in_quant": [quant_dict(self.tensor(n).quant) for n in ins],
                      "out_quant": [quant_dict(self.tensor(n).quant) for n in outs]})
        if "opset" in self.graph.metadata:
            attrs["opset"] = int(self.graph.metadata["opset"])
        attrs["onnx_shapes"] = self._onnx_shapes(node.inputs, node.outputs)
        reason = f"{node.attrs['onnx_op']} has no NPU form (run by onnxruntime on the host)"
        step = Step(node.name, "float_op", "host", ins, outs, where="host", reason=reason,
                    params={"attrs": attrs, "views": {"in": in_views, "out": out_views}}, host_inputs=ins,
                    hint=move_hint(node, reason, self.target))
        return step, members

    def _unquantised(self, node: Node) -> str:
        """Why the node must run on the host because of its tensors ("" if they are all quantised):
        a float32 tensor the quantiser left in float, or an integer tensor without fixed quant
        parameters (dynamic quantisation's uint8 activations and int32 accumulators)."""
        names = [n for n in list(node.inputs) + list(node.outputs) if n]
        if node.op in _RAW_MOVES and node.op != "pad" and all(
                self.tensor(n).quant is None and self.tensor(n).dtype == self.tensor(names[0]).dtype
                and self.tensor(n).dtype in self.target.dtypes for n in names if not self.tensor(n).is_constant):
            return ""               # integers moved as they are: no scale needed
        for name in names:
            t = self.graph.tensors.get(name) if name else None
            if t is None or t.is_constant or t.quant is not None:
                continue
            if t.dtype == "float32":
                return f"float32 tensor: not quantised ('{name}')"
            return (f"{t.dtype} tensor: not quantised ('{name}' has no fixed scale: dynamic "
                    "quantisation computes it at run time)")
        return ""

    def _is_free_reshape(self, node: Node) -> bool:
        src, dst = self.tensor(node.inputs[0]), self.tensor(node.outputs[0])
        if src.is_constant or dst.is_constant:
            return False
        if src.quant is None and dst.quant is None:     # a float (or raw integer) tensor in DRAM
            return src.dtype == dst.dtype
        if src.quant is None or dst.quant is None:
            return False
        return (src.dtype == dst.dtype
                and np.array_equal(np.atleast_1d(src.quant.scale), np.atleast_1d(dst.quant.scale))
                and np.array_equal(np.atleast_1d(src.quant.zero_point), np.atleast_1d(dst.quant.zero_point)))

    def _host_step(self, node: Node, reason: str) -> Step:
        """A host layer. Float32 tensors (and float32 constants, in the constants image) are its
        operands as they are: ``in_quant``/``out_quant`` entries of None tell the host so."""
        attrs = {k: _jsonable(v) for k, v in node.attrs.items() if k != "clamp"}
        operands = [n for n in node.inputs if n]
        if node.op == "layernorm":       # gamma/beta travel in attrs, not as operands
            inlined = [n for n in node.inputs[1:3] if n and self.tensor(n).is_constant]
            for key, name in zip(("gamma", "beta"), node.inputs[1:3]):
                if name in inlined:
                    attrs[key] = np.asarray(self.tensor(name).data, np.float32).reshape(-1).tolist()
            operands = [n for n in operands if n not in inlined]
        if node.op == "float_op":
            if "opset" in self.graph.metadata:
                attrs["opset"] = int(self.graph.metadata["opset"])
            attrs["onnx_shapes"] = self._onnx_shapes(node.inputs, node.outputs)
        if node.op != "float_op":
            # axis-like attrs keep the IR's meaning: the host sees each operand in its full IR shape
            attrs["ir_shapes"] = {"in": [[int(d) for d in self.tensor(n).shape] for n in operands],
                                  "out": [[int(d) for d in self.tensor(n).shape] for n in node.outputs]}
            self._refuse_guessed_scale(node, operands)
        q = self.tensor(node.inputs[0]).quant if node.op == "pad" else None
        if q is not None:
            # the IR stores the pad value in the input's quantised domain; the host pads real values
            attrs["value"] = float(q.dequantize(np.asarray(node.attrs.get("value", 0))).reshape(-1)[0])
        clamp = node.attrs.get("clamp")
        if clamp is not None:     # quantised output: integer bounds; float output: real bounds
            attrs["clamp"] = [None if not np.isfinite(v) else (float(v) if self.tensor(node.outputs[0]).quant
                                                               is None else int(v)) for v in clamp]
        attrs["in_quant"] = [quant_dict(self.tensor(n).quant) for n in operands]
        attrs["out_quant"] = [quant_dict(self.tensor(n).quant) for n in node.outputs]
        if node.op == "softmax" and (self.tflite or self.graph.metadata.get("format") == "tflite"):
            # the host of a TFLite model runs TFLite's kernel, whatever the NPU's rounding
            attrs.update(self._tflite_int16_softmax(node))
        params: dict[str, Any] = {"attrs": attrs}
        if node.op in ("add", "sub", "mul", "min", "max", "concat"):
            params["consts_per_sample"] = True     # a constant operand broadcasts like an activation
        return Step(node.name, node.op, "host", operands, list(node.outputs), where="host", reason=reason,
                    params=params, host_inputs=operands)

    def _tflite_int16_softmax(self, node: Node) -> dict:
        """TFLite's ``SoftmaxInt16`` parameters (its Prepare's input multiplier and shift) for an
        int16 softmax quantised as TFLite requires, else nothing. The NPU runs it as Vela does; where
        the target lacks the operations, the host runs the same integer kernel (TFLite Micro's), so
        it is exact either way. Any other quantisation stays float on the host."""
        x, out = node.inputs[0], node.outputs[0]
        in_q, out_q = self.tensor(x).quant, self.tensor(out).quant
        if in_q is None or out_q is None or in_q.dtype != "int16" or out_q.dtype != "int16" or in_q.per_channel:
            return {}
        rank = len(self.tensor(x).shape)
        if (int(node.attrs.get("axis", -1)) % rank != rank - 1 or int(np.asarray(in_q.zero_point)) != 0
                or int(np.asarray(out_q.zero_point)) != 0 or abs(float(out_q.scale) * 32768 - 1) > 1e-6):
            return {}
        beta = float(node.attrs.get("beta", 1.0))
        multiplier, shift = tflite_tables.quantize_multiplier(float(in_q.scale) * beta / (10.0 / 65535.0))
        return {"tflite_int16": [multiplier, shift]}

    def _refuse_guessed_scale(self, node: Node, operands: list[str]) -> None:
        """A host layer computes on real values: an integer operand with no scale could only be
        read by guessing one. Pure data movement is exact on raw integers; anything else is refused."""
        raw = [n for n in operands if not self.tensor(n).is_constant and self.tensor(n).quant is None
               and self.tensor(n).dtype != "float32"]
        if not raw:
            return
        moves = node.op in _RAW_MOVES and all(
            self.tensor(n).quant is None and self.tensor(n).dtype == self.tensor(raw[0]).dtype
            for n in [*operands, *node.outputs] if not self.tensor(n).is_constant)
        if not moves:
            raise CompileError(
                f"layer '{node.name}' ({node.op}): '{raw[0]}' holds {self.tensor(raw[0]).dtype} integers with no "
                "quantisation parameters, so computing on their real values would mean guessing a scale; "
                "give the tensor a DequantizeLinear (static quantisation) or keep this part in float")

    # ---- MAC ops ------------------------------------------------------------------------------
    def _conv_like(self, node: Node, depthwise: bool) -> Step:
        x, w = node.inputs[0], node.inputs[1]
        b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        padding = tuple(node.attrs.get("padding", (0, 0, 0, 0)))
        if node.name in self.pad_overrides:
            x, padding = self.pad_overrides[node.name]
        self._one_image(x)
        dtype = self._check_dtype(x, node)
        out = node.outputs[0]
        out_q = self.quant(out, node)
        if out_q.dtype != dtype:
            raise _Refuse(f"output dtype {out_q.dtype} differs from input dtype {dtype}")
        wt = self.tensor(w)
        if not wt.is_constant or wt.quant is None:
            raise _Refuse("weights are not a quantised constant")
        if wt.dtype != "int8":
            raise _Refuse(f"{wt.dtype} weights (the MAC array takes int8 weights)")
        in_scale, in_zp = _per_tensor(self.quant(x, node), "the input")
        w_zp = np.unique(np.atleast_1d(wt.quant.zero_point))
        if w_zp.size != 1:
            raise _Refuse("weight zero points differ per channel")
        stride = tuple(node.attrs.get("stride", (1, 1)))
        dilation = tuple(node.attrs.get("dilation", (1, 1)))
        weights = np.asarray(wt.data)
        kernel = weights.shape[:2]
        cout = weights.shape[-1]
        cin = weights.shape[2] if not depthwise else cout
        self._check_limits(node, kernel, stride, dilation, padding, max(cin, cout))
        bias = self._bias(b, cout)
        acc_scale = in_scale * np.broadcast_to(np.asarray(wt.quant.scale, np.float64), (cout,))
        lo, hi = _clamp(node, out_q)
        w_abs = np.abs(weights.astype(np.int64) - int(w_zp[0]))
        per_out = w_abs.reshape(-1, cout).sum(axis=0)
        bound = int((per_out * self._input_span(dtype, in_zp) + np.abs(bias.astype(np.int64))).max())
        req = self._requant_bounded(node, acc_scale, out_q, lo, hi, dtype, bound, self._tflite_mac_bits(dtype, b))
        params = dict(stride=stride, dilation=dilation, padding=padding, kernel=tuple(kernel),
                      ifm_zp=in_zp, weight_zp=int(w_zp[0]), requant=req, dtype=dtype)
        return Step(node.name, node.op, node.op, [x], [out], params=params,
                    consts={"weights": weights.astype(np.int8), "bias": bias})

    def _tflite_mac_bits(self, dtype: str, bias: str | None) -> int:
        """TFLite's int16x8 convolutions accumulate in int64 (the converter's int64 bias): a 15-bit
        multiplier; with an int32 bias, and for int8, the int32 MultiplyByQuantizedMultiplier."""
        if dtype != "int16":
            return 32
        return 32 if bias is not None and self.tensor(bias).dtype == "int32" else 16

    def _bias(self, name: str | None, cout: int) -> np.ndarray:
        if name is None:
            return np.zeros(cout, np.int32)
        data = np.asarray(self.tensor(name).data).reshape(-1)
        if np.abs(data).max(initial=0) >= 2 ** 31:
            raise _Refuse(f"bias '{name}' exceeds int32")
        return data.astype(np.int32)

    def _lower_conv2d(self, node: Node) -> Step:
        step = self._conv_like(node, depthwise=False)
        groups = int(node.attrs.get("groups_expanded", 1))
        return self._compact_groups(step, groups) if groups > 1 else step

    @staticmethod
    def _compact_groups(step: Step, groups: int) -> Step:
        """A grouped conv arrives as one dense conv with a block-diagonal weight. Keep only the
        diagonal blocks, as (KH, KW, Cin/groups, Cout) -- output channel co reads input channels
        of its group -- so code generation emits one CONV2D per group on channel slices and the
        MAC array does (and is charged for) 1/groups of the dense conv's work."""
        w, p = step.consts["weights"], step.params
        kh, kw, cin, cout = w.shape
        if cin % groups or cout % groups:
            return step
        cig, per = cin // groups, cout // groups
        group_of_in = np.arange(cin) // cig
        group_of_out = np.arange(cout) // per
        if not np.all(w[:, :, group_of_in[:, None] != group_of_out[None, :]] == p["weight_zp"]):
            return step          # not block-diagonal after all: the dense conv is the exact form
        rows = group_of_out[None, :] * cig + np.arange(cig)[:, None]          # (cig, cout) input channel
        compact = w[:, :, rows, np.arange(cout)[None, :]]
        step.consts["weights"] = np.ascontiguousarray(compact.astype(np.int8))
        step.params = {**p, "groups": groups}
        return step

    def _lower_depthwise_conv2d(self, node: Node) -> Step:
        return self._conv_like(node, depthwise=True)

    def _lower_fully_connected(self, node: Node) -> Step:
        x, w = node.inputs[0], node.inputs[1]
        b = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        dtype = self._check_dtype(x, node)
        out = node.outputs[0]
        out_q = self.quant(out, node)
        wt = self.tensor(w)
        if not wt.is_constant or wt.quant is None or wt.dtype != "int8":
            raise _Refuse("weights are not an int8 quantised constant")
        w_zp = np.unique(np.atleast_1d(wt.quant.zero_point))
        if w_zp.size != 1:
            raise _Refuse("weight zero points differ per channel")
        in_scale, in_zp = _per_tensor(self.quant(x, node), "the input")
        weights = np.asarray(wt.data)
        if weights.ndim != 2 or len(sample_shape(self.tensor(x).shape)) > 2:
            raise _Refuse(f"fully_connected on a rank-{len(self.tensor(x).shape)} input")
        n_out = weights.shape[1]
        self._check_limits(node, channels=max(weights.shape))
        acc_scale = in_scale * np.broadcast_to(np.asarray(wt.quant.scale, np.float64), (n_out,))
        lo, hi = _clamp(node, out_q)
        bias = self._bias(b, n_out)
        per_out = np.abs(weights.astype(np.int64) - int(w_zp[0])).sum(axis=0)
        bound = int((per_out * self._input_span(dtype, in_zp) + np.abs(bias.astype(np.int64))).max())
        if self.tflite:     # LiteRT's reference FULLY_CONNECTED: round(double(acc) * in * w / out)
            req = _requant(acc_scale, out_q, lo, hi, 32, _where(node), rule="float")
        else:
            req = self._requant_bounded(node, acc_scale, out_q, lo, hi, dtype, bound)
        params = dict(ifm_zp=in_zp, weight_zp=int(w_zp[0]), requant=req, dtype=dtype)
        return Step(node.name, node.op, "fully_connected", [x], [out], params=params,
                    consts={"weights": weights.astype(np.int8), "bias": bias})

    def _lower_matmul(self, node: Node) -> Step:
        a, b = node.inputs[0], node.inputs[1]
        if self.tensor(b).is_constant or self.tensor(a).is_constant:
            raise _Refuse("matmul with a constant operand (import it as fully_connected)")
        dtype = self._check_dtype(a, node)
        self._check_dtype(b, node)
        if len(sample_shape(self.tensor(a).shape)) != 2 or len(sample_shape(self.tensor(b).shape)) != 2:
            raise _Refuse("batched matmul (the NPU multiplies 2-D operands)")
        sa, za = _per_tensor(self.quant(a, node), "input a")
        sb, zb = _per_tensor(self.quant(b, node), "input b")
        out_q = self.quant(node.outputs[0], node)
        lo, hi = _clamp(node, out_q)
        req = _requant(np.array([sa * sb]), out_q, lo, hi, self._bits(dtype), _where(node))
        return Step(node.name, node.op, "matmul", [a, b], list(node.outputs),
                    params=dict(a_zp=za, b_zp=zb, requant=req, dtype=dtype))

    # ---- pooling ------------------------------------------------------------------------------
    def _lower_max_pool(self, node: Node) -> Step:
        x, out = node.inputs[0], node.outputs[0]
        self._one_image(x)
        dtype = self._check_dtype(x, node)
        s_in, z_in = _per_tensor(self.quant(x, node), "the input")
        out_q = self.quant(out, node)
        s_out, z_out = _per_tensor(out_q, "the output")
        if not math.isclose(s_in, s_out, rel_tol=1e-6) or out_q.dtype != dtype:
            raise _Refuse("max pool with different input and output scales")
        kernel = tuple(node.attrs["kernel"])
        stride = tuple(node.attrs.get("stride", kernel))
        padding = tuple(node.attrs.get("padding", (0, 0, 0, 0)))
        stride = _whole_window_stride(kernel, stride, padding, self.tensor(x).shape)
        self._check_limits(node, kernel, stride, (1, 1), padding, fmap_shape(self.tensor(x).shape)[2])
        lo, hi = _clamp(node, out_q)
        requant = None
        if z_in != z_out or (lo, hi) != dtype_range(dtype):
            # equal scales: clamp(max - ifm_zp + ofm_zp, lo, hi); the multiplier is unused
            requant = Requant((1 << 30,), (30,), z_out, lo, hi)
        return Step(node.name, node.op, "pool", [x], [out],
                    params=dict(pool="max", kernel=kernel, stride=stride, padding=padding,
                                ifm_zp=z_in, requant=requant, dtype=dtype))

    def _avg_pool(self, node: Node, kernel, stride, padding, mean: bool = False) -> Step:
        x, out = node.inputs[0], node.outputs[0]
        self._one_image(x)
        dtype = self._check_dtype(x, node)
        s_in, z_in = _per_tensor(self.quant(x, node), "the input")
        out_q = self.quant(out, node)
        stride = _whole_window_stride(kernel, stride, padding, self.tensor(x).shape)
        self._check_limits(node, kernel, stride, (1, 1), padding, fmap_shape(self.tensor(x).shape)[2])
        lo, hi = _clamp(node, out_q)
        count = int(kernel[0] * kernel[1])
        params: dict[str, Any] = dict(pool="avg", kernel=tuple(kernel), stride=tuple(stride),
                                      padding=tuple(padding), ifm_zp=z_in, dtype=dtype)
        if self.tflite and mean:
            params["requant"] = self._tflite_mean_requant(node, s_in, out_q, lo, hi, count)
        elif self.tflite and self._tflite_average(node):
            # TFLite's AVERAGE_POOL_2D divides the raw sum itself; the requant only clamps
            params["divide"] = True
            params["requant"] = Requant((0,), (SHIFT_RANGE[1],), z_in, lo, hi)
        else:
            params["requant"] = self._requant_bounded(node, np.array([s_in / count]), out_q, lo, hi, dtype,
                                                      count * self._input_span(dtype, z_in))
        return Step(node.name, node.op, "pool", [x], [out], params=params)

    def _tflite_average(self, node: Node) -> bool:
        """TFLite's own average (raw sum / in-bounds count, rounded half away) applies when input and
        output share their quantisation, as TFLite requires, and padding is not counted."""
        padded = any(node.attrs.get("padding", (0, 0, 0, 0)))
        return (self._same_quant(node.inputs[0], node.outputs[0])
                and not (padded and node.attrs.get("count_include_pad", False)))

    def _tflite_mean_requant(self, node: Node, s_in: float, out_q: QuantParams, lo: int, hi: int,
                             count: int) -> Requant:
        """TFLite's MEAN (``reference_ops::QuantizedMeanOrSum``): the in/out multiplier, with
        ``1 / count`` folded in by integer division after a left shift of up to 32 bits, applied
        by MultiplyByQuantizedMultiplier to the sum of ``x - zero_point``."""
        s_out, z_out = _per_tensor(out_q, "the output")
        multiplier, exponent = tflite_tables.quantize_multiplier(float(np.float64(s_in) / np.float64(s_out)))
        if multiplier == 0:
            return Requant((0,), (SHIFT_RANGE[1],), z_out, lo, hi)
        shift = min(count.bit_length() - 1, 32, 31 + exponent)
        multiplier, exponent = (multiplier << shift) // count, exponent - shift
        if 31 - exponent < SHIFT_RANGE[0]:
            raise CompileError(f"{_where(node)}: mean rescale {s_in / s_out!r} (input scale / output scale) is "
                               f"too large to represent; check the layer's quantisation parameters")
        return Requant((multiplier,), (31 - exponent,), z_out, lo, hi)

    def _lower_avg_pool(self, node: Node) -> Step:
        kernel = tuple(node.attrs["kernel"])
        padding = tuple(node.attrs.get("padding", (0, 0, 0, 0)))
        if any(padding) and not node.attrs.get("count_include_pad", False) \
                and not (self.tflite and self._tflite_average(node)):
            raise _Refuse("average pool excluding padding from the count (count_include_pad=0)")
        return self._avg_pool(node, kernel, tuple(node.attrs.get("stride", kernel)), padding)

    def _lower_global_avg_pool(self, node: Node) -> Step:
        h, w, _ = fmap_shape(self.tensor(node.inputs[0]).shape)
        step = self._avg_pool(node, (h, w), (1, 1), (0, 0, 0, 0), mean=True)   # checks the window vs max_kernel
        step.params["global"] = True
        return step

    # ---- element-wise -------------------------------------------------------------------------
    def _binary(self, node: Node) -> Step:
        a, b = node.inputs[0], node.inputs[1]
        out = node.outputs[0]
        ta, tb = self.tensor(a), self.tensor(b)
        out_shape = fmap_shape(self.tensor(out).shape)
        if ta.is_constant or fmap_shape(ta.shape) != out_shape:
            if node.op == "sub":
                raise _Refuse("sub whose first operand broadcasts")
            a, b, ta, tb = b, a, tb, ta
        if ta.is_constant or fmap_shape(ta.shape) != out_shape:
            raise _Refuse("element-wise op where neither operand has the output's shape")
        size_b = int(np.prod(tb.shape))
        if fmap_shape(tb.shape) == out_shape:
            b_mode = "full"
        elif size_b == 1:
            b_mode = "scalar"
        elif size_b == out_shape[2] and tuple(tb.shape)[-1] == out_shape[2]:
            b_mode = "channel"
        else:
            raise _Refuse(f"broadcast of shape {tuple(tb.shape)} (the NPU broadcasts (1,) or (C,))")
        dtype = self._check_dtype(a, node)
        if tb.quant is None or tb.quant.dtype != dtype:
            raise _Refuse("operands of different dtypes")
        out_q = self.quant(out, node)
        if out_q.dtype != dtype:
            raise _Refuse("output dtype differs from the inputs'")
        sa, za = _per_tensor(self.quant(a, node), "input a")
        sb, zb = _per_tensor(tb.quant, "input b")
        s_out, _ = _per_tensor(out_q, "the output")
        lo, hi = _clamp(node, out_q)
        bits = 32 if self.tflite else self._bits(dtype)     # TFLite's add/sub/mul rescale int32 values
        params: dict[str, Any] = dict(op=node.op, a_zp=za, b_zp=zb, b_mode=b_mode, dtype=dtype)
        where = _where(node)
        if node.op == "mul" and self.tflite:     # TFLite's Prepare: sa * sb / s_out in float32
            params["requant"] = _requant(np.array([_f32_ratio(sa * np.float32(sb), s_out)]), _unit_scale(out_q),
                                         lo, hi, bits, where)
        elif node.op == "mul":
            params["requant"] = _requant(np.array([sa * sb]), out_q, lo, hi, bits, where)
        else:
            # TFLite's add: both inputs on the scale 2 * max(sa, sb) / 2**left_shift. 20 bits for
            # int8; int16 needs fewer: the input multipliers are <= 0.5 (shift >= 31), so TOSA's
            # apply_scale_32 takes |(x - zp) << left_shift| < 2**30 -- 14 bits for a 16-bit span
            # (TFLite's int16 kernels use 15, their inputs having zero point 0)
            span = max(self._input_span(dtype, za), self._input_span(dtype, zb))
            left_shift = min(ADD_LEFT_SHIFT, 30 - span.bit_length())
            if self.tflite and dtype == "int16" and span <= 1 << 15:
                left_shift = 15
            twice_max = 2.0 * max(sa, sb)
            params["left_shift"] = left_shift
            params["a_multiplier"], params["a_shift"] = _multiplier(sa / twice_max, 32, where)
            params["b_multiplier"], params["b_shift"] = _multiplier(sb / twice_max, 32, where)
            # each rescaled input is at most half of span << left_shift (+ rounding): the sum fits int32
            bound = (span << left_shift) + 2
            params["requant"] = self._requant_bounded(node, np.array([twice_max / (1 << left_shift)]), out_q, lo,
                                                      hi, dtype, bound, tflite_bits=32)
        consts = {}
        if tb.is_constant:
            consts["b"] = np.asarray(tb.data).astype(dtype).reshape(-1)
        inputs = [a] if tb.is_constant else [a, b]
        return Step(node.name, node.op, "elementwise", inputs, [out], params=params, consts=consts)

    _lower_add = _binary
    _lower_sub = _binary
    _lower_mul = _binary
    _lower_min = _binary
    _lower_max = _binary

    # ---- unary --------------------------------------------------------------------------------
    def _unary_io(self, node: Node) -> tuple[str, str, QuantParams, QuantParams]:
        x, out = node.inputs[0], node.outputs[0]
        self._check_dtype(x, node)
        in_q, out_q = self.quant(x, node), self.quant(out, node)
        if out_q.dtype not in self.target.dtypes:
            raise _Refuse(f"{out_q.dtype} output is not in {self.target.name}'s dtypes")
        return x, out, in_q, out_q

    def _lut(self, node: Node) -> Step:
        x, out, in_q, out_q = self._unary_io(node)
        if in_q.dtype != "int8" or out_q.dtype != "int8":
            raise _Refuse(f"{node.op} on {in_q.dtype} -> {out_q.dtype} (the LUT unit has 256 int8 entries)")
        s_in, z_in = _per_tensor(in_q, "the input")
        s_out, z_out = _per_tensor(out_q, "the output")
        lo, hi = _clamp(node, out_q)
        if self.tflite and node.op in _TFLITE_TABLES:
            table = _TFLITE_TABLES[node.op](node, s_in, z_in, s_out, z_out, lo, hi)
            return Step(node.name, node.op, "lut", [x], [out], params=dict(table=table, dtype="int8"))
        q = np.arange(-128, 128, dtype=np.int64)
        real = ((q - z_in).astype(np.float32) * np.float32(s_in)).astype(np.float32)
        y = _float_function(node, real).astype(np.float32)
        values = np.clip(np.rint(y / np.float32(s_out)) + z_out, lo, hi).astype(np.int64)
        return Step(node.name, node.op, "lut", [x], [out],
                    params=dict(table=tuple(int(v) for v in values), dtype="int8"))

    _lower_sigmoid = _lut
    _lower_tanh = _lut
    _lower_hardswish = _lut
    _lower_hardsigmoid = _lut
    _lower_gelu = _lut
    _lower_leaky_relu = _lut

    def _rescale(self, node: Node, lo_real: float | None = None, hi_real: float | None = None) -> Step:
        x, out, in_q, out_q = self._unary_io(node)
        s_in, z_in = _per_tensor(in_q, "the input")
        s_out, z_out = _per_tensor(out_q, "the output")
        lo, hi = _clamp(node, out_q)
        if lo_real is not None and lo_real > -math.inf:      # a bound of -inf/inf clamps nothing
            lo = max(lo, int(np.clip(self._quantized_bound(lo_real, s_out) + z_out, *dtype_range(out_q.dtype))))
        if hi_real is not None and hi_real < math.inf:
            hi = min(hi, int(np.clip(self._quantized_bound(hi_real, s_out) + z_out, *dtype_range(out_q.dtype))))
        if self.tflite and node.op in ("relu", "clip"):    # TFLite's ReluPrepare: s_in / s_out in float32
            req = _requant(np.array([_f32_ratio(s_in, s_out)]), _unit_scale(out_q), lo, hi, 32, _where(node))
        else:
            req = self._requant_bounded(node, np.array([s_in]), out_q, lo, hi, in_q.dtype,
                                        self._input_span(in_q.dtype, z_in), tflite_bits=32)
        return Step(node.name, node.op, "rescale", [x], [out],
                    params=dict(ifm_zp=z_in, requant=req, dtype=in_q.dtype, out_dtype=out_q.dtype))

    def _quantized_bound(self, real: float, scale: float) -> int:
        """An activation bound on the output's integer grid: TFLite's ``roundf(bound / scale)`` in
        float32, half away from zero; round half to even otherwise (as onnxruntime quantises)."""
        if self.tflite:
            ratio = np.float32(real) / np.float32(scale)
            return int(np.trunc(ratio) + np.copysign(abs(ratio - np.trunc(ratio)) >= 0.5, ratio))
        return int(np.rint(real / scale))

    def _lower_rescale(self, node: Node) -> Step:
        return self._rescale(node)

    def _lower_relu(self, node: Node) -> Step:
        return self._rescale(node, lo_real=0.0)

    def _lower_clip(self, node: Node) -> Step:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
        return self._rescale(node, None if lo is None else float(lo), None if hi is None else float(hi))

    def _lower_resize(self, node: Node) -> Step:
        x, out, in_q, out_q = self._unary_io(node)
        same = (np.allclose(np.atleast_1d(in_q.scale), np.atleast_1d(out_q.scale))
                and np.array_equal(np.atleast_1d(in_q.zero_point), np.atleast_1d(out_q.zero_point)))
        if not same or in_q.dtype != out_q.dtype:
            raise _Refuse("resize that also changes the quantisation")
        if len(sample_shape(self.tensor(x).shape)) != 3:
            raise _Refuse("resize of a non-image tensor")
        mode = str(node.attrs.get("mode", "nearest"))
        if mode not in ("nearest", "bilinear"):
            raise _Refuse(f"{mode} resize (the NPU resizes nearest or bilinear)")
        align, half = bool(node.attrs.get("align_corners", False)), bool(node.attrs.get("half_pixel_centers", False))
        (h, w, _), (oh, ow, _) = fmap_shape(self.tensor(x).shape), fmap_shape(self.tensor(out).shape)
        params: dict[str, Any] = dict(dtype=in_q.dtype, scale=tuple(int(s) for s in node.attrs.get("scale", (2, 2))))
        if mode == "bilinear" or align or oh % h or ow % w:
            # TFLite's coordinate rules to an output size (integer factors need none of them)
            params.update(mode=mode, size=(oh, ow), align_corners=align, half_pixel_centers=half)
        else:
            params["scale"] = (oh // h, ow // w)
        return Step(node.name, node.op, "resize", [x], [out], params=params)

    def _lower_softmax(self, node: Node) -> Step:
        """TFLite's int8 softmax over the last axis: one SOFTMAX instruction whose exp table comes
        from TFLite's own fixed-point algorithm. TFLite's output (scale 1/256, zero point -128) is
        its exact int8 stage; any other output quantisation (onnxruntime writes 1/255) requantises
        the probability in units of 2**-16."""
        x, out, in_q, out_q = self._unary_io(node)
        if in_q.dtype == "int16" and self.tflite:
            scaling = self._tflite_int16_softmax(node).get("tflite_int16")
            if scaling is None:
                raise _Refuse("int16 softmax whose quantisation is not TFLite's (zero points 0, output scale "
                              "1/32768, over the last axis)")
            return Step(node.name, node.op, "softmax", [x], [out],
                        params=dict(exp_table=(), requant=None, dtype="int16", int16_scaling=scaling))
        if in_q.dtype != "int8":
            raise _Refuse(f"softmax on {in_q.dtype} input (the NPU's softmax is TFLite's int8 one; "
                          "TFLite's int16 one needs a rounding = \"tflite\" target)")
        s_in, _ = _per_tensor(in_q, "the input")
        s_out, z_out = _per_tensor(out_q, "the output")
        requant = None
        if out_q.dtype != "int8" or z_out != -128 or abs(s_out - 1 / 256) > 0.001 / 256:
            lo, hi = _clamp(node, out_q)
            requant = _requant(np.array([2.0 ** -16]), out_q, lo, hi, 32, _where(node))
        rank = len(self.tensor(x).shape)
        axis = int(node.attrs.get("axis", -1)) % rank
        if axis != rank - 1:
            raise _Refuse(f"softmax over axis {axis} of a rank-{rank} tensor: {self.target.name}'s SOFTMAX "
                          "normalises the last (channel) axis")
        channels = fmap_shape(self.tensor(x).shape)[2]
        if channels > 4096:
            raise _Refuse(f"softmax over {channels} values (its Q12.19 sum of exponentials holds 4096)")
        try:
            table = tflite_tables.softmax_exp_table(float(node.attrs.get("beta", 1.0)), s_in)
        except ValueError as exc:
            raise _Refuse(str(exc)) from None
        return Step(node.name, node.op, "softmax", [x], [out],
                    params=dict(exp_table=table, requant=requant, dtype="int8"))

    def _lower_pad(self, node: Node) -> Step:
        """A constant pad of an image or vector: RESCALEs with multiplier 0 write the pad value over
        the border, an identity RESCALE copies the input into the interior (as Vela's MemoryCopy of a
        padded tensor; a pad feeding a convolution folds into its padding instead)."""
        x, out = node.inputs[0], node.outputs[0]
        if self.tensor(x).quant is None:
            raise _Refuse("pad of raw integers (no scale): the DMA-less NPU copy needs a quantised tensor")
        _, _, in_q, out_q = self._unary_io(node)
        if not self._same_quant(x, out):
            raise _Refuse("pad that also changes the quantisation")
        s_in, z_in = _per_tensor(in_q, "the input")
        pads = [tuple(int(v) for v in p) for p in node.attrs.get("pads", ())]
        full = tuple(self.tensor(x).shape)
        if len(pads) != len(full) or any(lo < 0 or hi < 0 for lo, hi in pads):
            raise _Refuse(f"pads {pads} for a rank-{len(full)} tensor (constant, non-negative, one per axis)")
        if len(full) >= 2 and full[0] == 1:
            if pads[0] != (0, 0):
                raise _Refuse("pad of the batch axis")
            pads = pads[1:]
        if len(pads) > 3:
            raise _Refuse(f"rank-{len(pads)} pad (the NPU's feature maps have 3 axes)")
        dtype = in_q.dtype
        lo, hi = dtype_range(dtype)
        value = int(node.attrs.get("value", z_in))
        copy = self._requant_bounded(node, np.array([s_in]), in_q, lo, hi, dtype,
                                     self._input_span(dtype, z_in), tflite_bits=32)
        fill = dataclasses.replace(copy, multiplier=(0,), shift=(copy.shift[0],), ofm_zp=min(max(value, lo), hi))
        return Step(node.name, node.op, "pad", [x], [out],
                    params=dict(pads=pads, dtype=dtype, ifm_zp=z_in, requant=copy, fill=fill, npu_copy=True))

    def _lower_concat(self, node: Node) -> list[Step]:
        out = node.outputs[0]
        rank = len(self.tensor(out).shape)
        axis = int(node.attrs.get("axis", -1))
        if axis not in (-1, rank - 1):
            raise _Refuse(f"concat along axis {axis} (the NPU concatenates channels)")
        out_q = self.quant(out, node)
        _per_tensor(out_q, "the output")
        parts: list[Step] = []
        offset = 0
        for name in node.inputs:
            t = self.tensor(name)
            if t.is_constant:
                raise _Refuse("concat with a constant operand")
            in_dtype = self._check_dtype(name, node)
            s_in, z_in = _per_tensor(self.quant(name, node), f"input '{name}'")
            lo, hi = dtype_range(out_q.dtype)
            req = self._requant_bounded(node, np.array([s_in]), out_q, lo, hi, in_dtype,
                                        self._input_span(in_dtype, z_in), tflite_bits=32)
            channels = fmap_shape(t.shape)[2]
            # each operand is rescaled straight into its channel slice of the output buffer
            parts.append(Step(node.name, node.op, "rescale", [name], [out],
                              params=dict(ifm_zp=z_in, requant=req, dtype=in_dtype,
                                          out_dtype=out_q.dtype, out_c0=offset, channels=channels)))
            offset += channels
        return parts

    def _lower_transpose(self, node: Node) -> Step:
        x, out = node.inputs[0], node.outputs[0]
        tin, tout = self.tensor(x), self.tensor(out)
        if tin.quant is None and tout.quant is None and tin.dtype == tout.dtype != "float32":
            dtype = tin.dtype            # raw integers: the DMA moves them as they are
            if dtype not in self.target.dtypes:
                raise _Refuse(f"{dtype} tensor ('{x}') is not in {self.target.name}'s dtypes")
        else:
            _, _, in_q, out_q = self._unary_io(node)
            if in_q.dtype != out_q.dtype or not self._same_quant(x, out):
                raise _Refuse("transpose that also changes the quantisation")
            dtype = in_q.dtype
        perm = [int(p) for p in node.attrs["perm"]]
        full = tuple(tin.shape)
        if len(full) >= 2 and full[0] == 1:
            if perm[0] != 0:
                raise _Refuse("transpose that moves the batch axis")
            perm = [p - 1 for p in perm[1:]]
        if len(perm) > 3:
            raise _Refuse(f"rank-{len(perm)} transpose (the DMA moves 3-D blocks)")
        params: dict[str, Any] = dict(perm=perm, dtype=dtype)
        if tin.quant is not None and self.target.supports("rescale"):
            # The NPU reads the input through permuted strides and writes it in order (an identity
            # RESCALE), as Vela runs a TRANSPOSE: a strided DMA would move one element per burst.
            q = self.quant(x, node)
            s_in, z_in = _per_tensor(q, "the input")
            lo, hi = dtype_range(dtype)
            params.update(npu_copy=True, ifm_zp=z_in, requant=self._requant_bounded(
                node, np.array([s_in]), q, lo, hi, dtype, self._input_span(dtype, z_in), tflite_bits=32))
        return Step(node.name, node.op, "transpose", [x], [out], params=params)


# What would move a host layer to the NPU, by the rule that sent it there (first match wins).
_HINTS: list[tuple[str, str]] = [
    (r"float32 tensor: not quantised", "quantise the {source} (pytest_npu.compress.quantize does; with "
     "onnxruntime's quantize_static pass op_types_to_quantize including '{source}', e.g. "
     "pytest_npu.compress.quantize.op_types_to_quantize())"),
    (r"no fixed scale|has no quantisation parameters", "quantise statically with calibration data "
     "(pytest_npu.compress.quantize or onnxruntime's quantize_static), so every activation has a fixed scale"),
    (r"has no NPU form|no table for|is not in \S+ instruction set \(no NPU instruction",
     "nothing on this target: no NPU instruction computes {op}; replace it in the model (or accept the host cost)"),
    (r"needs ([\w/]+), which (?:is|are) not in", "a target whose [isa] operations list '{g1}'"),
    (r"normalises the last \(channel\) axis", "a softmax over the channel (last) axis of the activation"),
    (r"is not in \S+ instruction set", "a target whose [isa] operations list '{op}'"),
    (r"(\w+) (\d+) exceeds \S+ max_\w+ (\d+)", "a {g1} of at most {g3} in the model, or a target with a "
     "larger max_{g1}"),
    (r"activations \('[^']*'\) are not in \S+ dtypes (\[.*\])", "activations quantised as one of {g1} "
     "(activation_type=QuantType.QInt8 or QInt16)"),
    (r"output is not in \S+ dtypes|tensor \('[^']*'\) is not in", "int8 (or int16) tensors around this layer"),
    (r"quantised per channel", "per-tensor quantisation of this tensor (per-channel scales are for weights)"),
    (r"is not one NHWC image", "an export with a dynamic (or size-1) batch axis, so the batch is not part "
     "of the image"),
    (r"LUT unit has 256 int8 entries", "int8 activations around this layer (the LUT has 256 entries)"),
    (r"count_include_pad=0", "count_include_pad=1, or no padding, in the average pool"),
    (r"broadcast|neither operand has the output's shape|first operand broadcasts",
     "operands of the output's shape, or broadcast per tensor or per channel (last axis)"),
    (r"different (input and output )?scales|changes the quantisation|dtype differs|different dtypes",
     "the same quantisation on both sides of this layer (re-run the quantiser)"),
    (r"concat along axis", "a concatenation along the channel (last) axis"),
    (r"concat with a constant", "activations only as concatenation operands"),
    (r"batched matmul|rank-\d+ (input|transpose)|moves the batch axis|non-image tensor",
     "2-D (or 3-D for transposes) operands with the batch axis first"),
    (r"weights|weight zero points|bias", "int8 weights with one zero point and an int32 bias (a standard "
     "static quantisation)"),
]


def move_hint(node: Node, reason: str, target: Target) -> str:
    """What would move ``node`` from the host to the NPU, given the ``reason`` it is on the host."""
    source = (node.source_ops[0] if node.source_ops else "") or str(node.attrs.get("onnx_op", node.op))
    for pattern, text in _HINTS:
        match = re.search(pattern, reason)
        if match:
            groups = {f"g{i}": g for i, g in enumerate(match.groups(), 1)}
            return text.format(source=source, op=node.op if node.op != "float_op" else source,
                               target=target.name, **{k: v or "" for k, v in groups.items()})
    return "see docs/guide/limits.md for what the NPU runs"


def _tflite_hard_swish(node: Node, s_in: float, z_in: int, s_out: float, z_out: int, lo: int, hi: int):
    try:
        return tflite_tables.hard_swish_lut(s_in, z_in, s_out, z_out, lo, hi)
    except ValueError as exc:
        raise _Refuse(str(exc)) from None


# Activations whose TFLite int8 kernel is a table of its own algorithm (npu.isa.Lut reproduces it).
_TFLITE_TABLES = {
    "sigmoid": lambda node, s_in, z_in, s_out, z_out, lo, hi: tflite_tables.float_lut(
        tflite_tables.sigmoid32, s_in, z_in, s_out, z_out, lo, hi),
    "tanh": lambda node, s_in, z_in, s_out, z_out, lo, hi: tflite_tables.float_lut(
        tflite_tables.tanh32, s_in, z_in, s_out, z_out, lo, hi),
    "hardswish": _tflite_hard_swish,
}


def _float_function(node: Node, x: np.ndarray) -> np.ndarray:
    """The float activation a LUT tabulates (float32, like onnxruntime evaluates it)."""
    op = node.op
    if op == "sigmoid":
        with np.errstate(over="ignore"):       # exp(-x) overflows to inf for x < -88: sigmoid 0
            return 1.0 / (1.0 + np.exp(-x))
    if op == "tanh":
        return np.tanh(x)
    if op == "hardswish":
        return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0
    if op == "hardsigmoid":
        alpha = np.float32(node.attrs.get("alpha", 0.2))
        beta = np.float32(node.attrs.get("beta", 0.5))
        return np.clip(alpha * x + beta, 0.0, 1.0)
    if op == "gelu":
        erf = np.array([math.erf(v) for v in (x / np.sqrt(2.0)).tolist()], np.float64)
        return (0.5 * x * (1.0 + erf)).astype(np.float32)
    if op == "leaky_relu":
        alpha = np.float32(node.attrs.get("alpha", 0.01))
        return np.where(x >= 0, x, alpha * x)
    raise _Refuse(f"no table for {op}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def legalize(graph: Graph, target: Target, fallback: str) -> Legalized:
    return Legalizer(graph, target, fallback).run()
