"""What a compression step bought: parameters, MACs and bytes of an ONNX model, and its outputs.

Counted on the ONNX graph rather than the torch module so float, pruned and quantised models are
measured by the same rule (BatchNorm folded, quantised weights at their stored width).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from pytest_npu.errors import CompressionError

# op type -> input positions holding a scale or zero point (not parameters of the network)
_QUANT_META_INPUTS = {
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2),
    "ConvInteger": (2, 3), "MatMulInteger": (2, 3), "DynamicQuantizeLinear": (),
}
_SESSION_CACHE: OrderedDict[bytes, Any] = OrderedDict()
_SESSIONS_KEPT = 4


@dataclass(frozen=True)
class ModelStats:
    params: int          # weight and bias elements (scales, zero points, shape constants excluded)
    nonzero: int         # of which non-zero (what unstructured pruning removes)
    macs: int            # multiply-accumulates for one inference (batch 1)
    weight_bytes: int    # the counted parameters at their stored width (int8 weights: 1 byte each)
    onnx_bytes: int      # serialised ONNX size (graph structure and names included)

    @property
    def size_kib(self) -> float:
        """Model size as compression changes it: weights at their stored width."""
        return self.weight_bytes / 1024

    @property
    def onnx_kib(self) -> float:
        return self.onnx_bytes / 1024


def as_model_proto(model: Any, argument: str = "model") -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise CompressionError(f"{argument}: ONNX file {path} does not exist")
        try:
            return onnx.load(str(path))
        except Exception as exc:
            raise CompressionError(f"{argument}: {path} is not a readable ONNX model ({exc})") from exc
    raise CompressionError(f"{argument}: expected a torch.nn.Module, an ONNX ModelProto, bytes or a path to "
                           f".onnx, got {type(model).__name__}")


def _with_batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    del fixed.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(fixed)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for value in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    try:
        out = shapes[node.output[0]]
        if node.op_type in ("Conv", "ConvInteger"):
            w = shapes[node.input[1]]             # (Cout, Cin/groups, kh, kw)
            return int(np.prod(out)) * int(np.prod(w[1:]))
        if node.op_type in ("MatMul", "MatMulInteger"):
            return int(np.prod(out)) * shapes[node.input[0]][-1]
        if node.op_type == "Gemm":
            a = shapes[node.input[0]]
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            return int(np.prod(out)) * (a[0] if trans_a else a[-1])
    except KeyError:
        raise CompressionError(
            f"cannot count MACs of node {node.name or node.op_type!r}: ONNX shape inference left a shape "
            "unknown; export the model with static shapes apart from the batch axis") from None
    return 0


def onnx_stats(model: Any) -> ModelStats:
    proto = as_model_proto(model)
    meta = {node.input[i] for node in proto.graph.node
            for i in _QUANT_META_INPUTS.get(node.op_type, ()) if i < len(node.input)}
    params = nonzero = weight_bytes = 0
    for init in proto.graph.initializer:
        if init.name in meta or init.data_type == onnx.TensorProto.INT64 or len(init.dims) == 0:
            continue
        array = numpy_helper.to_array(init)
        params += array.size
        nonzero += int(np.count_nonzero(array))
        weight_bytes += array.nbytes
    shapes = _shapes(_with_batch_one(proto))
    macs = sum(_node_macs(node, shapes) for node in proto.graph.node)
    return ModelStats(params, nonzero, macs, weight_bytes, proto.ByteSize())


def run_onnx(model: Any, x: np.ndarray, batch_size: int = 512, optimize: bool = False) -> np.ndarray:
    """The model's first output on ``x`` (onnxruntime, CPU), batched to bound memory.

    Graph optimisations are off by default: ORT then computes QDQ models by the ONNX semantics
    (dequantise, float op, quantise), which is what the NPU implements.  With ``optimize=True`` ORT
    fuses int8 kernels that requantise their own way; on the digits int8 model their logits differ
    from the QDQ semantics by up to 2.1 (26 quanta) and 0.3 % of top-1 decisions flip, so figures
    measured that way would not describe the compressed model the NPU runs.
    """
    import onnxruntime as ort

    proto = as_model_proto(model)
    key = proto.SerializeToString() + bytes([optimize])
    session = _SESSION_CACHE.get(key)
    if session is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(key[:-1], options, providers=["CPUExecutionProvider"])
        _SESSION_CACHE[key] = session
        while len(_SESSION_CACHE) > _SESSIONS_KEPT:    # models are re-created step after step
            _SESSION_CACHE.popitem(last=False)
    else:
        _SESSION_CACHE.move_to_end(key)
    name = session.get_inputs()[0].name
    fixed = session.get_inputs()[0].shape[0]
    step = fixed if isinstance(fixed, int) and fixed > 0 else batch_size
    outs = [session.run(None, {name: x[i:i + step]})[0] for i in range(0, len(x), step)]
    return np.concatenate(outs, axis=0)
