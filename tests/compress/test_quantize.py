"""Post-training quantisation of the trained digits CNN on real held-out data."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from pytest_npu import compress
from pytest_npu.compress._stats import onnx_stats, run_onnx
from pytest_npu.errors import CompressionError
from reference_models import digits_cnn


def _top1(model, data) -> float:
    x, y = data
    return float(np.mean(run_onnx(model, x).argmax(1) == y))


def _initializers(model) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(model)).graph.initializer} \
        if not isinstance(model, onnx.ModelProto) else \
        {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_int8_within_one_point_of_float_and_3_5x_smaller(digits_int8, digits_test, float_top1):
    assert _top1(digits_int8, digits_test) >= float_top1 - 0.01
    ratio = onnx_stats(digits_cnn.onnx_path()).weight_bytes / onnx_stats(digits_int8).weight_bytes
    assert ratio >= 3.5, f"int8 weights only {ratio:.2f}x smaller"


def test_int16_within_0_3_points_of_float(digits_int16, digits_test, float_top1):
    assert _top1(digits_int16, digits_test) >= float_top1 - 0.003


def test_qdq_structure_is_what_the_importer_reads(digits_int8, digits_int16):
    for path, act_type in ((digits_int8, onnx.TensorProto.INT8), (digits_int16, onnx.TensorProto.INT16)):
        model = onnx.load(str(path))
        assert {op.domain for op in model.opset_import} <= {"", "ai.onnx"}     # no com.microsoft Q/DQ
        assert {op.domain: op.version for op in model.opset_import}[""] == 21
        inits = {i.name: i for i in model.graph.initializer}
        weights = [inits[n.input[0]] for n in model.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized")]
        assert len(weights) == 3 and all(w.data_type == onnx.TensorProto.INT8 for w in weights)
        input_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
        assert inits[input_q.input[2]].data_type == act_type
        per_channel_scales = [numpy_helper.to_array(inits[n.input[1]]) for n in model.graph.node
                              if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized")]
        assert [s.shape for s in per_channel_scales] == [(16,), (32,), (10,)]


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    inits = _initializers(model)
    return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and inits[n.input[1]].ndim == 0}


def test_calibration_methods_really_differ():
    """Entropy clips (KL search) and percentile trims outliers: their scales are not minmax's."""
    model = digits_cnn.load_onnx()
    calib = digits_cnn.calib_data(128)
    scales = {m: _activation_scales(compress.quantize(model, "int8", calibration=calib, method=m))
              for m in ("minmax", "entropy", "percentile")}
    assert scales["minmax"].keys() == scales["entropy"].keys() == scales["percentile"].keys()
    hidden = [k for k in scales["minmax"] if k != "x"]
    assert any(scales["entropy"][k] < scales["minmax"][k] * 0.99 for k in hidden)
    assert all(scales["entropy"][k] <= scales["minmax"][k] * 1.0001 for k in hidden)
    assert any(scales["percentile"][k] != scales["minmax"][k] for k in hidden)


def test_every_calibration_form_gives_the_same_model():
    calib = digits_cnn.calib_data(64)
    labels = np.zeros(len(calib), dtype=np.int64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(calib),
                                                                        torch.from_numpy(labels)), batch_size=16)
    forms = [calib, (calib, labels), [calib[:10], calib[10:]], loader, [torch.from_numpy(calib)]]
    models = [compress.quantize(digits_cnn.onnx_path(), "int8", calibration=f) for f in forms]
    reference = _initializers(models[0])
    for model in models[1:]:
        got = _initializers(model)
        assert got.keys() == reference.keys()
        for name, value in reference.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_torch_model_in_step_form_and_path_out(tmp_path, digits_test):
    step = compress.quantize("int8", calibration=digits_cnn.calib_data(64), output=tmp_path / "q.onnx")
    assert isinstance(step, compress.Quantize) and step.name == "quantize int8 minmax"
    path = step(digits_cnn.load())
    assert path == tmp_path / "q.onnx" and path.is_file()
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert _top1(path, digits_test) >= 0.96


def test_dynamic_quantisation_needs_no_calibration(digits_test, float_top1):
    model = compress.quantize(digits_cnn.onnx_path(), "int8", dynamic=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= ops
    assert _top1(model, digits_test) >= float_top1 - 0.01


def test_onnxruntime_warnings_are_silenced(caplog):
    with caplog.at_level(logging.WARNING):
        compress.quantize(digits_cnn.onnx_path(), "int16", calibration=digits_cnn.calib_data(32))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"precision": "int9"}, r"precision\): 'int9'.*did you mean 'int8'"),
    ({"method": "minmx"}, r"method\): 'minmx'.*did you mean 'minmax'"),
    ({"precision": "int16", "method": "entropy"}, r"entropy.*int16"),
    ({"precision": "int16", "dynamic": True}, r"dynamic=True.*int8 weights only"),
])
def test_bad_options_name_the_argument(kwargs, message):
    with pytest.raises(CompressionError, match=message):
        compress.quantize(calibration=digits_cnn.calib_data(8), **kwargs)


def test_bad_calibration_data_is_refused_up_front():
    x = digits_cnn.calib_data(8)
    with pytest.raises(CompressionError, match="calibration.*empty"):
        compress.quantize("int8", calibration=[])
    with pytest.raises(CompressionError, match=r"calibration\) is required"):
        compress.quantize("int8")
    bad = x.copy()
    bad[3, 0, 2, 5] = np.nan
    with pytest.raises(CompressionError, match=r"1 NaN/inf value\(s\) \(first at index \(3, 0, 2, 5\)\)"):
        compress.quantize("int8", calibration=bad)
    bad[3, 0, 2, 5] = np.inf
    with pytest.raises(CompressionError, match="NaN/inf"):
        compress.quantize("int8", calibration=list(bad))
    with pytest.raises(CompressionError, match=r"shape \(1, 8, 9\).*model input 'x'"):
        compress.quantize(digits_cnn.onnx_path(), "int8", calibration=np.zeros((4, 1, 8, 9), np.float32))


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(CompressionError, match="nothere.onnx does not exist"):
        compress.quantize(tmp_path / "nothere.onnx", "int8", calibration=digits_cnn.calib_data(8))
