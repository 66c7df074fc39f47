"""Multi-core scheduling and host fallback."""

from __future__ import annotations

import numpy as np
import pytest
from models import assert_matches_ort, inputs_for, ort_run, qdq_model

import pytest_npu.compiler as compiler
from pytest_npu.errors import CompileError


def test_three_cores_are_faster_than_one_with_identical_outputs():
    q, shape = qdq_model("convheavy")
    x = inputs_for(shape, 2)
    one = compiler.compile(q, "edge-3core", cores=1)
    three = compiler.compile(q, "edge-3core")
    ex1, ex3 = one.run(x), three.run(x)
    for name in one.program.outputs:
        np.testing.assert_array_equal(ex1.extra["raw_outputs"][name], ex3.extra["raw_outputs"][name])
    assert {i.core for i in one.program.instructions if hasattr(i, "core")} == {0}
    assert {i.core for i in three.program.instructions if hasattr(i, "core")} == {0, 1, 2}
    assert ex3.summary.cycles < 0.75 * ex1.summary.cycles, (ex3.summary.cycles, ex1.summary.cycles)


def test_dma_channels_are_used_round_robin():
    q, _ = qdq_model("convheavy")
    cm = compiler.compile(q, "edge-3core")
    channels = {i.channel for i in cm.program.instructions if i.unit == "dma"}
    assert channels == set(range(cm.target.dma_channels))


def test_host_fallback_is_reported_runs_and_matches_onnxruntime():
    q, shape = qdq_model("host_softmax")
    cm = compiler.compile(q, "u55-256")
    (entry,) = cm.unsupported()
    layer, op, reason = entry
    assert op == "softmax" and "softmax" in reason and "u55-256" in reason
    assert [i.opcode for i in cm.program.instructions].count("HOST") == 1
    x = inputs_for(shape, 4)
    ex = cm.run(x)
    (name,) = cm.program.outputs
    assert_matches_ort(ex.outputs[name], ort_run(q, x), float(cm.graph.output_quant[name].scale))
    assert ex.summary.host_cycles > 0
    host_rows = [r for r in cm.layers(ex) if r["where"] == "host"]
    assert [r["layer"] for r in host_rows] == [layer] and host_rows[0]["reason"] == reason


def test_fallback_error_names_the_layer():
    q, _ = qdq_model("host_softmax")
    with pytest.raises(CompileError, match=r"layer '.*' \(softmax\).*fallback"):
        compiler.compile(q, "u55-256", fallback="error")


def test_uint8_model_runs_on_the_host_and_matches_onnxruntime():
    from models import Builder, quantize
    b = Builder((1, 3, 8, 8), seed=1).conv(4, k=1, pad=0).pool().conv(4).flatten().fc(5)
    q = quantize(b.model(), b.input_shape, activation="uint8")
    cm = compiler.compile(q, "u55-256")
    reasons = [reason for _, _, reason in cm.unsupported()]
    assert len(reasons) == 4 and all("uint8" in r and "QInt8" in r for r in reasons)
    x = inputs_for(b.input_shape, 3)
    (name,) = cm.program.outputs
    assert_matches_ort(cm.run(x).outputs[name], ort_run(q, x), float(cm.graph.output_quant[name].scale))


def test_float_model_is_refused_with_a_hint():
    from models import Builder
    b = Builder((1, 3, 8, 8), seed=1).conv(4).flatten().fc(5)
    with pytest.raises(CompileError, match="float32.*[Qq]uantise the model first"):
        compiler.compile(b.model(), "u55-256")


def test_layer_outside_the_target_limits_goes_to_the_host_or_names_the_limit():
    from models import Builder, quantize
    b = Builder((1, 3, 16, 16), seed=4).conv(4).conv(4, k=3, stride=4, pad=1).conv(4)
    q = quantize(b.model(), b.input_shape)
    cm = compiler.compile(q, "u55-256")                 # max_stride = 3
    (entry,) = cm.unsupported()
    assert entry[1] == "conv2d" and entry[2] == "stride 4 exceeds u55-256's max_stride 3"
    x = inputs_for(b.input_shape, 2)
    (name,) = cm.program.outputs
    assert_matches_ort(cm.run(x).outputs[name], ort_run(q, x), float(cm.graph.output_quant[name].scale))
    with pytest.raises(CompileError, match=rf"layer '{entry[0]}' \(conv2d\): stride 4 exceeds u55-256's max_stride 3"):
        compiler.compile(q, "u55-256", fallback="error")


def test_report_names_host_layers_with_reason_and_cost():
    q, _ = qdq_model("host_softmax")
    cm = compiler.compile(q, "u55-256")
    text = cm.report()
    (layer, op, reason) = cm.unsupported()[0]
    host_row = next(r for r in cm.layers() if r["layer"] == layer)
    assert f"host: {layer} ({op}): {reason} -- costs {host_row['cycles']} cycles" in text
    assert host_row["cycles"] > 0


def test_fallback_override_allows_host_layers_on_an_error_target():
    import dataclasses

    from pytest_npu import targets
    strict = dataclasses.replace(targets.load("u55-256"), fallback="error")
    q, shape = qdq_model("host_softmax")
    with pytest.raises(CompileError, match="fallback"):
        compiler.compile(q, strict)
    cm = compiler.compile(q, strict, fallback="host")
    assert cm.target.fallback == "host" and cm.unsupported()
    assert cm.run(inputs_for(shape, 1)).summary.host_cycles > 0
