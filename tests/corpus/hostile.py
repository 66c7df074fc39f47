"""Malformed and hostile models, run-time inputs and target files, each with the ``pytest_npu``
error class it must raise and the culprit its message must name.

Models are built with onnx.helper from one valid QDQ convolution (``qdq_conv``), each broken in
one way; ``MODELS`` maps an id to ``(build(folder) -> model path, error class, culprit)``. The
build writes any external-data file next to the model. ``INPUTS`` are bad run-time feeds for the
valid model (or a tf2onnx-style int8 one), ``TARGETS`` bad target files (TOML text).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pytest_npu.errors import InputError, ModelError, TargetError

X_SHAPE = (1, 2, 4, 4)


def _init(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def qdq_conv(*, w_scale=None, w_zp=None, bias=None, weights=None, opset: int = 17, x_type=TensorProto.FLOAT,
             x_shape=X_SHAPE, outputs=("y",), extra_nodes=(), extra_inits=()) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 w), DQ(int32 b)) -> Relu -> Q -> DQ -> y: a valid QDQ model."""
    rng = np.random.default_rng(0)
    w = weights if weights is not None else rng.integers(-60, 60, (3, 2, 3, 3)).astype(np.int8)
    inits = [
        _init("x_s", np.float32(0.02)), _init("x_z", np.int8(3)),
        _init("w", w), _init("w_s", np.full(3, 0.01, np.float32) if w_scale is None else w_scale),
        _init("w_z", np.zeros(3, np.int8) if w_zp is None else w_zp),
        _init("b", np.array([10, -20, 30], np.int32) if bias is None else bias),
        _init("b_s", np.full(3, 0.0002, np.float32)),
        _init("y_s", np.float32(0.05)), _init("y_z", np.int8(-100)), *extra_inits]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"], name="quant_x"),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"], name="dequant_x"),
        helper.make_node("DequantizeLinear", ["w", "w_s", "w_z"], ["wd"], name="dequant_w", axis=0),
        helper.make_node("DequantizeLinear", ["b", "b_s"], ["bd"], name="dequant_b", axis=0),
        helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "y_s", "y_z"], ["yq"], name="quant_y"),
        helper.make_node("DequantizeLinear", ["yq", "y_s", "y_z"], ["y"], name="dequant_y"), *extra_nodes]
    dims = ["N", *x_shape[1:]] if x_shape[0] == 1 else list(x_shape)     # a dynamic batch, or a fixed one
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("x", x_type, dims)], [], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 17) if opset <= 25 else 21)],
                              ir_version=10)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    model.graph.output.extend(inferred[o] for o in outputs)   # as inference types them (the checker wants shapes)
    model.opset_import[0].version = opset
    return model


def _retyped_input(elem_type: int) -> onnx.ModelProto:
    """The graph input declared with another element type, read by a Cast to float."""
    m = qdq_conv()
    m.graph.input[0].type.tensor_type.elem_type = elem_type
    m.graph.input[0].name = "raw"
    m.graph.node.insert(0, helper.make_node("Cast", ["raw"], ["x"], name="cast_in", to=TensorProto.FLOAT))
    return m


def _nan_weights() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    w[1, 0, 1, 1] = np.nan
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="float_conv", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(X_SHAPE))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [_init("w", w)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)


def _inf_gemm() -> onnx.ModelProto:
    return qdq_conv(extra_nodes=[helper.make_node("Flatten", ["y"], ["f"], name="flat"),
                              helper.make_node("MatMul", ["f", "fc_w"], ["z"], name="classifier")],
                    extra_inits=[_init("fc_w", np.ones((48, 4), np.float32) * np.inf)], outputs=("z",))


def _external(folder: Path, *, offset: str, length: str | None = None) -> onnx.ModelProto:
    m = qdq_conv()
    w = next(t for t in m.graph.initializer if t.name == "w")
    (folder / "weights.bin").write_bytes(w.raw_data or numpy_helper.to_array(w).tobytes())
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entries = {"location": "weights.bin", "offset": offset}
    if length is not None:
        entries["length"] = length
    for key, value in entries.items():
        w.external_data.add(key=key, value=value)
    return m


