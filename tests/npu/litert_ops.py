"""One-operator TFLite models, built in pure Python, run by LiteRT's reference kernels, and the
same operator as a pytest-npu IR graph.

``ai_edge_litert`` ships TFLite's flatbuffer schema with its object API, so a test can write a
``.tflite`` with any quantisation parameters it draws (no TensorFlow, no converter, no fixture
files) and ask ``OpResolverType.BUILTIN_REF`` -- the reference kernels TFLite Micro and Ethos-U
follow -- what the operator computes. Each ``Case`` pairs that model with the IR graph the
compiler takes (NHWC, batch 1; IR layouts of weights), so a test compiles the graph, runs the
emulator and compares with LiteRT for equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ai_edge_litert.interpreter as _interpreter
import ai_edge_litert.schema_py_generated as S
import flatbuffers
import numpy as np

from pytest_npu.ir.graph import Graph, Node, QuantParams, Tensor

OP = S.BuiltinOperator
OPTIONS = S.BuiltinOptions
ACT = {"none": S.ActivationFunctionType.NONE, "relu": S.ActivationFunctionType.RELU,
       "relu6": S.ActivationFunctionType.RELU6}
_TYPES = {"int8": S.TensorType.INT8, "int16": S.TensorType.INT16, "int32": S.TensorType.INT32,
          "float32": S.TensorType.FLOAT32,
          "int64": S.TensorType.INT64}


@dataclass
class T:
    """A tensor of the one-operator model: TFLite shape and layout, data for constants."""

    shape: tuple[int, ...]
    dtype: str
    scale: object = None           # float, or a list for per-channel quantisation
    zero_point: object = 0
    data: np.ndarray | None = None
    axis: int = 0


@dataclass
class Case:
    """One operator: the ``.tflite`` bytes, the IR graph, and the int inputs to feed (batch first)."""

    name: str
    model: bytes
    graph: Graph
    inputs: list[np.ndarray] = field(default_factory=list)


@dataclass
class Op:
    """One operator of a multi-operator model: tensor indices into ``tflite_graph``'s list (-1: an
    omitted optional input)."""

    code: int
    inputs: list[int]
    outputs: list[int]
    options_type: int = 0
    options: object = None


def tflite_graph(tensors: list[T], operators: list[Op], inputs: list[int], outputs: list[int]) -> bytes:
    """A model of several operators over ``tensors``, in the order given (topological).

    Activations are written with batch 1, as converters write them (the importer takes axis 0 of
    size 1 as the batch); :func:`run_reference` resizes the inputs to the batch it is given."""
    buffers = [S.BufferT()]
    written = []
    for t in tensors:
        tt = S.TensorT()
        shape = list(t.shape) if t.data is not None or not t.shape else [1, *t.shape[1:]]
        tt.shape, tt.type, tt.name = shape, _TYPES[t.dtype], f"t{len(written)}"
        if t.scale is not None:
            q = S.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(t.scale)]
            q.zeroPoint = [int(z) for z in np.broadcast_to(np.atleast_1d(t.zero_point), (len(q.scale),))]
            q.quantizedDimension = t.axis
            tt.quantization = q
        tt.buffer = 0
        if t.data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(t.data).tobytes(), np.uint8)
            buffers.append(b)
            tt.buffer = len(buffers) - 1
        written.append(tt)
    codes: list[int] = []
    sg = S.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = written, list(inputs), list(outputs), []
    for op in operators:
        if op.code not in codes:
            codes.append(op.code)
        operator = S.OperatorT()
        operator.opcodeIndex, operator.inputs, operator.outputs = codes.index(op.code), list(op.inputs), list(op.outputs)
        operator.builtinOptionsType, operator.builtinOptions = op.options_type, op.options
        sg.operators.append(operator)
    model = S.ModelT()
    model.operatorCodes = []
    for c in codes:
        code = S.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = c, min(c, 127), 1
        model.operatorCodes.append(code)
    model.version, model.subgraphs, model.buffers = 3, [sg], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_model(op: int, inputs: list[T | None], outputs: list[T], options_type: int = 0, options=None) -> bytes:
    """A one-operator model; ``None`` in ``inputs`` is an omitted optional input (-1)."""
    tensors = [t for t in [*inputs, *outputs] if t is not None]
    index, operator_inputs = 0, []
    for t in inputs:
        operator_inputs.append(-1 if t is None else index)
        index += t is not None
    outs = list(range(len(tensors) - len(outputs), len(tensors)))
    graph_inputs = [i for i, t in zip(operator_inputs, inputs) if t is not None and t.data is None]
    return tflite_graph(tensors, [Op(op, operator_inputs, outs, options_type, options)], graph_inputs, outs)


def run_reference(model: bytes, *arrays: np.ndarray) -> np.ndarray:
    """LiteRT's reference kernels (BUILTIN_REF) on ``arrays`` (the model's own shapes)."""
    it = _interpreter.Interpreter(model_content=model,
                                  experimental_op_resolver_type=_interpreter.OpResolverType.BUILTIN_REF)
    for detail, array in zip(it.get_input_details(), arrays):
        if tuple(detail["shape"]) != array.shape:
            it.resize_tensor_input(detail["index"], list(array.shape))
    it.allocate_tensors()
    for detail, array in zip(it.get_input_details(), arrays):
        it.set_tensor(detail["index"], array)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


# ------------------------------------------------------------------------------------------ helpers
def f32(x: float) -> float:
    """A scale as TFLite stores it (float32)."""
    return float(np.float32(x))


def qp(scale, zero_point, dtype: str, axis: int | None = None) -> QuantParams:
    scale = np.asarray(scale, np.float32)
    return QuantParams(scale, np.broadcast_to(np.asarray(zero_point, np.int64), scale.shape).copy(), dtype, axis)


def act_clamp(activation: str, scale: float, zp: int, dtype: str = "int8") -> tuple[int, int] | None:
    """TFLite's ``CalculateActivationRangeQuantized``: ``zp + round(bound / scale)`` (float32,
    half away from zero), intersected with the dtype."""
    if activation == "none":
        return None
    info = np.iinfo(dtype)

    def q(bound: float) -> int:
        r = np.float32(bound) / np.float32(scale)
        return zp + int(np.trunc(r) + np.copysign(abs(r - np.trunc(r)) >= 0.5, r))
    lo = max(int(info.min), q(0.0))
    hi = int(info.max) if activation == "relu" else min(int(info.max), q(6.0))
    return lo, hi


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """TFLite SAME: (output size, pad before, pad after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return out, total // 2, total - total // 2


def single_node_graph(name: str, op: str, tensors: dict[str, Tensor], inputs: list[str], outputs: list[str],
                      attrs: dict | None = None) -> Graph:
    graph_inputs = [n for n in inputs if n and not tensors[n].is_constant]
    return Graph(name, tensors, [Node(name, op, list(inputs), list(outputs), dict(attrs or {}))],
                 graph_inputs, list(outputs),
                 input_quant={n: tensors[n].quant for n in graph_inputs},
                 output_quant={n: tensors[n].quant for n in outputs}, source=f"<{name}>")
