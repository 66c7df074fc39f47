"""Accuracy figures of a port: how far the NPU's outputs are from a reference (numpy only).

All functions take a ``reference`` and a ``measured`` float array of the same shape, batch first
(axis 0 indexes samples; an array with fewer than 2 dimensions is one sample). Bad input raises
:class:`~pytest_npu.errors.MetricError` naming both shapes, never a numpy broadcasting error:
silently broadcasting a (N, 10) against a (10,) would produce a plausible but wrong figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import MetricError

__all__ = ["compare", "compare_each", "cosine", "max_abs_err", "mse", "sqnr_db", "top1",
           "top1_agreement"]


def _as_float(values: Any, role: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{role} is not a numeric array ({type(values).__name__}): {exc}") from None
    if array.size == 0:
        raise MetricError(f"{role} is empty (shape {array.shape}); pass at least one sample")
    return array


def _pair(reference: Any, measured: Any) -> tuple[np.ndarray, np.ndarray]:
    ref, got = _as_float(reference, "reference"), _as_float(measured, "measured")
    if ref.shape != got.shape:
        raise MetricError(f"reference shape {ref.shape} != measured shape {got.shape}; compare the "
                          "same output of the same batch (no broadcasting is done)")
    return ref, got


def _per_sample(array: np.ndarray) -> np.ndarray:
    return array.reshape(1, -1) if array.ndim < 2 else array.reshape(array.shape[0], -1)


def mse(reference: Any, measured: Any) -> float:
    """Mean squared error over every element."""
    ref, got = _pair(reference, measured)
    return float(np.mean(np.square(ref - got)))


def max_abs_err(reference: Any, measured: Any) -> float:
    """Largest absolute difference of any element."""
    ref, got = _pair(reference, measured)
    return float(np.max(np.abs(ref - got)))


def sqnr_db(reference: Any, measured: Any) -> float:
    """Signal-to-quantisation-noise ratio, 10*log10(sum ref^2 / sum (ref - measured)^2), in dB.

    +inf when the arrays are identical; -inf when the reference is all zeros but measured is not.
    """
    ref, got = _pair(reference, measured)
    largest = max(float(np.abs(ref).max()), float(np.abs(got).max()))
    if largest > 0:  # the ratio is scale-free; scaling keeps the sums of squares finite
        ref, got = ref / largest, got / largest
    signal = float(np.sum(np.square(ref)))
    noise = float(np.sum(np.square(ref - got)))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal / noise))


def cosine(reference: Any, measured: Any) -> float:
    """Mean over samples of the cosine similarity of each sample's flattened values, in [-1, 1].

    Two all-zero samples count as identical (1); an all-zero sample against a non-zero one as 0.
    """
    ref, got = (_per_sample(a) for a in _pair(reference, measured))
    # Divide each side of each sample by its own largest magnitude first: cosine is scale-free per
    # side, and tiny or huge values would otherwise underflow/overflow the norms (1e-320 against
    # itself gave 0, not 1; 1e-158 against 3 lost 8 digits when both shared one divisor).
    def unit_peak(a: np.ndarray) -> np.ndarray:
        peak = np.abs(a).max(axis=1)[:, None]
        return a / np.where(peak > 0, peak, 1.0)

    ref, got = unit_peak(ref), unit_peak(got)
    dots = np.einsum("ij,ij->i", ref, got)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    both_zero = ~ref.any(axis=1) & ~got.any(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    similarity = np.where(both_zero, 1.0, np.clip(similarity, -1.0, 1.0))
    return float(np.mean(similarity))


def _logits(values: Any, role: str) -> np.ndarray:
    array = _as_float(values, role)
    if array.ndim != 2:
        raise MetricError(f"{role} must be (batch, classes) logits, got shape {array.shape}")
    return array


def top1(logits: Any, labels: Any) -> float:
    """Fraction of samples whose arg-max class equals the label (labels: (N,) ints or (N, C) one-hot)."""
    scores = _logits(logits, "logits")
    label_array = np.asarray(labels)
    if label_array.shape == scores.shape:
        label_array = label_array.argmax(axis=1)
    if label_array.shape != (scores.shape[0],):
        raise MetricError(f"labels shape {label_array.shape} does not match logits shape {scores.shape}; "
                          f"pass ({scores.shape[0]},) class indices or ({scores.shape[0]}, "
                          f"{scores.shape[1]}) one-hot labels")
    if not np.issubdtype(label_array.dtype, np.integer):
        raise MetricError(f"labels must be integer class indices, got dtype {label_array.dtype}")
    out_of_range = (label_array < 0) | (label_array >= scores.shape[1])
    if out_of_range.any():
        bad = int(label_array[out_of_range][0])
        raise MetricError(f"label {bad} is outside the {scores.shape[1]} classes of the logits "
                          f"(shape {scores.shape}); labels are 0-based class indices")
    return float(np.mean(scores.argmax(axis=1) == label_array))


def top1_agreement(reference: Any, measured: Any) -> float:
    """Fraction of samples where both outputs pick the same arg-max class."""
    ref, got = _pair(reference, measured)
    ref, got = _logits(ref, "reference"), _logits(got, "measured")
    return float(np.mean(ref.argmax(axis=1) == got.argmax(axis=1)))


def _single_output(values: Any, role: str) -> Any:
    if not isinstance(values, Mapping):
        return values
    if len(values) != 1:
        raise MetricError(f"{role} has {len(values)} outputs ({', '.join(map(str, values))}); compare "
                          "one at a time, e.g. compare(reference[name], measured[name]), or use compare_each")
    return next(iter(values.values()))


def compare(reference: Any, measured: Any, labels: Any = None) -> dict[str, float]:
    """Every metric at once. Single-output dicts (like ``Execution.outputs``) are unwrapped.

    Classification outputs ((batch, classes) with classes > 1) add ``top1_agreement``; with
    ``labels`` they add ``top1`` (measured), ``top1_reference`` and ``top1_drop`` (their difference).
    """
    ref, got = _pair(_single_output(reference, "reference"), _single_output(measured, "measured"))
    result = {"mse": mse(ref, got), "max_abs_err": max_abs_err(ref, got), "sqnr_db": sqnr_db(ref, got),
              "cosine": cosine(ref, got)}
    if ref.ndim == 2 and ref.shape[1] > 1:
        result["top1_agreement"] = top1_agreement(ref, got)
    if labels is not None:
        result["top1"] = top1(got, labels)
        result["top1_reference"] = top1(ref, labels)
        result["top1_drop"] = result["top1_reference"] - result["top1"]
    return result


def compare_each(reference: Mapping[str, Any], measured: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """``compare`` per name (outputs or per-layer tensors), for the names both mappings hold.

    Names only one side holds are an error: a silently skipped layer would hide where accuracy goes.
    """
    only_ref = sorted(set(reference) - set(measured))
    only_got = sorted(set(measured) - set(reference))
    if only_ref or only_got:
        raise MetricError(f"reference and measured name different tensors: only in reference {only_ref}, "
                          f"only in measured {only_got}")
    results = {}
    for name in reference:
        try:
            results[name] = compare(reference[name], measured[name])
        except MetricError as exc:
            raise MetricError(f"tensor {name!r}: {exc}") from None
    return results