def _dropout_training() -> onnx.ModelProto:
    return qdq_conv(extra_nodes=[helper.make_node("Dropout", ["y", "ratio", "train"], ["z"], name="drop")],
                    extra_inits=[_init("ratio", np.float32(0.5)), _init("train", np.bool_(True))], outputs=("z",))


def _cast_to(elem_type: int, name: str) -> onnx.ModelProto:
    return qdq_conv(extra_nodes=[helper.make_node("Cast", ["y"], ["z"], name=name, to=elem_type)], outputs=("z",))


def _saved(build: Callable[[], onnx.ModelProto]) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "model.onnx"
        path.write_bytes(build().SerializeToString())
        return path
    return write


def _saved_external(**kwargs) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / "model.onnx"
        path.write_bytes(_external(folder, **kwargs).SerializeToString())
        return path
    return write


def _no_outputs() -> onnx.ModelProto:
    m = qdq_conv()
    del m.graph.output[:]
    return m


def _opset(version: int) -> onnx.ModelProto:
    return qdq_conv(opset=version)


def _constant_output() -> onnx.ModelProto:
    return qdq_conv(outputs=("y", "shape_of_x"),
                    extra_nodes=[helper.make_node("Shape", ["y"], ["shape_of_x"], name="shape_node")])


# id -> (write the model into a folder and return its path, error class, culprit named in the message)
MODELS: dict[str, tuple[Callable[[Path], Path], type, str]] = {
    "float16_input": (_saved(lambda: _retyped_input(TensorProto.FLOAT16)), ModelError, "float16"),
    "bfloat16_input": (_saved(lambda: _retyped_input(TensorProto.BFLOAT16)), ModelError, "bfloat16"),
    "float64_input": (_saved(lambda: _retyped_input(TensorProto.DOUBLE)), ModelError, "float64"),
    "int64_input": (_saved(lambda: _retyped_input(TensorProto.INT64)), ModelError, "int64"),
    "bool_input": (_saved(lambda: _retyped_input(TensorProto.BOOL)), ModelError, "'raw' is bool"),
    "uint16_input": (_saved(lambda: _retyped_input(TensorProto.UINT16)), ModelError, "uint16"),
    "uint32_input": (_saved(lambda: _retyped_input(TensorProto.UINT32)), ModelError, "uint32"),
    "string_input": (_saved(lambda: _retyped_input(TensorProto.STRING)), ModelError, "'raw' is string"),
    "float16_inside": (_saved(lambda: _cast_to(TensorProto.FLOAT16, "to_half")), ModelError, "'to_half'"),
    "float8_inside": (_saved(lambda: _cast_to(TensorProto.FLOAT8E4M3FN, "to_fp8")), ModelError, "'to_fp8'"),
    "scale_wrong_length": (_saved(lambda: qdq_conv(w_scale=np.full(2, 0.01, np.float32), w_zp=np.zeros(2, np.int8))),
                           ModelError, "'dequant_w'"),
    "zero_point_wrong_length": (_saved(lambda: qdq_conv(w_zp=np.zeros(2, np.int8))), ModelError, "'dequant_w'"),
    "negative_scale": (_saved(lambda: qdq_conv(w_scale=np.array([0.01, -0.01, 0.01], np.float32))),
                       ModelError, "'w_s'"),
    "nan_scale": (_saved(lambda: qdq_conv(w_scale=np.array([0.01, np.nan, 0.01], np.float32))),
                  ModelError, "'w_s'"),
    "external_negative_offset": (_saved_external(offset="-8"), ModelError, "'w'"),
    "external_offset_past_end": (_saved_external(offset="100000"), ModelError, "'w'"),
    "external_non_numeric_offset": (_saved_external(offset="eight"), ModelError, "'w'"),
    "external_truncated": (_saved_external(offset="0", length="20"), ModelError, "'w'"),
    "opset_99": (_saved(lambda: _opset(99)), ModelError, "opset 99"),
    "no_outputs": (_saved(_no_outputs), ModelError, "no outputs"),
    "nan_weights": (_saved(_nan_weights), ModelError, "'w'"),
    "inf_weights": (_saved(_inf_gemm), ModelError, "'fc_w'"),
    "dropout_training": (_saved(_dropout_training), ModelError, "'drop'"),
    "constant_output": (_saved(_constant_output), ModelError, "'shape_of_x'"),
    "int4_weights": (_saved(lambda: _int4()), ModelError, "'dequant_w'"),
}


