"""Models the quantiser left partly in float compile: float32 tensors live in DRAM, HOST
instructions handle them, and the report says why each such layer ran on the host."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from models import Builder, inputs_for, lsb_diff, ort_run, quantize
from onnx.reference import ReferenceEvaluator

import pytest_npu.compiler as compiler
from pytest_npu import targets
from pytest_npu.errors import CompileError, InputError
from pytest_npu.npu.cost import instruction_cost
from pytest_npu.npu.program import Program

TARGETS = targets.available()


def _float_ends():
    """Sub (float head: the input is float) -> convs -> FC -> Tanh: ORT's quantiser quantises
    neither the leading Sub nor the final Tanh, so both ends of the graph stay float32."""
    b = Builder((1, 3, 8, 8), seed=1).binary("Sub", "channel").conv(4).conv(4).flatten().fc(6).act("Tanh")
    return quantize(b.model(), b.input_shape), b.input_shape


def _assert_float_stays_on_the_host(cm):
    for ins in cm.program.instructions:
        if ins.opcode != "HOST":
            assert all(op.dtype != "float32" for op in ins.operands().values()), ins
    floats = [t for t in cm.program.tensors.values() if t.dtype == "float32"]
    assert floats and all(t.mem == "dram" for t in floats)


@pytest.mark.parametrize("target", TARGETS)
def test_float_head_and_tail_compile_and_match_onnxruntime(target):
    q, shape = _float_ends()
    cm = compiler.compile(q, target)
    host = {op: reason for _, op, reason in cm.unsupported()}
    assert set(host) == {"sub", "rescale", "tanh"}, host
    assert all(reason.startswith("float32 tensor: not quantised") for reason in host.values())
    assert {s.op for s in cm.steps if s.where == "npu"} >= {"conv2d", "fully_connected"}
    _assert_float_stays_on_the_host(cm)
    assert cm.program.tensors[cm.program.inputs[0]].dtype == "float32"
    x = inputs_for(shape, 4, 0)
    ex = cm.run(x)
    (name,) = cm.program.outputs
    got = ex.outputs[name]
    assert got.dtype == np.float32 and got.shape == (4, 6)
    # the last quantised tensor (the FC output) may differ by an LSB (double rounding targets);
    # tanh' <= 1, so the float output is within 2 of those LSBs
    (fc,) = [n for n in cm.graph.nodes if n.op == "fully_connected"]
    fc_scale = float(cm.graph.tensors[fc.outputs[0]].quant.scale)
    assert lsb_diff(got, ort_run(q, x), fc_scale).max() <= 2
    if cm.target.rounding == "single":
        np.testing.assert_allclose(got, ort_run(q, x), atol=1e-6)
    assert "float32 tensor: not quantised" in cm.report()


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    """onnxruntime.quantization.quantize_dynamic: uint8 activations whose scale is computed per
    inference (DynamicQuantizeLinear), ConvInteger / MatMulInteger, float rescaling in between."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    b = Builder((1, 3, 8, 8), seed=2).conv(6).conv(6, group=3).flatten().fc(5)
    folder = tmp_path_factory.mktemp("dynamic")
    onnx.save(b.model(), folder / "float.onnx")
    quantize_dynamic(str(folder / "float.onnx"), str(folder / "dynamic.onnx"), weight_type=QuantType.QInt8)
    return onnx.load(str(folder / "dynamic.onnx")), b.input_shape


@pytest.mark.parametrize("target", TARGETS)
def test_dynamically_quantised_model_compiles_and_matches_the_reference(dynamic_model, target):
    q, shape = dynamic_model
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= {n.op_type for n in q.graph.node}
    cm = compiler.compile(q, target)
    reasons = [reason for _, _, reason in cm.unsupported()]
    assert reasons and all("not quantised" in r for r in reasons)
    assert any(r.startswith("uint8 tensor: not quantised") for r in reasons)
    _assert_float_stays_on_the_host(cm)
    x = inputs_for(shape, 3, 1)
    with pytest.raises(InputError, match="DynamicQuantizeLinear"):     # one scale over a batch of 3
        cm.run(x)
    got = cm.run(x[:, None]).outputs[cm.program.outputs[0]][:, 0]      # 3 inferences of batch 1
    # ONNX's definition, one inference at a time (DynamicQuantizeLinear's scale is per inference;
    # onnxruntime's x86 ConvInteger saturates int16 pair sums, the reference evaluator does not)
    ref = ReferenceEvaluator(q)
    want = np.concatenate([ref.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # each run of consecutive HOST instructions pays the hand-over overhead once
    program, trace = cm.program.instructions, cm.emulator.timing(cm.program).trace
    saved = [instruction_cost(cm.target, ins).cycles - trace[k].cycles
             for k, ins in enumerate(program) if ins.opcode == "HOST"]
    continuing = [k > 0 and program[k - 1].opcode == "HOST" for k, ins in enumerate(program) if ins.opcode == "HOST"]
    overhead = cm.target.host_overhead_us * cm.target.clock_mhz
    assert any(continuing)
    assert all(abs(cut - (overhead if cont else 0)) <= 1 for cut, cont in zip(saved, continuing))


def test_dynamic_program_survives_save_and_load(dynamic_model, tmp_path):
    q, shape = dynamic_model
    cm = compiler.compile(q, "u55-128")
    loaded = Program.load(cm.program.save(tmp_path / "dynamic.npuprog"))
    x = {cm.program.inputs[0]: inputs_for(shape, 2, 3).transpose(0, 2, 3, 1)}
    name = cm.program.outputs[0]
    np.testing.assert_array_equal(cm.emulator.run(loaded, x).outputs[name],
                                  cm.emulator.run(cm.program, x).outputs[name])


def test_float_parts_refused_on_a_target_without_host_fallback():
    q, _ = _float_ends()
    with pytest.raises(CompileError, match=r"float32 tensor: not quantised.*fallback"):
        compiler.compile(q, "u55-128", fallback="error")
