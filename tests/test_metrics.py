"""Accuracy metrics: worked examples, properties (hypothesis) and clear errors on bad input."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_npu import metrics
from pytest_npu.errors import MetricError, NpuError

FINITE = st.floats(-1e3, 1e3, allow_nan=False, width=64)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)


@st.composite
def pairs(draw):
    """Two float arrays of one shape."""
    shape = draw(SHAPES)
    return (draw(hnp.arrays(np.float64, shape, elements=FINITE)),
            draw(hnp.arrays(np.float64, shape, elements=FINITE)))


PROPERTY = settings(max_examples=50, deadline=None)


def test_worked_example():
    ref = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    got = np.array([[1.0, 2.0, 4.0], [0.0, 2.0, 0.0]])
    assert metrics.mse(ref, got) == pytest.approx(2 / 6)
    assert metrics.max_abs_err(ref, got) == 1.0
    assert metrics.sqnr_db(ref, got) == pytest.approx(10 * math.log10(15 / 2))
    first = (1 + 4 + 12) / (math.sqrt(14) * math.sqrt(21))
    assert metrics.cosine(ref, got) == pytest.approx((first + 1.0) / 2)


def test_top1_and_agreement():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    assert metrics.top1(logits, labels) == 0.75
    assert metrics.top1(logits, np.eye(2, dtype=int)[labels]) == 0.75  # one-hot labels
    flipped = logits[:, ::-1]
    assert metrics.top1_agreement(logits, flipped) == 0.0
    assert metrics.top1_agreement(logits, logits * 3 + 1) == 1.0


def test_compare_collects_everything_and_the_drop():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    got = np.array([[0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    labels = [1, 0, 1]
    result = metrics.compare({"logits": ref}, {"logits": got}, labels=labels)
    assert set(result) == {"mse", "max_abs_err", "sqnr_db", "cosine", "top1_agreement", "top1",
                           "top1_reference", "top1_drop"}
    assert result["top1_reference"] == 1.0
    assert result["top1"] == pytest.approx(2 / 3)
    assert result["top1_drop"] == pytest.approx(1 / 3)
    assert result["top1_agreement"] == pytest.approx(2 / 3)
    assert "top1_agreement" not in metrics.compare(np.ones((4, 1)), np.ones((4, 1)))


def test_compare_each_names_the_tensor_at_fault():
    ref = {"conv1": np.ones((2, 3)), "fc": np.zeros((2, 4))}
    per_layer = metrics.compare_each(ref, {"conv1": np.ones((2, 3)), "fc": np.zeros((2, 4))})
    assert per_layer["conv1"]["sqnr_db"] == math.inf
    with pytest.raises(MetricError, match="tensor 'fc'.*\\(2, 4\\).*\\(2, 5\\)"):
        metrics.compare_each(ref, {"conv1": np.ones((2, 3)), "fc": np.zeros((2, 5))})
    with pytest.raises(MetricError, match="only in reference \\['fc'\\]"):
        metrics.compare_each(ref, {"conv1": np.ones((2, 3))})


@pytest.mark.parametrize("function", [metrics.mse, metrics.max_abs_err, metrics.sqnr_db,
                                      metrics.cosine, metrics.top1_agreement, metrics.compare])
def test_shape_mismatch_names_both_shapes(function):
    with pytest.raises(MetricError, match=r"reference shape \(4, 10\) != measured shape \(10,\)") as info:
        function(np.zeros((4, 10)), np.zeros(10))
    assert isinstance(info.value, NpuError)


@pytest.mark.parametrize(("labels", "fragment"), [
    (np.array([0, 1]), r"labels shape \(2,\) does not match logits shape \(3, 4\)"),
    (np.array([0, 1, 4]), "label 4 is outside the 4 classes"),
    (np.array([0, 1, -1]), "label -1 is outside"),
    (np.array([0.0, 1.0, 2.0]), "integer class indices"),
])
def test_bad_labels(labels, fragment):
    with pytest.raises(MetricError, match=fragment):
        metrics.top1(np.zeros((3, 4)), labels)


def test_bad_inputs_raise_metric_errors():
    with pytest.raises(MetricError, match="empty"):
        metrics.mse([], [])
    with pytest.raises(MetricError, match="not a numeric array"):
        metrics.mse(["a"], ["b"])
    with pytest.raises(MetricError, match=r"\(batch, classes\) logits"):
        metrics.top1(np.zeros(5), np.zeros(5, dtype=int))
    with pytest.raises(MetricError, match="2 outputs"):
        metrics.compare({"a": 1, "b": 2}, {"a": 1, "b": 2})


def test_zero_signal_edge_cases():
    zeros = np.zeros((2, 3))
    assert metrics.sqnr_db(zeros, zeros) == math.inf
    assert metrics.sqnr_db(zeros, zeros + 1) == -math.inf
    assert metrics.cosine(zeros, zeros) == 1.0
    assert metrics.cosine(zeros, zeros + 1) == 0.0


@PROPERTY
@given(pairs())
def test_errors_are_non_negative_and_symmetric(pair):
    ref, got = pair
    assert metrics.mse(ref, got) >= 0
    assert metrics.max_abs_err(ref, got) >= 0
    assert metrics.mse(ref, got) == pytest.approx(metrics.mse(got, ref))
    assert metrics.mse(ref, got) <= metrics.max_abs_err(ref, got) ** 2 * (1 + 1e-12)


@PROPERTY
@given(hnp.arrays(np.float64, SHAPES, elements=FINITE))
def test_identical_arrays_are_perfect(values):
    assert metrics.mse(values, values) == 0
    assert metrics.sqnr_db(values, values) == math.inf
    assert metrics.cosine(values, values) == pytest.approx(1.0)


@PROPERTY
@given(pairs())
def test_cosine_is_bounded(pair):
    assert -1.0 <= metrics.cosine(*pair) <= 1.0


@PROPERTY
@given(pairs(), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_cosine_ignores_positive_scale_and_flips_with_sign(pair, scale_a, scale_b):
    ref, got = pair
    # scaling must not underflow a denormal to zero (that changes the data, not its scale)
    assume(np.array_equal(ref * scale_a != 0, ref != 0) and np.array_equal(got * scale_b != 0, got != 0))
    base = metrics.cosine(ref, got)
    assert metrics.cosine(ref * scale_a, got * scale_b) == pytest.approx(base, abs=1e-9)
    # every sample non-zero on both sides: two all-zero samples count as identical (1) either way
    per_sample = (np.abs(np.reshape(a, (len(a), -1))).max(axis=1) for a in (ref, got))
    assume(all(bool((peak > 1e-6).all()) for peak in per_sample))
    assert metrics.cosine(ref, -got) == pytest.approx(-base, abs=1e-9)


@PROPERTY
@given(pairs(), st.floats(1e-2, 1e2))
def test_sqnr_is_scale_invariant_and_mse_scales_quadratically(pair, scale):
    ref, got = pair
    # a difference at float rounding level is itself changed by the scaling (a 313 dB SQNR moved to 319)
    assume(np.any(ref != 0) and np.abs(ref - got).max() > 1e-9 * np.abs(ref).max())
    assert metrics.sqnr_db(ref * scale, got * scale) == pytest.approx(metrics.sqnr_db(ref, got), abs=1e-6)
    assert metrics.mse(ref * scale, got * scale) == pytest.approx(metrics.mse(ref, got) * scale**2, rel=1e-9)


@PROPERTY
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(2, 6)), elements=FINITE),
       st.data())
def test_top1_is_a_fraction_and_argmax_labels_score_one(logits, data):
    labels = data.draw(hnp.arrays(np.int64, logits.shape[0], elements=st.integers(0, logits.shape[1] - 1)))
    accuracy = metrics.top1(logits, labels)
    assert 0.0 <= accuracy <= 1.0
    assert accuracy * logits.shape[0] == pytest.approx(round(accuracy * logits.shape[0]))
    assert metrics.top1(logits, logits.argmax(axis=1)) == 1.0
    assert metrics.top1_agreement(logits, logits) == 1.0


@pytest.mark.parametrize("magnitude", [1e-300, 1e300])
def test_extreme_magnitudes_do_not_overflow(magnitude):
    ref = np.array([[1.0, 2.0, 3.0]]) * magnitude
    got = np.array([[1.0, 2.0, 4.0]]) * magnitude
    assert metrics.sqnr_db(ref, got) == pytest.approx(10 * math.log10(14))
    assert metrics.cosine(ref, got) == pytest.approx(17 / math.sqrt(14 * 21))  # 1*1 + 2*2 + 3*4
