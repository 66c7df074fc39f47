"""int16 element-wise add/sub run on the NPU with a left shift that keeps TOSA's int32 ranges."""

from __future__ import annotations

import numpy as np
import pytest
from models import Builder, assert_matches_ort, inputs_for, ort_run, quantize

import pytest_npu.compiler as compiler
from pytest_npu import targets
from pytest_npu.npu.program import Program


def _residual_model():
    """x + conv(x) -> (y - conv(y)) -> 1x1 conv, QDQ with int16 activations (opset 21).

    Short on purpose: with double rounding each layer may differ from ORT's float QDQ by an LSB
    that the next layer's gain multiplies; the add itself is exact to 2**-14 of an input LSB."""
    b = Builder((1, 4, 8, 8), seed=3).residual(relu=False).binary("Sub").conv(4, k=1, pad=0)
    return quantize(b.model(), b.input_shape, activation="int16"), b.input_shape


@pytest.mark.parametrize("target", targets.available())
def test_int16_residual_add_and_sub_run_on_the_npu_matching_onnxruntime(target):
    q, shape = _residual_model()
    cm = compiler.compile(q, target)
    assert not cm.unsupported(), cm.unsupported()
    adds = [i for i in cm.program.instructions if i.opcode == "ELEMENTWISE"]
    assert {i.op for i in adds} == {"add", "sub"}
    assert all(i.a.dtype == i.b.dtype == i.ofm.dtype == "int16" for i in adds)
    # |x - zp| < 2**16 and input multipliers <= 0.5: apply_scale_32 needs the shifted value < 2**30
    assert {i.left_shift for i in adds} == {14}
    x = inputs_for(shape, 4, 0)
    ex = cm.run(x)
    (name,) = cm.program.outputs
    assert_matches_ort(ex.outputs[name], ort_run(q, x), float(cm.graph.output_quant[name].scale))


def test_int8_adds_keep_tflites_left_shift_of_20():
    b = Builder((1, 4, 8, 8), seed=3).conv(8).residual(relu=False).conv(4, k=1, pad=0)
    cm = compiler.compile(quantize(b.model(), b.input_shape), "u55-128")
    (add,) = [i for i in cm.program.instructions if i.opcode == "ELEMENTWISE"]
    assert add.left_shift == 20 and add.a.dtype == "int8"


def test_left_shift_survives_save_and_load(tmp_path):
    q, shape = _residual_model()
    cm = compiler.compile(q, "u55-256")
    loaded = Program.load(cm.program.save(tmp_path / "int16.npuprog"))
    shifts = [i.left_shift for i in loaded.instructions if i.opcode == "ELEMENTWISE"]
    assert shifts == [i.left_shift for i in cm.program.instructions if i.opcode == "ELEMENTWISE"]
    assert set(shifts) == {14}
    x = {cm.program.inputs[0]: np.zeros((1, *cm.program.tensors[cm.program.inputs[0]].shape), np.int16)}
    np.testing.assert_array_equal(cm.emulator.run(loaded, x).outputs[cm.program.outputs[0]],
                                  cm.emulator.run(cm.program, x).outputs[cm.program.outputs[0]])
