"""Malformed and hostile models, run-time inputs and target files: each gets its ``pytest_npu``
error naming the culprit -- through ``compile``/``run``, ``pytest-npu inspect`` and the ``npu``
fixture -- and never a foreign exception. A few that used to go wrong must now simply work."""

from __future__ import annotations

import hostile
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import pytest_npu
from pytest_npu import targets
from pytest_npu.cli import main
from pytest_npu.errors import CompileError, InputError, NpuError


@pytest.mark.parametrize("case", sorted(hostile.MODELS))
def test_model_is_refused_naming_the_culprit(case, tmp_path):
    build, error, culprit = hostile.MODELS[case]
    path = build(tmp_path)
    with pytest.raises(error) as info:
        pytest_npu.compile(path, "u55-256").run(hostile.valid_input())
    assert culprit in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("case", sorted(hostile.MODELS))
def test_inspect_reports_the_same_error(case, tmp_path, capsys):
    build, _, culprit = hostile.MODELS[case]
    path = build(tmp_path)
    assert main(["inspect", str(path), "--target", "u55-256"]) != 0
    err = capsys.readouterr().err
    assert "error:" in err and culprit in err and "Traceback" not in err


@pytest.mark.parametrize("case", sorted(hostile.INPUTS))
def test_bad_runtime_input_is_refused_naming_the_input(case):
    feed, error, culprit = hostile.INPUTS[case]
    compiled = pytest_npu.compile(hostile.qdq_conv(), "u55-256")
    with pytest.raises(error) as info:
        compiled.run(feed)
    assert culprit in str(info.value)


def test_integer_input_of_a_tf2onnx_model_takes_integers_not_floats():
    model = _int8_input_model()
    compiled = pytest_npu.compile(model, "u55-256")
    with pytest.raises(InputError, match=r"'x' is float32; run\(\) takes int8 integers here"):
        compiled.run(np.zeros((1, 4, 4, 2), np.float32))
    with pytest.raises(InputError, match=r"values in \[-200, 5\], outside int8"):
        compiled.run(np.full((1, 4, 4, 2), 5, np.int16) - np.eye(4, dtype=np.int16)[None, :, :, None] * 205)


@pytest.mark.parametrize("case", sorted(hostile.TARGETS))
def test_absurd_target_figures_are_refused_by_key(case, tmp_path):
    key, value, culprit = hostile.TARGETS[case]
    path = tmp_path / "absurd.toml"
    path.write_text(hostile.target_text(key, value))
    with pytest.raises(hostile.TARGET_ERROR) as info:
        targets.load(path)
    assert culprit in str(info.value) and "physically meaningful range" in str(info.value)
    with pytest.raises(hostile.TARGET_ERROR):
        pytest_npu.compile(hostile.qdq_conv(), path)


def test_the_corpus_is_large_enough():
    assert len(hostile.MODELS) + len(hostile.INPUTS) + len(hostile.TARGETS) >= 30


# -- what used to go wrong silently and must now be right ------------------------------------------
def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options).run(None, feeds)


def _int8_input_model() -> onnx.ModelProto:
    """tf2onnx's form: an int8 NHWC input transposed to NCHW before its DequantizeLinear."""
    m = hostile.qdq_conv()
    g = m.graph
    g.node.remove(next(n for n in g.node if n.name == "quant_x"))
    g.node.insert(0, helper.make_node("Transpose", ["x"], ["xq"], name="to_nchw", perm=[0, 3, 1, 2]))
    g.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.INT8, ["N", 4, 4, 2]))
    return m


def test_an_output_listed_twice_is_one_output_computed_on_the_npu():
    m = hostile.qdq_conv(outputs=("y", "y"))
    compiled = pytest_npu.compile(m, "u55-256")
    assert compiled.unsupported() == []
    x = hostile.valid_input()
    assert np.abs(compiled.run(x).outputs["y"] - _ort(m, {"x": x})[0]).max() <= 0.05 + 1e-6   # 1 LSB


@pytest.mark.parametrize("bound", ["min", "max"])
def test_clip_with_one_bound_runs(bound):
    node = helper.make_node("Clip", ["y", "lo", ""] if bound == "min" else ["y", "", "hi"], ["z"], name="clip")
    m = hostile.qdq_conv(extra_nodes=[node], outputs=("z",),
                         extra_inits=[hostile._init("lo", np.float32(0.5)), hostile._init("hi", np.float32(1.0))])
    x = hostile.valid_input()
    np.testing.assert_allclose(pytest_npu.compile(m, "u55-256").run(x).outputs["z"], _ort(m, {"x": x})[0],
                               atol=0.05 + 1e-6)


def test_quantizelinear_output_as_graph_output_is_returned_as_integers():
    m = hostile.qdq_conv()
    m.graph.output[0].CopyFrom(helper.make_tensor_value_info("yq", TensorProto.INT8, ["N", 3, 4, 4]))
    m.graph.node.remove(next(n for n in m.graph.node if n.name == "dequant_y"))
    x = hostile.valid_input()
    got = pytest_npu.compile(m, "u55-256").run(x).outputs["yq"]
    want = _ort(m, {"x": x})[0]
    assert got.dtype == np.int8 and np.abs(got.astype(int) - want).max() <= 1


