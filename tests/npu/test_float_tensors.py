"""float32 tensors: only HOST instructions touch them; the host runs dynamic-quantisation operators
(DynamicQuantizeLinear per inference, ConvInteger / MatMulInteger exactly) and fused clamps."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from pytest_npu.errors import EmulatorFault
from pytest_npu.npu import Emulator, host
from pytest_npu.npu.isa import DmaIn, Elementwise, HostOp
from pytest_npu.npu.program import ProgramBuilder
from pytest_npu.npu.requant import requant_for

INT8 = {"scale": [0.05], "zero_point": [-3], "dtype": "int8", "axis": None}


def _fault(target, program, inputs):
    with pytest.raises(EmulatorFault) as info:
        Emulator(target).run(program, inputs)
    return info.value


def test_npu_engines_refuse_float_operands(u55):
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, y = b.sram("x", (4, 8), "float32"), b.sram("y", (4, 8), "float32")
    b.emit(Elementwise(x, x, y, op="add", requant=requant_for(np.array([1.0]), 1.0, 0, "int8"), layer="add"))
    fault = _fault(u55, b.build(), {})
    assert fault.kind == "unsupported" and fault.index == 0 and fault.operand == "a"
    assert "float32" in str(fault) and "HOST" in str(fault)

    b = ProgramBuilder(u55.name, u55.content_hash())
    src = b.input("x", (4, 8), "float32")
    b.emit(DmaIn(src, b.sram("x.s", (4, 8), "float32"), layer="copy"))
    fault = _fault(u55, b.build(), {"x": np.zeros((1, 4, 8), np.float32)})
    assert fault.kind == "unsupported" and fault.operand == "src"


def test_host_runs_a_float_tail_quantise_and_dequantise(u55):
    """float input -> quantise (host rescale) -> tanh on the dequantised ints -> float output."""
    b = ProgramBuilder(u55.name, u55.content_hash())
    x, q, y = b.input("x", (3, 5), "float32"), b.dram("q", (3, 5)), b.output("y", (3, 5), "float32")
    b.emit(HostOp("rescale", (x,), (q,), attrs={"in_quant": [None], "out_quant": [INT8]}, layer="quantise"))
    b.emit(HostOp("tanh", (q,), (y,), attrs={"in_quant": [INT8], "out_quant": [None]}, deps=(0,), layer="tanh"))
    xs = np.random.default_rng(0).normal(0, 3, (4, 3, 5)).astype(np.float32)
    run = Emulator(u55).run(b.build(), {"x": xs})
    ints = np.clip(np.rint(xs / np.float32(0.05)) - 3, -128, 127)
    np.testing.assert_allclose(run.outputs["y"], np.tanh((ints + 3) * np.float32(0.05)), rtol=1e-6, atol=1e-7)
    assert run.outputs["y"].dtype == np.float32
    # one hand-over for the two consecutive host instructions
    assert run.summary.host_cycles < 2 * u55.host_overhead_us * u55.clock_mhz
    assert run.trace[1].cycles < u55.host_overhead_us * u55.clock_mhz <= run.trace[0].cycles


def test_host_applies_fused_clamps():
    x = np.arange(-40, 40, dtype=np.int8).reshape(1, 8, 10)
    relu = {"in_quant": [INT8, INT8], "out_quant": [INT8], "clamp": [-3, None]}
    out = host.execute("add", relu, [x, x])[0]
    np.testing.assert_array_equal(out, np.maximum(2 * x.astype(np.int64) + 3, -3))   # ReLU at zp -3
    floats = host.execute("add", {"in_quant": [None, None], "out_quant": [None], "clamp": [0.0, 6.0]},
                          [x.astype(np.float32), x.astype(np.float32)])[0]
    np.testing.assert_array_equal(floats, np.clip(2.0 * x, 0, 6).astype(np.float32))


def test_dynamic_quantize_linear_sees_one_inference_at_a_time():
    xs = np.stack([np.linspace(-1, 1, 6, dtype=np.float32), np.linspace(-8, 2, 6, dtype=np.float32)])
    attrs = {"onnx_op": "DynamicQuantizeLinear", "onnx_attrs": {}, "opset": 17, "in_quant": [None],
             "out_quant": [None, None, None], "onnx_shapes": {"in": [[1, 6]], "out": [[1, 6], [], []]}}
    y, scale, zp = host.execute("float_op", attrs, [xs])
    assert y.dtype == np.uint8 and scale.shape == (2,) and zp.dtype == np.uint8
    np.testing.assert_allclose(scale, [2 / 255, 10 / 255], rtol=1e-6)    # each sample's own range
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    model = helper.make_model(helper.make_graph(
        [node], "dq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info(n, 0, None) for n in "ysz"]))
    for n in range(2):
        want = ReferenceEvaluator(model).run(None, {"x": xs[n:n + 1]})
        np.testing.assert_array_equal(y[n], want[0][0])
        assert zp[n] == want[2]


def _reference(op_type, feeds, **attrs):
    names = list(feeds)
    node = helper.make_node(op_type, names, ["out"], **attrs)
    model = helper.make_model(helper.make_graph(
        [node], op_type, [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                          for n, v in feeds.items()], [helper.make_tensor_value_info("out", 0, None)]),
        opset_imports=[helper.make_opsetid("", 17)])
    return ReferenceEvaluator(model).run(None, feeds)[0]


@pytest.mark.parametrize("attrs", [
    {"pads": [1, 1, 1, 1], "group": 2},
    {"strides": [2, 2], "pads": [0, 1, 2, 0], "dilations": [1, 2]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 1]},
])
def test_conv_integer_is_exact_with_full_range_weights(attrs):
    """Full-range uint8 x int8 pair sums overflow int16 (ORT's x86 u8s8 kernel saturates them, see
    tests/ir/test_real_models.py); the host computes ONNX's definition, as the reference evaluator does."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (1, 4, 7, 6), dtype=np.uint8)
    w = rng.choice(np.array([-128, 127], np.int8), (6, 4 // attrs.get("group", 1), 3, 3))
    feeds = {"x": x, "w": w, "x_zp": np.uint8(7), "w_zp": np.int8(0)}
    want = _reference("ConvInteger", feeds, **attrs)
    got = host.execute("float_op", {"onnx_op": "ConvInteger", "onnx_attrs": attrs, "in_quant": [None] * 4,
                                    "out_quant": [None]}, list(feeds.values()))
    assert got[0].dtype == np.int32
    np.testing.assert_array_equal(got[0], want)


def test_matmul_integer_is_exact():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (1, 5, 40), dtype=np.uint8)
    b = rng.choice(np.array([-128, 127], np.int8), (40, 3))
    feeds = {"a": a, "b": b, "a_zp": np.uint8(200), "b_zp": np.int8(-2)}
    got = host.execute("float_op", {"onnx_op": "MatMulInteger", "onnx_attrs": {}, "in_quant": [None] * 4,
                                    "out_quant": [None]}, list(feeds.values()))[0]
    np.testing.assert_array_equal(got, _reference("MatMulInteger", feeds))
    assert host.count_ops("float_op", {"onnx_op": "MatMulInteger"}, [(5, 40), (40, 3)], [(5, 3)]) >= 2 * 40 * 15


def test_float_operands_cost_no_quantisation():
    shapes = [(4, 10)]
    quantised = host.count_ops("tanh", {"in_quant": [INT8], "out_quant": [INT8]}, shapes, shapes)
    floats = host.count_ops("tanh", {"in_quant": [None], "out_quant": [None]}, shapes, shapes)
    assert quantised - floats == (host.DEQUANTIZE_OPS + host.QUANTIZE_OPS) * 40
    cast = host.count_ops("float_op", {"onnx_op": "Cast", "in_quant": [None], "out_quant": [None]}, shapes, shapes)
    assert cast == 40 < floats
