"""The shipped digits CNN: real held-out accuracy, artifacts consistent, training reproducible."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from reference_models import digits_cnn, train_digits


def _ort_logits(model_path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_split_is_fixed_disjoint_and_stratified():
    x_train, y_train = digits_cnn.train_data()
    x_test, y_test = digits_cnn.test_data()
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    # stratified: every class holds 20 % (+-1 image) of its images in the test split
    counts_test = np.bincount(y_test, minlength=10)
    counts_all = counts_test + np.bincount(y_train, minlength=10)
    assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 1)
    # no held-out image is also a training image
    train_rows = {row.tobytes() for row in x_train.reshape(len(x_train), -1)}
    overlap = sum(row.tobytes() in train_rows for row in x_test.reshape(len(x_test), -1))
    assert overlap <= 2  # load_digits has a couple of exact duplicate images; not a leak of the split


def test_shipped_onnx_is_self_contained_dynamic_batch_opset21():
    model = onnx.load(str(digits_cnn.onnx_path()))
    onnx.checker.check_model(model, full_check=True)
    assert {op.domain: op.version for op in model.opset_import}[""] == 21
    (inp,) = model.graph.input
    assert inp.name == "x"
    assert inp.type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert not digits_cnn.onnx_path().with_suffix(".onnx.data").exists()


def test_shipped_onnx_float_top1_at_least_97_percent():
    x, y = digits_cnn.test_data()
    top1 = float((_ort_logits(digits_cnn.onnx_path(), x).argmax(1) == y).mean())
    assert top1 >= 0.97, f"held-out top-1 {top1:.4f}"


def test_state_dict_and_onnx_are_the_same_network():
    x, _ = digits_cnn.test_data()
    with torch.no_grad():
        torch_logits = digits_cnn.load()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_ort_logits(digits_cnn.onnx_path(), x), torch_logits, atol=1e-4, rtol=1e-4)


def test_calib_data_comes_from_the_training_split():
    x_train, _ = digits_cnn.train_data()
    calib = digits_cnn.calib_data(32)
    np.testing.assert_array_equal(calib, x_train[:32])
    with pytest.raises(ValueError, match="between 1 and 1437"):
        digits_cnn.calib_data(0)


def test_training_is_deterministic_and_reaches_97_percent():
    x, y = digits_cnn.test_data()
    first = train_digits.train(epochs=6)
    second = train_digits.train(epochs=6)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert train_digits.accuracy(first, x, y) >= 0.97