def _int4() -> onnx.ModelProto:
    m = qdq_conv(opset=21)
    w = next(t for t in m.graph.initializer if t.name == "w")
    w.CopyFrom(helper.make_tensor("w", TensorProto.INT4, [3, 2, 3, 3], np.zeros(54, np.int8).tolist()))
    z = next(t for t in m.graph.initializer if t.name == "w_z")
    z.CopyFrom(helper.make_tensor("w_z", TensorProto.INT4, [3], [0, 0, 0]))
    return m


def valid_input(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, *X_SHAPE[1:])).astype(np.float32)


# id -> (the feed given to run(), error class, culprit named in the message); the model is qdq_conv()
INPUTS: dict[str, tuple[object, type, str]] = {
    "object_array_of_strings": (np.array(["a", "b"], dtype=object), InputError, "'x'"),
    "unicode_array": (np.array(["cat", "dog"]), InputError, "'x'"),
    "x_labels_tuple": ((valid_input(), np.array([0, 1])), InputError, "'x'"),
    "ragged_list": ([[1.0, 2.0], [3.0]], InputError, "'x'"),
    "wrong_shape": (np.zeros((2, 3, 4, 4), np.float32), InputError, "(1, 2, 4, 4)"),
    "nhwc_instead_of_nchw": (np.zeros((2, 4, 4, 2), np.float32), InputError, "model's layout"),
    "nan_values": (np.full((1, *X_SHAPE[1:]), np.nan, np.float32), InputError, "NaN"),
    "boolean_array": (np.zeros(X_SHAPE, bool), InputError, "boolean"),
    "complex_array": (np.zeros(X_SHAPE, np.complex64), InputError, "complex"),
    "unknown_input_name": ({"x": valid_input(), "extra": valid_input()}, InputError, "'extra'"),
    "missing_input": ({"not_x": valid_input()}, InputError, "'x'"),
}


GOOD_TARGET = Path(__file__).resolve().parents[1] / "fixtures_targets" / "good.toml"


def target_text(key: str, value: str) -> str:
    """``good.toml`` with the line of ``key`` (a dotted ``table.key`` or a top-level key) replaced."""
    table, _, name = key.rpartition(".")
    lines, current = [], ""
    for line in GOOD_TARGET.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[]")
        elif current == table and stripped.split("=")[0].strip() == name:
            line = f"{name} = {value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# id -> (dotted key, value written, culprit named in the message)
TARGETS: dict[str, tuple[str, str, str]] = {
    "cores_1e9": ("cores", "1000000000", "cores"),
    "dma_channels_1e9": ("memory.dma_channels", "1000000000", "memory.dma_channels"),
    "energy_1e308": ("energy.dram_pj_per_byte", "1e308", "energy.dram_pj_per_byte"),
    "static_power_1e308": ("energy.static_mw", "1e308", "energy.static_mw"),
    "clock_1e12": ("clock_mhz", "1e12", "clock_mhz"),
    "sram_petabytes": ("memory.sram_kib", "1e15", "memory.sram_kib"),
    "lanes_1e6": ("core.ofm_lanes", "1000000", "core.ofm_lanes"),
    "overhead_1e12": ("core.overhead_cycles", "1000000000000", "core.overhead_cycles"),
}
TARGET_ERROR = TargetError
