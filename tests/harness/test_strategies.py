"""pytest_npu.strategies: shapes and ranges come from the model, bounds are respected, errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from pytest_npu.errors import ModelError
from pytest_npu.strategies import inputs_for, quant_params


def _input_range(qdq_path):
    """The real range of the QDQ model's input quantiser, read independently of strategies.py."""
    import onnx

    model = onnx.load(qdq_path)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    scale, zero = float(consts[node.input[1]]), int(consts[node.input[2]])
    return (-128 - zero) * scale, (127 - zero) * scale


def test_inputs_follow_the_onnx_signature_and_the_calibration_range(tiny_models, tiny_calibration):
    strategy = inputs_for(tiny_models["qdq"], batch=3, calibration=tiny_calibration)
    lo, hi = float(tiny_calibration.min()), float(tiny_calibration.max())

    @settings(max_examples=30, deadline=None, database=None)
    @given(strategy)
    def check(x):
        assert x.shape == (3, 1, 4, 4) and x.dtype == np.float32
        assert np.isfinite(x).all() and lo <= x.min() and x.max() <= hi

    check()


def test_dtype_range_is_what_the_input_quantiser_can_represent(tiny_models):
    lo, hi = _input_range(tiny_models["qdq"])

    @settings(max_examples=30, deadline=None, database=None)
    @given(inputs_for(tiny_models["qdq"], within="dtype"), inputs_for(tiny_models["qdq"], within=(-2.5, 0.5)))
    def check(x, y):
        assert lo <= x.min() and x.max() <= hi and x.shape == (1, 1, 4, 4)
        assert -2.5 <= y.min() and y.max() <= 0.5

    check()


def test_pairs_use_the_quantised_side_and_several_inputs_give_dicts(tmp_path, tiny_models):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["N", 2])])
    two = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])

    @settings(max_examples=10, deadline=None, database=None)
    @given(inputs_for(two, batch=2, within=(0, 1)),
           inputs_for((tiny_models["qdq"], tiny_models["float"]), within="dtype"))
    def check(feeds, x):
        assert sorted(feeds) == ["a", "b"] and feeds["a"].shape == (2, 2)
        assert x.shape == (1, 1, 4, 4)

    check()
    onnx.save(two, tmp_path / "two.onnx")
    with pytest.raises(ModelError, match="two.onnx.*within='dtype' needs a quantised model whose input 'a'"):
        inputs_for(tmp_path / "two.onnx", within="dtype")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "within='calibration' needs calibration="),
    ({"within": "everything"}, "within='everything' is not one of"),
    ({"within": (1.0, 0.0)}, r"input range \(1.0, 0.0\) for 'x' is not a finite interval"),
    ({"batch": 0, "within": "dtype"}, "batch must be a positive int, got 0"),
])
def test_bad_arguments_name_the_model_and_the_fix(tiny_models, kwargs, message):
    with pytest.raises(ModelError, match=message):
        inputs_for(tiny_models["qdq"], **kwargs)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["int8", "uint8", "int16"]))
def test_quant_params_are_valid_for_their_dtype(data, dtype):
    info = np.iinfo(dtype)
    scale, zero_point = data.draw(quant_params(dtype))
    assert 2.0 ** -12 <= scale <= 1.0 and info.min <= zero_point <= info.max
    if dtype == "int16":
        assert zero_point == 0
    scales, zero_points = data.draw(quant_params(dtype, channels=4))
    assert scales.shape == zero_points.shape == (4,) and (scales > 0).all()
    assert zero_points.dtype == np.dtype(dtype) and len(set(zero_points.tolist())) == 1


def test_unknown_dtype_suggests_the_right_one():
    with pytest.raises(ModelError, match="unknown dtype 'int7'. Did you mean 'int8'?"):
        quant_params("int7")


def test_the_npu_profile_is_registered():
    from hypothesis import settings as hsettings

    profile = hsettings.get_profile("npu")
    assert profile.deadline is None and profile.print_blob
