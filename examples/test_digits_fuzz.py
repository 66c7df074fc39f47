"""Fuzzed accuracy: any image in the calibration range must keep the port close to the float model.

Hypothesis draws batches of images; a breach raises on that example, so Hypothesis shrinks it to
a minimal image and prints it with the command that reproduces it. The examples are derandomised,
so a run repeats on any machine; but which images Hypothesis draws also depends on the numbers
written in the project's own modules (Hypothesis >= 6.131 mixes those "local constants" into its
choices), so the worst accuracy over the images moves whenever code elsewhere changes. The budget
is the gate for those figures; the baseline gates only the cost figures, which no image changes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from pytest_npu.strategies import inputs_for
from reference_models import digits_cnn

CALIBRATION = digits_cnn.calib_data(128)


@pytest.mark.npu_budget(cosine=0.99, sqnr_db=20.0,
                        compare={"mse": "off", "max_abs_err": "off", "sqnr_db": "off", "cosine": "off"})
@settings(max_examples=15, derandomize=True)
@given(images=inputs_for(digits_cnn.onnx_path(), batch=8, within="calibration", calibration=CALIBRATION))
def test_int8_accuracy_on_any_image(npu, digits_int8, images):
    npu.run(digits_int8, images, reference="float")
