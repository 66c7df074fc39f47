"""Every compressed digits model compiles and runs on every built-in target, agreeing with ORT."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import pytest_npu
from pytest_npu import compress, targets
from pytest_npu.compress._stats import run_onnx
from reference_models import digits_cnn


def _output_scale(model) -> float:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (dq,) = [n for n in model.graph.node if n.output[0] == model.graph.output[0].name]
    return float(inits[dq.input[1]])


@pytest.fixture(scope="module")
def compressed(digits_int8, digits_int16, design_pipeline):
    sparse = compress.quantize(compress.prune(digits_cnn.load(), 0.6, scope="global"), "int8",
                               calibration=digits_cnn.calib_data())
    return {"int8": onnx.load(str(digits_int8)), "int16": onnx.load(str(digits_int16)), "pruned50+distilled+int8": design_pipeline.model,
            "sparse60+int8": sparse}


@pytest.mark.parametrize("target", targets.available())
@pytest.mark.parametrize("variant", ["int8", "int16", "pruned50+distilled+int8", "sparse60+int8"])
def test_compressed_digits_compile_and_run(compressed, digits_test, target, variant):
    model = compressed[variant]
    x, y = digits_test
    x, y = x[:120], y[:120]
    outputs = pytest_npu.compile(model, target).run(x).outputs
    (npu_logits,) = outputs.values()
    ort_logits = run_onnx(model, x)           # ORT by the QDQ semantics (graph optimisations off)
    assert npu_logits.shape == ort_logits.shape
    assert np.max(np.abs(npu_logits - ort_logits)) <= 2 * _output_scale(model) + 1e-6
    agreement = float(np.mean(npu_logits.argmax(1) == ort_logits.argmax(1)))
    assert agreement >= 0.99, f"{variant} on {target}: top-1 agrees with onnxruntime on {agreement:.1%}"
    assert float(np.mean(npu_logits.argmax(1) == y)) >= 0.9
