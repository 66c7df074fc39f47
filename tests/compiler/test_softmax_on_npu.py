"""Softmax over channels runs on the NPU (one SOFTMAX instruction, TFLite's fixed-point algorithm)
wherever the target has the LUT and element-wise steps it needs; an onnxruntime-quantised model
(output scale 1/255) agrees with onnxruntime's float softmax within the differential criterion."""

from __future__ import annotations

import dataclasses

import pytest
from models import assert_matches_ort, inputs_for, ort_run, qdq_model

import pytest_npu.compiler as compiler
from pytest_npu import targets


@pytest.mark.parametrize("target", ["u55-256", "u55-128", "u65-512", "edge-3core"])
def test_channel_softmax_runs_on_the_npu_and_matches_onnxruntime(target):
    q, shape = qdq_model("softmax")
    cm = compiler.compile(q, target)
    assert cm.unsupported() == []
    softmax = [i for i in cm.program.instructions if i.opcode == "SOFTMAX"]
    assert softmax and softmax[0].requant is not None      # 1/255 output: requantised probabilities
    x = inputs_for(shape, 64)
    (name,) = cm.program.outputs
    assert_matches_ort(cm.run(x).outputs[name], ort_run(q, x), float(cm.graph.output_quant[name].scale))


def test_softmax_needs_every_step_of_the_sequence():
    """A target without element-wise multiply cannot run the reciprocal: the layer goes to the
    host, naming what is missing."""
    base = targets.load("u55-256")
    no_mul = dataclasses.replace(base, operations=frozenset(base.operations - {"mul"}))
    cm = compiler.compile(qdq_model("softmax")[0], no_mul)
    ((layer, op, reason),) = cm.unsupported()
    assert op == "softmax" and reason == "softmax needs mul, which is not in u55-256's instruction set"
