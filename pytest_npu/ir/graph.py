"""The compiler's intermediate representation: a typed, quantised, NHWC dataflow graph.

``ir.from_onnx`` produces it from float, QDQ or QOperator ONNX models, ``ir.from_tflite`` from integer
TFLite flatbuffers; the compiler consumes it.
Conventions (the contract between a front end and the compiler):

* Activations are NHWC with batch 1 (shape ``(1, H, W, C)``), 2-D activations ``(1, K)`` or
  ``(M, K)``; the emulator runs batches in lock-step, so the batch is never part of a program. A
  leading axis of 1 is the batch axis and programs drop it; any other leading size is data.
* A quantised tensor stores integers (``dtype`` int8/uint8/int16/int32) and carries
  :class:`QuantParams`; ``real = (q - zero_point) * scale``. Runtime tensors have a dtype of
  ``npu.isa.DTYPES`` (int8, uint8, int16, int32, float32); a front end refuses any other.
* Constants carry ``data`` already in IR layout (conv weights ``(KH, KW, Cin, Cout)``, depthwise
  ``(KH, KW, C)``, fully-connected ``(K, N)``, bias ``(N,)`` int32 with scale ``s_in * s_w``).
* Node ``op`` is one of :data:`OPS`; ``attrs`` per op are listed there. ``clamp`` (a fused
  Relu/Clip) is ``(lo, hi)`` in the *output's quantised* domain, or absent.
* ``io`` maps every graph input and output to a :class:`Boundary`: how the user's array in the
  source model's own shape, dtype and layout becomes the IR tensor of that name (and back).
  ``CompiledModel.run()`` speaks the model's language through it; ``run_quantized()`` takes and
  returns the IR's integers, in the model's layout. A front end fills one entry per input and
  output; a hand-built graph without entries gets :meth:`Graph.boundary`'s default (IR layout,
  floats quantised with ``input_quant``/``output_quant``). Examples:

  - ONNX QDQ from onnxruntime (float NCHW input, boundary QuantizeLinear folded):
    ``Boundary((1, 3, 32, 32), "float32", perm=(0, 2, 3, 1), quant=<the Q's params>)``;
  - a tf2onnx export (int8 NHWC input, Transpose to NCHW before its DequantizeLinear):
    ``Boundary((1, 32, 32, 3), "int8")`` -- the integers go in as they are, already NHWC;
  - TFLite (int8 NHWC, quant params on the input): ``Boundary((1, 32, 32, 3), "float32",
    quant=<the input's params>)``: ``run()`` quantises floats, ``run_quantized()`` takes int8.

* ``input_quant``/``output_quant`` hold the float boundaries' params (``io[name].quant``) for
  code that reads them directly.
* ``metadata`` from ``from_onnx``: ``opset``; ``batch_blocker`` (why axis 0 is not a batch axis,
  when it is not). ``float_op`` nodes read and write ONNX (NCHW) layout; the importer adds the
  transposes around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# op -> attrs it carries (besides the optional "clamp")
OPS: dict[str, tuple[str, ...]] = {
    "conv2d": ("stride", "dilation", "padding"),            # inputs: x, w, b ; padding=(t,b,l,r)
    "depthwise_conv2d": ("stride", "dilation", "padding"),  # inputs: x, w, b
    "fully_connected": (),                                  # inputs: x (M,K), w (K,N), b (N,)
    "matmul": (),                                           # inputs: a (..,M,K), b (..,K,N) activations
    "add": (), "sub": (), "mul": (), "min": (), "max": (),  # broadcasting binary ops
    "max_pool": ("kernel", "stride", "padding"),
    "avg_pool": ("kernel", "stride", "padding", "count_include_pad"),   # TFLite AVERAGE_POOL_2D: this,
    #   count_include_pad False (even with a whole-input window: its rounding is not MEAN's)
    "global_avg_pool": (),                                  # TFLite MEAN over H, W; ONNX GlobalAveragePool
    "reshape": ("shape",),                                  # pure re-indexing in IR (row-major) order
    "transpose": ("perm",),
    "concat": ("axis",),
    "pad": ("pads", "value"),                               # pads per axis: ((lo, hi), ...)
    "resize": ("scale",),                                   # nearest, integer (sy, sx); optional mode
    #   ("nearest" | "bilinear"), align_corners, half_pixel_centers: TFLite's rules to the output's size
    "softmax": ("axis",),                                   # optional beta (TFLite's SoftmaxOptions)
    "sigmoid": (), "tanh": (), "hardswish": (), "hardsigmoid": ("alpha", "beta"),
    "leaky_relu": ("alpha",), "gelu": (), "relu": (), "clip": ("min", "max"),
    "layernorm": ("axis", "epsilon"),                       # inputs: x, gamma, beta (float consts)
    "rescale": (),                                          # requantise to the output's params
    #   (a float32 input = quantise, a float32 output = dequantise: the boundary of float parts)
    "float_op": ("onnx_op", "onnx_attrs"),                  # unquantised ONNX node, host only
}


@dataclass
class QuantParams:
    scale: np.ndarray          # float32, shape () per-tensor or (C,) per-channel
    zero_point: np.ndarray     # int64, same shape as scale
    dtype: str                 # "int8" | "uint8" | "int16" | "int32"
    axis: int | None = None    # per-channel axis in IR layout
    # how quantize() rounds x / scale: "half_even" (ONNX QuantizeLinear) or "half_away" (TFLite's
    # QUANTIZE, std::round), so a boundary folded from either quantises exactly as its model does
    rounding: str = "half_even"

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim == 1 and self.scale.size > 1

    def quantize(self, real: np.ndarray) -> np.ndarray:
        """``x / scale`` in float32, rounded (see ``rounding``), plus the zero point, saturated."""
        info = np.iinfo(np.dtype(self.dtype))
        r = np.asarray(real, np.float32) / self.scale
        if self.rounding == "half_away":          # in float64, where r + 0.5 is exact for a float32 r
            r = r.astype(np.float64)
            rounded = np.trunc(r + np.copysign(0.5, r))
        else:
            rounded = np.rint(r)
        return np.clip(rounded + self.zero_point, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.int64) - self.zero_point) * self.scale).astype(np.float32)


@dataclass(frozen=True)
class Boundary:
    """How the user's array for one graph input or output maps to the IR tensor of that name.

    ``ir = model_array.transpose(perm)`` (``perm`` None: the same order), then, for a float
    boundary (``quant`` set), ``quant.quantize`` -- outputs go back by ``quant.dequantize`` and
    the inverse permutation. Without ``quant`` the values pass as they are, in ``dtype``.
    """

    shape: tuple[int, ...]                 # the source model's shape of one inference
    dtype: str                             # what run() takes / returns ("float32" when quant maps floats)
    perm: tuple[int, ...] | None = None    # model layout -> IR layout
    quant: QuantParams | None = None       # float boundary: how run() (de)quantises
    batch: bool = True                     # axis 0 (of size 1) stacks independent inferences

    def to_ir(self, x):
        """``(N, *shape)`` model-layout array -> ``(N, *ir_shape)`` (batch-first transpose)."""
        return x if self.perm is None else x.transpose(0, *(p + 1 for p in self.perm))

    def from_ir(self, y):
        """``(N, *ir_shape)`` -> ``(N, *shape)`` in the model's layout."""
        if self.perm is None:
            return y
        inverse = np.argsort(self.perm)
        return np.ascontiguousarray(y.transpose(0, *(int(p) + 1 for p in inverse)))


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str                         # storage dtype; "float32" for unquantised tensors
    quant: QuantParams | None = None
    data: np.ndarray | None = None     # constants only

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class Node:
    name: str                          # the ONNX node's name (synthesised "<OpType>_<i>" if empty)
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    source_ops: list[str] = field(default_factory=list)   # ONNX op types folded into this node


@dataclass
class Graph:
    name: str
    tensors: dict[str, Tensor]
    nodes: list[Node]                  # topologically sorted
    inputs: list[str]
    outputs: list[str]
    input_quant: dict[str, QuantParams] = field(default_factory=dict)
    output_quant: dict[str, QuantParams] = field(default_factory=dict)
    source: str = ""                   # file path or "<bytes>" for messages
    metadata: dict[str, Any] = field(default_factory=dict)
    io: dict[str, Boundary] = field(default_factory=dict)

    def boundary(self, name: str) -> Boundary:
        """The record of graph input/output ``name`` (a default in IR layout if none was filled)."""
        if name in self.io:
            return self.io[name]
        t = self.tensors[name]
        quant = self.input_quant.get(name) if name in self.inputs else self.output_quant.get(name)
        if quant is None and t.dtype != "float32":
            quant = t.quant                # a hand-built graph: run() speaks floats at both ends
        shape = tuple(int(d) for d in t.shape)
        return Boundary(shape, "float32" if quant is not None else t.dtype, None, quant,
                        len(shape) >= 1 and shape[0] == 1)

    def producer(self, tensor: str) -> Node | None:
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]
