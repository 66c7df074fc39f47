"""Shared, session-scoped digits material: the shipped float model and its quantised forms."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_npu import compress
from pytest_npu.compress._stats import run_onnx
from reference_models import digits_cnn, onnx_for


@pytest.fixture(scope="session")
def digits_test():
    return digits_cnn.test_data()


@pytest.fixture(scope="session")
def float_top1(digits_test):
    x, y = digits_test
    return float(np.mean(run_onnx(digits_cnn.onnx_path(), x).argmax(1) == y))


@pytest.fixture(scope="session")
def digits_int8():
    return onnx_for("digits_cnn", "int8")


@pytest.fixture(scope="session")
def digits_int16():
    return onnx_for("digits_cnn", "int16")


@pytest.fixture(scope="session")
def design_pipeline():
    """The DESIGN.md example: 50 % structured pruning, distillation from the float model, int8."""
    teacher = digits_cnn.load()
    return compress.pipeline(teacher,
                             compress.prune(0.5, structured=True),
                             compress.distill(teacher=teacher, data=digits_cnn.train_data(), progress=False),
                             compress.quantize("int8", calibration=digits_cnn.calib_data()),
                             eval_data=digits_cnn.test_data())
