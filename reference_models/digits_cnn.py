"""A small CNN for scikit-learn's bundled 8x8 hand-written digits (real data, no download).

The trained weights ship in ``artifacts/`` (state dict + float ONNX) and are reproduced bit-for-bit
by ``python -m reference_models.train_digits``.  The split is fixed
(``train_test_split(test_size=0.2, random_state=0, stratify=y)``: 1437 train / 360 test images) so
every accuracy figure in the project refers to the same held-out images.

Data accessors return float32 NCHW arrays scaled to [0, 1] and int64 labels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._common import ARTIFACTS, export, split_export_args

if TYPE_CHECKING:
    from torch import nn

NAME = "digits_cnn"
input_shape = (1, 8, 8)
num_classes = 10
STATE_DICT = ARTIFACTS / "digits_cnn.pt"
ONNX = ARTIFACTS / "digits_cnn.onnx"


def build() -> nn.Module:
    """The untrained network: Conv(1,16)-BN-ReLU-Pool -> Conv(16,32)-BN-ReLU-Pool -> Linear(128,10)."""
    from collections import OrderedDict

    from torch import nn

    model = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 16, 3, padding=1)), ("bn1", nn.BatchNorm2d(16)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)), ("bn2", nn.BatchNorm2d(32)), ("relu2", nn.ReLU()),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(128, num_classes)),
    ]))
    model.input_shape = input_shape  # type: ignore[assignment]  # read by pytest_npu.compress export
    return model


def load() -> nn.Module:
    """The trained network in eval mode (weights from the shipped state dict, loaded without pickle)."""
    import torch

    model = build()
    model.load_state_dict(torch.load(STATE_DICT, weights_only=True))
    return model.eval()


def onnx_path() -> Path:
    """The shipped float ONNX (opset 21, dynamic batch, input ``x`` (N,1,8,8), output ``y`` logits)."""
    return ONNX


def load_onnx():
    """The shipped float ONNX as a ModelProto."""
    import onnx

    return onnx.load(str(ONNX))


def export_onnx(model_or_path=None, path: str | Path | None = None) -> Path:
    """Export ``model`` (default: the trained one) to ``path``; ``export_onnx(path)`` also works."""
    model, path = split_export_args(model_or_path, path)
    return export(model if model is not None else load(), path, input_shape)


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return x_train, y_train, x_test, y_test


def train_data() -> tuple[np.ndarray, np.ndarray]:
    """The 1437 training images and labels."""
    x, y, _, _ = _split()
    return x.copy(), y.copy()


def test_data() -> tuple[np.ndarray, np.ndarray]:
    """The 360 held-out images and labels (never used for training or calibration)."""
    _, _, x, y = _split()
    return x.copy(), y.copy()


test_data.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one


def calib_data(n: int = 256) -> np.ndarray:
    """The first ``n`` training images (no labels): calibration draws from the training split only."""
    x, _, _, _ = _split()
    if not 1 <= n <= len(x):
        raise ValueError(f"calib_data(n={n}): n must be between 1 and {len(x)} (the training split size)")
    return x[:n].copy()