def test_a_fixed_batch_of_two_runs_on_the_npu():
    m = hostile.qdq_conv(x_shape=(2, *hostile.X_SHAPE[1:]))
    compiled = pytest_npu.compile(m, "u55-256")
    assert compiled.unsupported() == [] and compiled.graph.metadata["model_batch"] == 2
    x = hostile.valid_input(2)
    out = compiled.run(x).outputs["y"]
    assert out.shape == (2, 3, 4, 4) and np.abs(out - _ort(m, {"x": x})[0]).max() <= 0.05 + 1e-6


def test_a_fixed_batch_the_model_mixes_stays_whole():
    """Softmax over axis 0 of a fixed batch of 2: one inference of the whole batch, on the host."""
    sm = helper.make_node("Softmax", ["y", ], ["z"], name="over_batch", axis=0)
    m = hostile.qdq_conv(x_shape=(2, *hostile.X_SHAPE[1:]), extra_nodes=[sm], outputs=("z",))
    compiled = pytest_npu.compile(m, "u55-256")
    assert "model_batch" not in compiled.graph.metadata and not compiled.graph.boundary("x").batch
    x = hostile.valid_input(2)
    np.testing.assert_allclose(compiled.run(x).outputs["z"], _ort(m, {"x": x})[0], atol=1e-6)


def test_softmax_over_a_dynamic_batch_refuses_to_stack_it():
    sm = helper.make_node("Softmax", ["y"], ["z"], name="over_batch", axis=0)
    m = hostile.qdq_conv(extra_nodes=[sm], outputs=("z",))
    compiled = pytest_npu.compile(m, "u55-256")
    with pytest.raises(InputError, match="'over_batch' \\(Softmax\\) computes along axis 0"):
        compiled.run(hostile.valid_input(3))
    one = hostile.valid_input(1)
    np.testing.assert_allclose(compiled.run(one).outputs["z"], _ort(m, {"x": one})[0], atol=1e-6)


def test_a_host_pad_pads_with_the_zero_point():
    """A constant Pad the NPU cannot fold runs on the host: it pads real zeros (the zero point)."""
    pad = helper.make_node("Pad", ["y", "pads"], ["p"], name="pad")
    pool = helper.make_node("AveragePool", ["p"], ["z"], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    m = hostile.qdq_conv(extra_nodes=[pad, pool], outputs=("z",),
                         extra_inits=[hostile._init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))])
    x = hostile.valid_input()
    np.testing.assert_allclose(pytest_npu.compile(m, "u55-256").run(x).outputs["z"], _ort(m, {"x": x})[0],
                               atol=1e-5)


def test_int8_input_model_runs_its_integers_as_they_are():
    m = _int8_input_model()
    compiled = pytest_npu.compile(m, "u55-256")
    b = compiled.graph.boundary("x")
    assert (b.shape, b.dtype, b.perm) == ((1, 4, 4, 2), "int8", None)
    x = np.random.default_rng(3).integers(-128, 128, (5, 4, 4, 2)).astype(np.int8)
    got, want = compiled.run(x).outputs["y"], _ort(m, {"x": x})[0]
    assert np.abs(got - want).max() <= 0.05 + 1e-6


def test_npu_fixture_reports_hostile_models_and_runs_external_data(pytester, tmp_path):
    """Through the ``npu`` fixture: a refused model fails its test with the culprit named, and
    a valid model whose weights sit in an external-data file beside it runs."""
    folder = pytester.path
    cases = {}
    for case in ("float16_input", "opset_99", "external_negative_offset", "nan_weights"):
        sub = folder / case
        sub.mkdir()
        cases[case] = (str(hostile.MODELS[case][0](sub)), hostile.MODELS[case][2])
    good = folder / "good"
    good.mkdir()
    m = hostile.qdq_conv()
    onnx.save_model(m, str(good / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.weights", size_threshold=0)
    pytester.makepyfile(test_models=f"""
import numpy as np, pytest
from pytest_npu.errors import NpuError
CASES = {cases!r}

@pytest.mark.parametrize("case", sorted(CASES))
def test_refused(npu, case):
    path, culprit = CASES[case]
    with pytest.raises(NpuError) as info:
        npu.run(path, np.zeros((1, 2, 4, 4), np.float32))
    assert culprit in str(info.value)

def test_external_data(npu):
    result = npu.run({str(good / "model.onnx")!r}, np.zeros((2, 2, 4, 4), np.float32))
    assert result.outputs["y"].shape == (2, 3, 4, 4)

def test_object_feed(npu):
    with pytest.raises(NpuError, match="'x'"):
        npu.run({str(good / "model.onnx")!r}, np.array(["a"], dtype=object))
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--npu-target=u55-256", "--npu-no-baseline")
    result.assert_outcomes(passed=len(cases) + 2)


def test_errors_are_npu_errors():
    assert issubclass(InputError, CompileError) and issubclass(CompileError, NpuError)
