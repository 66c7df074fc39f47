"""Distillation, the measured pipeline and the accuracy-aware search, on the real digits data."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from pytest_npu import compress
from pytest_npu.compress.distill import ProgressBar
from pytest_npu.errors import CompressionError
from reference_models import digits_cnn


@pytest.fixture(scope="module")
def teacher():
    return digits_cnn.load()


def test_pruned_and_distilled_within_1_5_points_with_40_percent_fewer_macs(design_pipeline):
    float_row, pruned_row, distilled_row, int8_row = design_pipeline.steps
    assert float_row.name == "input" and float_row.mse == 0.0 and float_row.agreement == 1.0
    assert pruned_row.top1 < float_row.top1 - 0.05                  # pruning alone hurts ...
    assert distilled_row.top1 >= float_row.top1 - 0.015              # ... distillation recovers it
    assert distilled_row.macs <= 0.6 * float_row.macs
    assert int8_row.size_kib < distilled_row.size_kib / 3.5
    assert int8_row.top1 >= float_row.top1 - 0.015


def test_pipeline_result_carries_models_and_a_table(design_pipeline, teacher):
    result = design_pipeline
    assert result.torch_model.conv1.out_channels == 8 and teacher.conv1.out_channels == 16
    assert any(n.op_type == "QuantizeLinear" for n in result.model.graph.node)
    assert not any(n.op_type == "QuantizeLinear" for n in result.float_model.graph.node)
    table = result.table()
    for text in ("prune 50% structured l1", "distill 6 ep", "quantize int8 minmax", "top-1 %", "MACs"):
        assert text in table
    assert f"{result.steps[-1].macs:,}" in table


def test_distillation_is_seeded(teacher):
    small = compress.prune(teacher, 0.75, structured=True)
    data = digits_cnn.train_data()
    step = compress.distill(teacher, data, epochs=1, progress=False)
    a, b = step(small), step(small)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert len(step.losses) == 1 and step.losses[0] > 0


def test_distill_from_an_onnx_teacher_without_labels(teacher):
    x, _ = digits_cnn.train_data()
    step = compress.distill(digits_cnn.onnx_path(), x[:256], epochs=1, alpha=1.0, progress=False)
    student = step(compress.prune(teacher, 0.5, structured=True))
    assert student.fc.in_features == 64 and step.losses[0] > 0


def test_distill_refuses_what_it_cannot_do(teacher):
    x, y = digits_cnn.train_data()
    with pytest.raises(CompressionError, match="no labels.*alpha=1.0"):
        compress.distill(teacher, x[:64])
    with pytest.raises(CompressionError, match="temperature must be > 0"):
        compress.distill(teacher, (x, y), temperature=0)
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(CompressionError, match=r"student outputs \(3,\).*teacher outputs \(10,\)"):
        compress.distill(teacher, (x[:64], y[:64]), epochs=1, progress=False)(wrong)


def test_progress_bar_writes_one_line_per_milestone_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(10, "distill", stream=stream)
    for i in range(1, 11):
        bar.update(i, "epoch", milestone=i % 5 == 0)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("distill [############............] 5/10")
    assert lines[1].startswith("distill [########################] 10/10")


def test_pipeline_order_and_arguments_are_checked(teacher):
    quantize = compress.quantize("int8", calibration=digits_cnn.calib_data(16))
    with pytest.raises(CompressionError, match=r"step 2 \(prune 50% unstructured l1\) needs a torch model"):
        compress.pipeline(teacher, quantize, compress.prune(0.5))
    with pytest.raises(CompressionError, match="argument 1 after the model is a float"):
        compress.pipeline(teacher, 0.5)


def test_search_returns_the_most_compressed_candidate_meeting_the_budget(teacher):
    result = compress.search(teacher, {"top1_drop": 0.01}, candidates=[(0.0, "int16"), (0.0, "int8"), (0.0, None)],
                             eval_data=digits_cnn.test_data(), calibration=digits_cnn.calib_data())
    assert [row["precision"] for row in result.tried] == ["int16", "int8", "float"]
    assert all(row["meets"] for row in result.tried)
    assert result.candidate == {"prune": 0.0, "precision": "int8"}            # int8: fewest weight bytes
    assert round(result.best.final.size_kib, 2) == min(row["weights KiB"] for row in result.tried)
    assert "int16" in result.table()


def test_search_says_why_nothing_fits(teacher):
    with pytest.raises(CompressionError, match=r"no candidate meets.*\n.*why not") as info:
        compress.search(teacher, {"size_kib": 1.0}, candidates=[(0.0, "int8")],
                        eval_data=digits_cnn.test_data(), calibration=digits_cnn.calib_data(64))
    assert "6.12 KiB > 1 KiB" in str(info.value)
    with pytest.raises(CompressionError, match="did you mean 'top1_drop'"):
        compress.search(teacher, {"top1drop": 0.01}, candidates=[(0.0, None)], eval_data=digits_cnn.test_data())
    x, _ = digits_cnn.test_data()
    with pytest.raises(CompressionError, match="eval_data has no labels"):
        compress.search(teacher, candidates=[(0.0, None)], eval_data=x)
    assert np.isfinite(x).all()
