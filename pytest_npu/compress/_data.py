"""Turn whatever the user passes as data into checked numpy batches.

Calibration and training data arrive as numpy arrays, ``(x, y)`` tuples, lists of batches or a
torch DataLoader.  Everything is materialised once, up front (these sets are small), so a bad
value (empty, NaN/inf, wrong shape) is reported when the step is built, naming the argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from pytest_npu.errors import CompressionError

CALIBRATION_BATCH = 32


def _to_numpy(value: Any, argument: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):     # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise CompressionError(f"{argument}: cannot convert a {type(value).__name__} to an array ({exc})") from exc
    if array.dtype == object:
        raise CompressionError(f"{argument}: got ragged or non-numeric data ({type(value).__name__}); "
                               "pass float arrays of one shape")
    return array


def _is_labels(array: np.ndarray) -> bool:
    return array.ndim == 1 and np.issubdtype(array.dtype, np.integer)


def _split_item(item: Any, argument: str) -> tuple[np.ndarray, np.ndarray | None]:
    """One element of the data: an array, or an ``(x, y)`` pair whose ``y`` are integer labels."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        x, y = _to_numpy(item[0], argument), _to_numpy(item[1], argument)
        if _is_labels(y):
            return x, y
    if isinstance(item, dict):
        if len(item) != 1:
            raise CompressionError(f"{argument}: a dict batch must have exactly one entry (the model input), "
                                   f"got keys {sorted(item)}")
        return _to_numpy(next(iter(item.values())), argument), None
    return _to_numpy(item, argument), None


def _check_floats(x: np.ndarray, argument: str) -> np.ndarray:
    if x.size == 0:
        raise CompressionError(f"{argument} is empty: pass at least one sample")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise CompressionError(f"{argument}: expected numeric samples, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CompressionError(f"{argument} contains {int(bad.sum())} NaN/inf value(s) (first at index {first}); "
                               "clean the data before calibrating or training")
    return x


def samples(data: Any, argument: str) -> tuple[np.ndarray, np.ndarray | None]:
    """All samples (and labels if every batch had them) as one ``(x, y)`` pair, batch axis first."""
    if data is None:
        raise CompressionError(f"{argument} is required: pass a numpy array, an (x, y) tuple, a list of "
                               "batches or a torch DataLoader")
    if isinstance(data, np.ndarray) or hasattr(data, "detach"):
        items: Iterable[Any] = [data]
    elif isinstance(data, tuple) and len(data) == 2 and _is_labels(_to_numpy(data[1], argument)):
        items = [data]
    elif isinstance(data, dict):
        items = [data]
    else:
        try:
            items = list(data)
        except TypeError as exc:
            raise CompressionError(f"{argument}: a {type(data).__name__} is not data; pass a numpy array, an "
                                   "(x, y) tuple, a list of batches or a torch DataLoader") from exc
    xs, ys = [], []
    for item in items:
        x, y = _split_item(item, argument)
        xs.append(x)
        ys.append(y)
    if not xs:
        raise CompressionError(f"{argument} is empty: the iterable yielded no batches")
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) > 1:
        raise CompressionError(f"{argument}: batches have different sample shapes {sorted(shapes)}")
    x_all = _check_floats(np.concatenate(xs, axis=0), argument)
    labelled = all(y is not None for y in ys)
    y_all = np.concatenate([y for y in ys if y is not None]).astype(np.int64) if labelled else None
    if y_all is not None and len(y_all) != len(x_all):
        raise CompressionError(f"{argument}: {len(x_all)} samples but {len(y_all)} labels")
    return x_all, y_all


def check_sample_shape(x: np.ndarray, expected: Sequence[int | None], argument: str, where: str) -> None:
    """Fail early, naming both shapes, when samples do not fit the model input (None = any)."""
    got = tuple(x.shape[1:])
    if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
        want = tuple("?" if e is None else e for e in expected)
        raise CompressionError(f"{argument}: samples have shape {got} but {where} expects (batch, *{want}); "
                               "pass samples with the model's input shape")


def batches(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[i:i + size] for i in range(0, len(x), size)]
