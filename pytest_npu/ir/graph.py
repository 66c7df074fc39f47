"""The compiler's intermediate representation: a typed, quantised, NHWC dataflow graph.

``ir.from_onnx`` produces it from float, QDQ or QOperator ONNX models; the compiler consumes it.
Conventions (the contract between import and compile):

* Activations are NHWC with batch 1 (shape ``(1, H, W, C)``), 2-D activations ``(1, K)`` or
  ``(M, K)``; the emulator runs batches in lock-step, so the batch is never part of a program.
* A quantised tensor stores integers (``dtype`` int8/uint8/int16/int32) and carries
  :class:`QuantParams`; ``real = (q - zero_point) * scale``.
* Constants carry ``data`` already in IR layout (conv weights ``(KH, KW, Cin, Cout)``, depthwise
  ``(KH, KW, C)``, fully-connected ``(K, N)``, bias ``(N,)`` int32 with scale ``s_in * s_w``).
* Node ``op`` is one of :data:`OPS`; ``attrs`` per op are listed there. ``clamp`` (a fused
  Relu/Clip) is ``(lo, hi)`` in the *output's quantised* domain, or absent.
* Graph inputs are quantised integer tensors; ``input_quant``/``output_quant`` say how user
  floats map in and out (what the QDQ model's boundary Quantize/DequantizeLinear did).
* ``metadata`` from ``from_onnx``: ``opset``; ``onnx_shapes`` (ONNX shape of each graph input and
  output); ``onnx_to_ir_perm`` (name -> perm with ``ir = onnx_array.transpose(perm)`` for the 4-D
  inputs/outputs). ``float_op`` nodes read and write ONNX (NCHW) layout; the importer adds the
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
    "avg_pool": ("kernel", "stride", "padding", "count_include_pad"),
    "global_avg_pool": (),
    "reshape": ("shape",),                                  # pure re-indexing in IR (row-major) order
    "transpose": ("perm",),
    "concat": ("axis",),
    "pad": ("pads", "value"),                               # pads per axis: ((lo, hi), ...)
    "resize": ("scale",),                                   # nearest, integer (sy, sx)
    "softmax": ("axis",),
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

    @property
    def per_channel(self) -> bool:
        return self.scale.ndim == 1 and self.scale.size > 1

    def quantize(self, real: np.ndarray) -> np.ndarray:
        """Round-half-even and saturate, as ONNX QuantizeLinear."""
        info = np.iinfo(np.dtype(self.dtype))
        q = np.rint(np.asarray(real, np.float32) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((np.asarray(q, np.int64) - self.zero_point) * self.scale).astype(np.float32)


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

    def producer(self, tensor: str) -> Node | None:
        for node in self.nodes:
            if tensor in node.outputs:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]
