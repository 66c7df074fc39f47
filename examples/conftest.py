"""Fixtures for an NPU port of the digits CNN: the shipped float model and its quantised versions.

A user's suite would look like this: quantise once per session (onnxruntime's QDQ quantiser through
``pytest_npu.compress``), hand the runner a (quantized, float) pair so ``reference="float"`` knows
what to compare against, and let the markers say what the port must achieve.
"""

from __future__ import annotations

import pytest

import pytest_npu.strategies  # noqa: F401  (registers the "npu" Hypothesis profile named in pytest.ini)
from pytest_npu.harness import ModelPair
from reference_models import digits_cnn


@pytest.fixture(scope="session")
def digits_test():
    """(images, labels): the 360 held-out digits, float32 NCHW in [0, 1]."""
    return digits_cnn.test_data()


@pytest.fixture(scope="session")
def digits_calibration():
    return digits_cnn.calib_data(128)


def _quantised(precision: str, calibration) -> ModelPair:
    from pytest_npu import compress

    float_path = digits_cnn.onnx_path()
    return ModelPair(compress.quantize(str(float_path), precision, calibration=calibration), float_path)


@pytest.fixture(scope="session")
def digits_int8(digits_calibration) -> ModelPair:
    return _quantised("int8", digits_calibration)


@pytest.fixture(scope="session")
def digits_int16(digits_calibration) -> ModelPair:
    return _quantised("int16", digits_calibration)
