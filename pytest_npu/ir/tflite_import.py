"""TFLite flatbuffers (``.tflite``) -> IR graph, read with the ``tflite`` package (no TensorFlow).

TFLite is already what the IR is: NHWC activations of batch 1, integers with their scale and zero
point on every tensor, fused activations. The importer therefore maps operator to operator and
never re-quantises: each IR tensor carries the parameters TFLite stored, weights are re-laid out
((Cout, KH, KW, Cin) -> (KH, KW, Cin, Cout), FC (N, K) -> (K, N)) with their per-channel axis,
and a fused activation becomes the ``clamp`` TFLite's ``CalculateActivationRangeQuantized``
computes. Graph inputs and outputs keep TFLite's shape and dtype; ``run()`` quantises floats with
the input's own parameters (a float32 input followed by QUANTIZE, or a DEQUANTIZE before a float
output, folds into that boundary). Whatever would need a guess -- an operator outside the list,
a float tensor mid-graph, a missing scale, a dynamic shape -- is refused with a ModelError naming the file, the operator and its output tensor.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .graph import Boundary, Graph, Node, QuantParams, Tensor

MAGIC = b"TFL3"

_DTYPES = {"INT8": "int8", "UINT8": "uint8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
           "FLOAT32": "float32"}
_ACTIVATIONS = {0: "none", 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
_BINARY = {"ADD": "add", "SUB": "sub", "MUL": "mul"}
_UNARY = {"LOGISTIC": ("sigmoid", {}), "TANH": ("tanh", {}), "HARD_SWISH": ("hardswish", {}),
          "RELU": ("relu", {}), "RELU6": ("clip", {"min": 0.0, "max": 6.0}),
          "RELU_N1_TO_1": ("clip", {"min": -1.0, "max": 1.0})}
_MOVES = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")

SUPPORTED = sorted(["CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", *_BINARY, "AVERAGE_POOL_2D",
                    "MAX_POOL_2D", "MEAN", *_MOVES, "CONCATENATION", "PAD", "PADV2", "SOFTMAX", *_UNARY,
                    "QUANTIZE", "DEQUANTIZE", "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"])


def is_tflite(data: bytes) -> bool:
    """A TFLite flatbuffer carries the file identifier ``TFL3`` at bytes 4..8."""
    return len(data) >= 8 and bytes(data[4:8]) == MAGIC


def from_tflite(model: str | os.PathLike | bytes) -> Graph:
    """Import a ``.tflite`` model (path or bytes) as an IR graph; ModelError on anything unsupported."""
    data, source = _read(model)
    try:
        return _Importer(data, source).run()
    except ModelError:
        raise
    except Exception as exc:   # flatbuffer accessors on a corrupt file: IndexError, struct.error...
        raise ModelError(f"{source}: not a readable TFLite model ({type(exc).__name__}: {exc}); the file is "
                         "truncated or corrupt -- convert it again") from None


def _read(model) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, source = bytes(model), "<bytes>"
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"{path}: no such TFLite file; pass the path of a .tflite model")
        data, source = path.read_bytes(), str(path)
    else:
        raise ModelError(f"from_tflite() got a {type(model).__name__}; pass a .tflite path or its bytes")
    if not data:
        raise ModelError(f"{source}: the file is empty; convert the model again")
    if not is_tflite(data):
        raise ModelError(f"{source}: not a TFLite flatbuffer (no 'TFL3' identifier at bytes 4..8); pass a "
                         ".tflite file written by TFLiteConverter or LiteRT")
    return data, source


@dataclass
class _Op:
    index: int
    name: str                  # builtin name, e.g. "CONV_2D"
    inputs: list[int]
    outputs: list[int]
    options: Any               # the flatbuffer table (tflite.Table), or None

    def where(self, tensors) -> str:
        outs = ", ".join(f"'{tensors[i].name}'" for i in self.outputs if i >= 0)
        return f"operator {self.index} ({self.name}) -> {outs}"


@dataclass
class _T:
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: QuantParams | None
    data: np.ndarray | None
    tflite_axis: int


class _Importer:
    def __init__(self, data: bytes, source: str):
        import tflite
        from tflite.utils import BUILTIN_OPCODE2NAME

        self.tfl, self.names = tflite, BUILTIN_OPCODE2NAME
        self.data, self.source = data, source
        self.model = tflite.Model.GetRootAsModel(data, 0)
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.rename: dict[str, str] = {}      # folded QUANTIZE/DEQUANTIZE: tensor -> boundary name

    # -------------------------------------------------------------------------------- reading
    def run(self) -> Graph:
        m = self.model
        if m.SubgraphsLength() != 1:
            raise ModelError(f"{self.source}: the model has {m.SubgraphsLength()} subgraphs (control flow "
                             "or several signatures); pytest-npu imports single-subgraph models -- convert "
                             "one signature without control flow")
        sg = m.Subgraphs(0)
        self.ts = [self._tensor(sg.Tensors(i), i) for i in range(sg.TensorsLength())]
        ops = [self._op(sg.Operators(i), i) for i in range(sg.OperatorsLength())]
        if not ops:
            raise ModelError(f"{self.source}: the model has no operators")
        inputs = [int(i) for i in sg.InputsAsNumpy()] if sg.InputsLength() else []
        outputs = [int(i) for i in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
        if not outputs:
            raise ModelError(f"{self.source}: the model declares no outputs")
        self.graph_inputs, self.graph_outputs = inputs, outputs
        folded = self._fold_boundaries(ops)
        for op in ops:
            if op.index not in folded:
                self._convert(op)
        io: dict[str, Boundary] = {}
        in_names, out_names = [], []
        for i in inputs:
            name = self.rename.get(self.ts[i].name, self.ts[i].name)
            in_names.append(name)
            io[name] = self._boundary(i, name)
        for i in outputs:
            name = self._ir_name(self.ts[i].name)
            out_names.append(name)
            io[name] = self._boundary(i, name)
        for name in [*in_names, *out_names]:
            self._declare_activation(name)
        graph = Graph(name=Path(self.source).stem if self.source != "<bytes>" else "tflite",
                      tensors=self.tensors, nodes=self.nodes, inputs=in_names, outputs=out_names,
                      input_quant={n: q for n in in_names if (q := io[n].quant) is not None},
                      output_quant={n: q for n in out_names if (q := io[n].quant) is not None},
                      source=self.source, metadata={"format": "tflite", "tflite_schema": int(m.Version())},
                      io=io)
        from .onnx_import import check_graph

        check_graph(graph)
        return graph

    def _tensor(self, t, index: int) -> _T:
        name = (t.Name() or b"").decode("utf-8", "replace") or f"tensor_{index}"
        type_name = _enum_name(self.tfl.TensorType, t.Type())
        dtype = _DTYPES.get(type_name)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if t.ShapeSignatureLength():
            signature = [int(d) for d in t.ShapeSignatureAsNumpy()]
            dynamic = [k for k, d in enumerate(signature) if d < 0]
            if any(k != 0 for k in dynamic):
                raise ModelError(f"{self.source}: tensor '{name}' has dynamic dimensions {signature}; only a "
                                 "dynamic batch axis (axis 0) is accepted -- convert with fixed input shapes")
        quant = None
        q = t.Quantization()
        axis = 0
        if q is not None and q.ScaleLength():
            scale = q.ScaleAsNumpy().astype(np.float32)
            zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(scale.shape, np.int64)
            if zp.size == 1 and scale.size > 1:
                zp = np.full(scale.shape, int(zp[0]), np.int64)
            if zp.shape != scale.shape:
                raise ModelError(f"{self.source}: tensor '{name}' has {scale.size} scales but {zp.size} zero "
                                 "points; the quantisation parameters are inconsistent")
            if not (np.isfinite(scale).all() and (scale > 0).all()):
                raise ModelError(f"{self.source}: tensor '{name}' has a scale that is not a positive finite "
                                 f"number ({scale[:4].tolist()}...)")
            axis = int(q.QuantizedDimension())
            if scale.size == 1:
                quant = QuantParams(scale.reshape(()), zp.reshape(()), dtype or type_name.lower())
            else:
                quant = QuantParams(scale, zp, dtype or type_name.lower(), axis)
        data = None
        buffer_index = t.Buffer()
        if buffer_index > 0 and dtype is not None:
            raw = self._buffer(buffer_index, name)
            if raw is not None:
                count = int(np.prod(shape)) if shape else 1
                arr = np.frombuffer(raw, np.dtype(dtype))
                if arr.size != count:
                    raise ModelError(f"{self.source}: constant '{name}' holds {arr.size} values for shape "
                                     f"{list(shape)}; the file is corrupt")
                data = arr.reshape(shape).copy()
        return _T(name, shape, dtype or type_name, quant, data, axis)

    def _buffer(self, index: int, name: str) -> bytes | None:
        if index >= self.model.BuffersLength():
            raise ModelError(f"{self.source}: tensor '{name}' points at buffer {index}, past the model's "
                             f"{self.model.BuffersLength()} buffers; the file is corrupt")
        buf = self.model.Buffers(index)
        if buf.DataLength():
            return buf.DataAsNumpy().tobytes()
        offset, size = int(buf.Offset()), int(buf.Size())
        if offset > 1 and size:
            if offset + size > len(self.data):
                raise ModelError(f"{self.source}: tensor '{name}' reads bytes {offset}..{offset + size} of a "
                                 f"{len(self.data)}-byte file; the file is truncated")
            return self.data[offset:offset + size]
        return None

    def _op(self, op, index: int) -> _Op:
        code_index = op.OpcodeIndex()
        if code_index >= self.model.OperatorCodesLength():
            raise ModelError(f"{self.source}: operator {index} uses opcode {code_index}, past the model's "
                             f"{self.model.OperatorCodesLength()} codes; the file is corrupt")
        code = self.model.OperatorCodes(code_index)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        name = self.names.get(builtin, f"BUILTIN_{builtin}")
        outputs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        if name == "CUSTOM":
            custom = (code.CustomCode() or b"").decode("utf-8", "replace")
            outs = ", ".join(f"'{self.ts[i].name}'" for i in outputs)
            raise ModelError(f"{self.source}: operator {index} is the custom operator '{custom}' -> {outs}; "
                             "pytest-npu runs TFLite builtins only (" + ", ".join(SUPPORTED) + ")")
        inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        for i in [*inputs, *outputs]:
            if i >= len(self.ts):
                raise ModelError(f"{self.source}: operator {index} ({name}) refers to tensor {i}, past the "
                                 f"model's {len(self.ts)} tensors; the file is corrupt")
        return _Op(index, name, inputs, outputs, op.BuiltinOptions())

    # ------------------------------------------------------------------------------ boundaries
    def _fold_boundaries(self, ops: list[_Op]) -> set[int]:
        """A float32 graph input read only by a QUANTIZE, or a float32 graph output written by a
        DEQUANTIZE, becomes a float boundary with the quantised side's parameters."""
        folded = set()
        for i in self.graph_inputs:
            t = self.ts[i]
            readers = [op for op in ops if i in op.inputs]
            if t.dtype == "float32" and len(readers) == 1 and readers[0].name == "QUANTIZE":
                q = readers[0]
                self.rename[self.ts[q.outputs[0]].name] = t.name
                folded.add(q.index)
        for i in self.graph_outputs:
            t = self.ts[i]
            writer = next((op for op in ops if i in op.outputs), None)
            if t.dtype == "float32" and writer is not None and writer.name == "DEQUANTIZE":
                src = self.ts[writer.inputs[0]]
                if src.data is None and src.quant is not None:
                    self.rename[src.name] = t.name
                    folded.add(writer.index)
        return folded

    def _boundary(self, index: int, name: str) -> Boundary:
        t = self.ts[index]
        source = self.tensors.get(name)
        quant = source.quant if source is not None else t.quant
        shape = t.shape
        if t.dtype == "float32" and (source is None or source.dtype == "float32"):
            raise ModelError(f"{self.source}: graph {'input' if index in self.graph_inputs else 'output'} "
                             f"'{t.name}' is float32 and not quantised at the boundary; pytest-npu runs "
                             "fully integer models -- convert with inference_input_type/"
                             "inference_output_type int8 (or keep the float edge a single QUANTIZE/DEQUANTIZE)")
        if quant is None:
            raise ModelError(f"{self.source}: graph tensor '{t.name}' ({t.dtype}) has no quantisation "
                             "parameters; convert with full-integer quantisation")
        if quant.per_channel:
            raise ModelError(f"{self.source}: graph tensor '{t.name}' is quantised per channel; graph inputs "
                             "and outputs need one scale")
        if t.dtype == "float32" and index in self.graph_inputs:
            # the folded QUANTIZE: run() rounds as TFLite's kernel does (std::round, half away from zero)
            quant = dataclasses.replace(quant, rounding="half_away")
        return Boundary(shape, "float32", None, quant, len(shape) >= 1 and shape[0] == 1)

    def _declare_activation(self, name: str) -> None:
        if name not in self.tensors:
            raise ModelError(f"{self.source}: graph tensor '{name}' is neither produced by an operator nor "
                             "an input; the model is inconsistent")

    # ------------------------------------------------------------------------------ conversion
    def _ir_name(self, name: str) -> str:
        return self.rename.get(name, name)

    def _activation(self, index: int, op: _Op) -> str:
        t = self.ts[index]
        name = self._ir_name(t.name)
        if name in self.tensors:
            return name
        if t.data is not None:
            raise ModelError(f"{self.source}: {op.where(self.ts)} reads the constant '{t.name}' where it takes "
                             "an activation; pytest-npu does not run operators on constant inputs here")
        self._require_quantised(t, op)
        self.tensors[name] = Tensor(name, self._activation_shape(t, op), t.dtype, t.quant)
        return name

    def _output(self, op: _Op, k: int = 0) -> tuple[str, _T]:
        t = self.ts[op.outputs[k]]
        self._require_quantised(t, op)
        if t.quant is not None and t.quant.per_channel:
            raise ModelError(f"{self.source}: {op.where(self.ts)} writes '{t.name}' quantised per channel; "
                             "activations need one scale")
        name = self._ir_name(t.name)
        self.tensors[name] = Tensor(name, self._activation_shape(t, op), t.dtype, t.quant)
        return name, t

    def _activation_shape(self, t: _T, op: _Op) -> tuple[int, ...]:
        """An image activation is ``(1, H, W, C)``: the IR's images have batch 1 and ``run()`` stacks
        inferences. A fixed batch N > 1 would reach the image operators as data they do not read."""
        if len(t.shape) == 4 and t.shape[0] != 1:
            raise ModelError(f"{self.source}: {op.where(self.ts)} uses '{t.name}' of shape {list(t.shape)}, a "
                             f"batch of {t.shape[0]} images; pytest-npu imports batch-1 models and stacks "
                             "inferences itself (run() takes (N, ...)) -- convert with batch size 1 (a "
                             "Keras model with a None batch converts so)")
        return _ir_shape(t.shape)

    def _require_quantised(self, t: _T, op: _Op) -> None:
        if t.dtype not in ("int8", "uint8", "int16", "int32"):
            raise ModelError(f"{self.source}: {op.where(self.ts)} uses the {t.dtype} tensor '{t.name}'; "
                             "pytest-npu runs fully integer models -- convert with full-integer "
                             "quantisation (TFLITE_BUILTINS_INT8 or the int16x8 ops set)")
        if t.quant is None:
            raise ModelError(f"{self.source}: {op.where(self.ts)} uses '{t.name}' ({t.dtype}) without a scale "
                             "and zero point; pytest-npu never guesses one -- convert with a "
                             "representative dataset so every tensor is quantised")

    def _constant(self, op: _Op, k: int, what: str) -> _T:
        if k >= len(op.inputs) or op.inputs[k] < 0 or self.ts[op.inputs[k]].data is None:
            raise ModelError(f"{self.source}: {op.where(self.ts)} needs a constant {what} (input {k}); a "
                             "computed one is not supported")
        return self.ts[op.inputs[k]]

    def _data(self, op: _Op, k: int, what: str) -> np.ndarray:
        """The values of constant input ``k`` (refused when it is computed)."""
        data = self._constant(op, k, what).data
        assert data is not None
        return data

    def _add(self, op: _Op, ir_op: str, inputs: list[str], outputs: list[str], attrs: dict) -> None:
        self.nodes.append(Node(f"{op.name.lower()}_{op.index}", ir_op, inputs, outputs, attrs,
                               source_ops=[op.name]))

    def _options(self, op: _Op, cls_name: str):
        if op.options is None:
            return None
        opts = getattr(self.tfl, cls_name)()
        opts.Init(op.options.Bytes, op.options.Pos)
        return opts

    def _clamp(self, op: _Op, fused: int, out: _T) -> dict:
        kind = _ACTIVATIONS.get(int(fused))
        if kind is None:
            raise ModelError(f"{self.source}: {op.where(self.ts)} fuses activation {fused} "
                             f"({_enum_name(self.tfl.ActivationFunctionType, fused)}); only NONE, RELU, "
                             "RELU_N1_TO_1 and RELU6 are fused on the NPU")
        if kind == "none":
            return {}
        return {"clamp": _activation_range(kind, out.quant, out.dtype)}

    def _convert(self, op: _Op) -> None:
        handler = getattr(self, f"_op_{op.name.lower()}", None)
        if op.name in _BINARY:
            handler = self._op_binary
        elif op.name in _UNARY:
            handler = self._op_unary
        elif op.name in _MOVES:
            handler = self._op_reshape
        if handler is None:
            raise ModelError(f"{self.source}: {op.where(self.ts)} is not supported; pytest-npu imports "
                             + ", ".join(SUPPORTED) + ". Express it with those operators, or open an "
                             "issue with the model")
        handler(op)

    # -- MAC layers
    def _mac_io(self, op: _Op, options: str):
        """(options, input, weights, output name, output) of a convolution; weights rank 4."""
        opts = self._options(op, options)
        x = self._activation(op.inputs[0], op)
        w = self._constant(op, 1, "weight tensor")
        if len(w.shape) != 4 or opts is None:
            raise ModelError(f"{self.source}: {op.where(self.ts)} has rank-{len(w.shape)} weights "
                             f"{list(w.shape)}{'' if opts else ' and no options'}; TFLite's kernel takes 4-D ones")
        y, out = self._output(op)
        return opts, x, w, y, out

    def _op_conv_2d(self, op: _Op) -> None:
        opts, x, w, y, out = self._mac_io(op, "Conv2DOptions")
        cout, kh, kw, cin = w.shape
        in_c = self.ts[op.inputs[0]].shape[-1]
        if in_c != cin:
            raise ModelError(f"{self.source}: {op.where(self.ts)} is a grouped convolution ({in_c} input channels, "
                             f"weights for {cin}); grouped CONV_2D is not supported")
        data = np.ascontiguousarray(self._data(op, 1, "weight tensor").transpose(1, 2, 3, 0))
        wq = self._weight_quant(op, w, cout, axis_from=0, ir_axis=3)
        self._conv(op, "conv2d", x, data, wq, y, out, opts, (kh, kw), cout)

    def _op_depthwise_conv_2d(self, op: _Op) -> None:
        opts, x, w, y, out = self._mac_io(op, "DepthwiseConv2DOptions")
        _, kh, kw, cout = w.shape
        in_c = self.ts[op.inputs[0]].shape[-1]
        multiplier = cout // in_c if in_c else 0
        if multiplier * in_c != cout:
            raise ModelError(f"{self.source}: {op.where(self.ts)} has {cout} weight channels for {in_c} input "
                             "channels; the model is inconsistent")
        wq = self._weight_quant(op, w, cout, axis_from=3, ir_axis=None)
        taps = self._data(op, 1, "weight tensor")[0]                                    # (KH, KW, Cout)
        groups = {}
        if multiplier == 1:
            data, ir_op = np.ascontiguousarray(taps), "depthwise_conv2d"               # (KH, KW, C)
        else:
            # output channel c * M + m reads input channel c alone: a convolution with a block-diagonal
            # weight of one input channel per group (exact: the zero weights add nothing), which the
            # compiler compacts back to one small convolution per group
            ir_op = "conv2d"
            data = np.zeros((kh, kw, in_c, cout), taps.dtype)
            data[:, :, np.arange(cout) // multiplier, np.arange(cout)] = taps
            if in_c > 1:
                groups = {"groups_expanded": in_c}
        if wq.axis is not None:
            wq.axis = data.ndim - 1
        self._conv(op, ir_op, x, data, wq, y, out, opts, (kh, kw), cout, groups)

    def _weight_quant(self, op: _Op, w: _T, channels: int, axis_from: int, ir_axis: int | None) -> QuantParams:
        q = w.quant
        if q is None or w.dtype not in ("int8", "int16"):
            raise ModelError(f"{self.source}: {op.where(self.ts)} has {w.dtype} weights '{w.name}' without "
                             "integer quantisation; convert with full-integer quantisation")
        if np.any(q.zero_point != 0):
            raise ModelError(f"{self.source}: {op.where(self.ts)} has weights '{w.name}' with a non-zero zero "
                             "point; TFLite's int8 kernels require symmetric weights")
        if q.per_channel:
            if w.tflite_axis != axis_from or q.scale.size != channels:
                raise ModelError(f"{self.source}: {op.where(self.ts)} has per-channel weight scales along axis "
                                 f"{w.tflite_axis} ({q.scale.size} of them) where TFLite's kernel reads axis "
                                 f"{axis_from} ({channels} channels)")
            return QuantParams(q.scale.copy(), q.zero_point.copy(), w.dtype, ir_axis if ir_axis is not None else 0)
        return QuantParams(q.scale.copy(), q.zero_point.copy(), w.dtype, None)

    def _bias(self, op: _Op, k: int, x: str, wq: QuantParams, channels: int) -> str:
        in_q = self.tensors[x].quant
        assert in_q is not None
        scale = (np.float32(in_q.scale) * wq.scale).astype(np.float32)
        wide = self.tensors[x].dtype == "int16"
        if k < len(op.inputs) and op.inputs[k] >= 0:
            b = self._constant(op, k, "bias")
            if b.dtype not in ("int32", "int64") or b.shape != (channels,):
                raise ModelError(f"{self.source}: {op.where(self.ts)} has a {b.dtype} bias of shape {list(b.shape)}; "
                                 f"TFLite's integer kernels take an int32 (int64 for 16x8) bias of {channels}")
            data = self._data(op, k, "bias")
        else:
            data = np.zeros(channels, np.int64 if wide else np.int32)
        name = f"{op.name.lower()}_{op.index}/bias"
        quant = QuantParams(scale, np.zeros(scale.shape, np.int64), "int32", 0 if scale.ndim else None)
        self.tensors[name] = Tensor(name, (channels,), str(data.dtype), quant, data)
        return name

    def _conv(self, op, ir_op, x, data, wq, y, out, opts, kernel, cout, extra: dict | None = None) -> None:
        stride = (int(opts.StrideH()), int(opts.StrideW()))
        dilation = (int(opts.DilationHFactor()), int(opts.DilationWFactor()))
        in_shape = self.ts[op.inputs[0]].shape
        if len(in_shape) != 4:
            raise ModelError(f"{self.source}: {op.where(self.ts)} reads a rank-{len(in_shape)} input; "
                             "convolutions take NHWC")
        padding, (oh, ow) = _padding(int(opts.Padding()), in_shape[1:3], kernel, stride, dilation)
        if (1, oh, ow, cout) != tuple(out.shape):
            raise ModelError(f"{self.source}: {op.where(self.ts)} declares output shape {list(out.shape)}, the "
                             f"options give {[1, oh, ow, cout]}")
        w_name = f"{op.name.lower()}_{op.index}/weights"
        self.tensors[w_name] = Tensor(w_name, data.shape, str(data.dtype), wq, data)
        b_name = self._bias(op, 2, x, wq, cout)
        attrs = {"stride": stride, "dilation": dilation, "padding": padding,
                 **self._clamp(op, opts.FusedActivationFunction(), out), **(extra or {})}
        self._add(op, ir_op, [x, w_name, b_name], [y], attrs)

    def _op_fully_connected(self, op: _Op) -> None:
        opts = self._options(op, "FullyConnectedOptions")
        if opts is not None and int(opts.WeightsFormat()) != 0:
            raise ModelError(f"{self.source}: {op.where(self.ts)} uses shuffled weights; convert with the default "
                             "weights format")
        x_t = self.ts[op.inputs[0]]
        x = self._activation(op.inputs[0], op)
        w = self._constant(op, 1, "weight tensor")
        y, out = self._output(op)
        n, k = w.shape
        if int(np.prod(x_t.shape)) % k:
            raise ModelError(f"{self.source}: {op.where(self.ts)} reads {list(x_t.shape)}, not a whole number of "
                             f"rows of {k}")
        rows = int(np.prod(x_t.shape)) // k
        wq = self._weight_quant(op, w, n, axis_from=0, ir_axis=1)
        flat = x
        if tuple(self.tensors[x].shape) != (rows, k):
            flat = f"{op.name.lower()}_{op.index}/input"
            self.tensors[flat] = Tensor(flat, (rows, k), self.tensors[x].dtype, self.tensors[x].quant)
            self.nodes.append(Node(f"{op.name.lower()}_{op.index}_reshape", "reshape", [x], [flat],
                                   {"shape": (rows, k)}, source_ops=["FULLY_CONNECTED"]))
        w_name = f"{op.name.lower()}_{op.index}/weights"
        data = np.ascontiguousarray(self._data(op, 1, "weight tensor").T)
        self.tensors[w_name] = Tensor(w_name, data.shape, str(data.dtype), wq, data)
        b_name = self._bias(op, 2, x, wq, n)
        attrs = self._clamp(op, opts.FusedActivationFunction() if opts is not None else 0, out)
        target = y
        if tuple(self.tensors[y].shape) != (rows, n):
            target = f"{op.name.lower()}_{op.index}/output"
            self.tensors[target] = Tensor(target, (rows, n), out.dtype, out.quant)
        self._add(op, "fully_connected", [flat, w_name, b_name], [target], attrs)
        if target != y:
            self.nodes.append(Node(f"{op.name.lower()}_{op.index}_reshape_out", "reshape", [target], [y],
                                   {"shape": tuple(self.tensors[y].shape)}, source_ops=["FULLY_CONNECTED"]))

    # -- element-wise and activations
    def _op_binary(self, op: _Op) -> None:
        cls = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}[op.name]
        opts = self._options(op, cls)
        a, b = (self._activation(i, op) for i in op.inputs[:2])
        y, out = self._output(op)
        if out.dtype == "int16" and op.name != "MUL" and opts is not None and opts.PotScaleInt16():
            raise ModelError(f"{self.source}: {op.where(self.ts)} is an int16 {op.name} with power-of-two "
                             "scales (pot_scale_int16); convert with the int16x8 ops set, which writes the "
                             "general kernel's form")
        fused = opts.FusedActivationFunction() if opts is not None else 0
        self._add(op, _BINARY[op.name], [a, b], [y], self._clamp(op, fused, out))

    def _op_unary(self, op: _Op) -> None:
        x = self._activation(op.inputs[0], op)
        y, _ = self._output(op)
        ir_op, attrs = _UNARY[op.name]
        self._add(op, ir_op, [x], [y], dict(attrs))

    def _op_softmax(self, op: _Op) -> None:
        opts = self._options(op, "SoftmaxOptions")
        x = self._activation(op.inputs[0], op)
        y, out = self._output(op)
        beta = float(opts.Beta()) if opts is not None else 1.0
        self._add(op, "softmax", [x], [y], {"axis": len(out.shape) - 1, "beta": beta})

    def _op_quantize(self, op: _Op) -> None:
        x = self._activation(op.inputs[0], op)
        y, _ = self._output(op)
        self._add(op, "rescale", [x], [y], {})

    def _op_dequantize(self, op: _Op) -> None:
        raise ModelError(f"{self.source}: {op.where(self.ts)} dequantises mid-graph (only a DEQUANTIZE "
                         "writing a graph output folds into it); the float part after it would run "
                         "nowhere -- convert with full-integer quantisation")

    # -- pooling and reductions
    def _pool(self, op: _Op, ir_op: str) -> None:
        opts = self._options(op, "Pool2DOptions")
        x = self._activation(op.inputs[0], op)
        y, out = self._output(op)
        in_t = self.ts[op.inputs[0]]
        kernel = (int(opts.FilterHeight()), int(opts.FilterWidth()))
        stride = (int(opts.StrideH()), int(opts.StrideW()))
        padding, (oh, ow) = _padding(int(opts.Padding()), in_t.shape[1:3], kernel, stride, (1, 1))
        if (oh, ow) != tuple(out.shape[1:3]):
            raise ModelError(f"{self.source}: {op.where(self.ts)} declares output shape {list(out.shape)}, the "
                             f"options give {oh}x{ow}")
        if in_t.quant is not None and out.quant is not None and (
                not np.array_equal(in_t.quant.scale, out.quant.scale)
                or not np.array_equal(in_t.quant.zero_point, out.quant.zero_point)):
            raise ModelError(f"{self.source}: {op.where(self.ts)} changes the scale or zero point; TFLite's "
                             "integer pooling keeps the input's")
        attrs = {"kernel": kernel, "stride": stride, "padding": padding,
                 **self._clamp(op, opts.FusedActivationFunction(), out)}
        if ir_op == "avg_pool":
            attrs["count_include_pad"] = False            # TFLite divides by the in-bounds taps
        self._add(op, ir_op, [x], [y], attrs)

    def _op_average_pool_2d(self, op: _Op) -> None:
        self._pool(op, "avg_pool")

    def _op_max_pool_2d(self, op: _Op) -> None:
        self._pool(op, "max_pool")

    def _op_mean(self, op: _Op) -> None:
        x_t = self.ts[op.inputs[0]]
        axes_t = self._constant(op, 1, "axes tensor")
        axes = sorted({int(a) % max(len(x_t.shape), 1) for a in np.asarray(axes_t.data).reshape(-1)})
        if len(x_t.shape) != 4 or axes != [1, 2]:
            raise ModelError(f"{self.source}: {op.where(self.ts)} averages axes {axes} of a rank-"
                             f"{len(x_t.shape)} tensor; pytest-npu runs MEAN over height and width (axes "
                             "1 and 2) of NHWC tensors")
        x = self._activation(op.inputs[0], op)
        y, out = self._output(op)
        c = x_t.shape[3]
        if tuple(out.shape) == (1, 1, 1, c):
            self._add(op, "global_avg_pool", [x], [y], {})
            return
        pooled = f"{op.name.lower()}_{op.index}/pooled"
        self.tensors[pooled] = Tensor(pooled, (1, 1, 1, c), out.dtype, out.quant)
        self._add(op, "global_avg_pool", [x], [pooled], {})
        self.nodes.append(Node(f"mean_{op.index}_reshape", "reshape", [pooled], [y],
                               {"shape": tuple(self.tensors[y].shape)}, source_ops=["MEAN"]))

    # -- data movement (integers only move: the parameters must carry through)
    def _same_quant(self, op: _Op, ins: list[int], out: _T) -> None:
        for i in ins:
            t = self.ts[i]
            if t.quant is None or out.quant is None or t.dtype != out.dtype or not (
                    np.array_equal(t.quant.scale, out.quant.scale)
                    and np.array_equal(t.quant.zero_point, out.quant.zero_point)):
                raise ModelError(f"{self.source}: {op.where(self.ts)} moves '{t.name}' into '{out.name}' with "
                                 "different quantisation; TFLite's kernel copies integers, so the model is "
                                 "inconsistent")

    def _op_reshape(self, op: _Op) -> None:
        x = self._activation(op.inputs[0], op)
        y, out = self._output(op)
        self._same_quant(op, op.inputs[:1], out)
        self._add(op, "reshape", [x], [y], {"shape": tuple(self.tensors[y].shape)})

    def _op_transpose(self, op: _Op) -> None:
        perm_t = self._constant(op, 1, "permutation")
        x = self._activation(op.inputs[0], op)
        y, out = self._output(op)
        self._same_quant(op, op.inputs[:1], out)
        perm = tuple(int(p) for p in np.asarray(perm_t.data).reshape(-1))
        self._add(op, "transpose", [x], [y], {"perm": perm})

    def _op_concatenation(self, op: _Op) -> None:
        opts = self._options(op, "ConcatenationOptions")
        xs = [self._activation(i, op) for i in op.inputs]
        y, out = self._output(op)
        if opts is not None and int(opts.FusedActivationFunction()) != 0:
            # TFLite's kernel refuses it too (concatenation.cc: activation must be NONE); the IR's
            # concat carries no clamp, so importing it would silently drop the activation
            raise ModelError(f"{self.source}: {op.where(self.ts)} fuses activation "
                             f"{_enum_name(self.tfl.ActivationFunctionType, opts.FusedActivationFunction())}, "
                             "which TFLite's CONCATENATION kernel refuses; write the activation as its own operator")
        axis = (int(opts.Axis()) if opts is not None else 0) % len(out.shape)   # the schema's default: 0
        if out.dtype in ("int8", "int16"):
            # TFLite's int8 kernel refuses operands quantised unlike the output, its int16 kernel copies
            # their integers as they are: either way a rescale would not be the model's result
            self._same_quant(op, op.inputs, out)
        shapes = [self.ts[i].shape for i in op.inputs]
        if any(len(sh) != len(out.shape) or any(a != b for k, (a, b) in enumerate(zip(sh, out.shape)) if k != axis)
               for sh in shapes) or sum(sh[axis] for sh in shapes) != out.shape[axis]:
            raise ModelError(f"{self.source}: {op.where(self.ts)} joins shapes {[list(sh) for sh in shapes]} along "
                             f"axis {axis} into {list(out.shape)}; the model is inconsistent")
        self._add(op, "concat", xs, [y], {"axis": axis})

    def _op_pad(self, op: _Op) -> None:
        pads_t = self._constant(op, 1, "paddings tensor")
        x = self._activation(op.inputs[0], op)
        y, out = self._output(op)
        self._same_quant(op, op.inputs[:1], out)
        assert out.quant is not None
        value = int(out.quant.zero_point)
        if op.name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            value = int(np.asarray(self._constant(op, 2, "constant value").data).reshape(-1)[0])
        pads = tuple((int(lo), int(hi)) for lo, hi in np.asarray(pads_t.data).reshape(-1, 2))
        self._add(op, "pad", [x], [y], {"pads": pads, "value": value})

    _op_padv2 = _op_pad

    def _op_resize(self, op: _Op, mode: str, cls: str) -> None:
        opts = self._options(op, cls)
        self._constant(op, 1, "size tensor")
        x = self._activation(op.inputs[0], op)
        y, out = self._output(op)
        self._same_quant(op, op.inputs[:1], out)
        align = bool(opts.AlignCorners()) if opts is not None else False
        half = bool(opts.HalfPixelCenters()) if opts is not None else False
        (h, w), (oh, ow) = self.ts[op.inputs[0]].shape[1:3], out.shape[1:3]
        # "scale" is the IR's integer factor; TFLite's rules to the output size apply when it is not one
        scale = (oh // h, ow // w) if oh % h == 0 and ow % w == 0 else (max(oh // h, 1), max(ow // w, 1))
        self._add(op, "resize", [x], [y], {"scale": scale, "mode": mode, "align_corners": align,
                                           "half_pixel_centers": half})

    def _op_resize_nearest_neighbor(self, op: _Op) -> None:
        self._op_resize(op, "nearest", "ResizeNearestNeighborOptions")

    def _op_resize_bilinear(self, op: _Op) -> None:
        self._op_resize(op, "bilinear", "ResizeBilinearOptions")


# ---------------------------------------------------------------------------------- helpers
def _enum_name(enum_cls, value: int) -> str:
    for key, v in vars(enum_cls).items():
        if not key.startswith("_") and v == value:
            return key
    return str(value)


def _ir_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def _padding(kind: int, size, kernel, stride, dilation) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """TFLite's ComputePaddingHeightWidth: SAME (0) pads ``total // 2`` before, the rest after."""
    pads, outs = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        effective = (k - 1) * d + 1
        if kind == 0:
            out = -(-n // s)
            total = max((out - 1) * s + effective - n, 0)
            pads.append((total // 2, total - total // 2))
        else:
            out = (n - effective) // s + 1
            pads.append((0, 0))
        outs.append(out)
    return (pads[0][0], pads[0][1], pads[1][0], pads[1][1]), (outs[0], outs[1])


def _activation_range(kind: str, quant: QuantParams | None, dtype: str) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized``: ``zp + round(bound / scale)`` in float32,
    half away from zero, intersected with the dtype's range."""
    info = np.iinfo(dtype)
    assert quant is not None
    scale, zp = np.float32(quant.scale), int(quant.zero_point)

    def q(bound: float) -> int:
        r = np.float32(bound) / scale
        return zp + int(np.trunc(r) + np.copysign(float(abs(r - np.trunc(r)) >= 0.5), r))

    lo, hi = int(info.min), int(info.max)
    if kind == "relu":
        return max(lo, q(0.0)), hi
    if kind == "relu6":
        return max(lo, q(0.0)), min(hi, q(6.0))
    return max(lo, q(-1.0)), min(hi, q(1.0))
