from __future__ import annotations

import logging
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
logging.getLogger().setLevel(logging.ERROR)     # onnxruntime.quantization's pre-processing advice

from models import Builder, quantize  # noqa: E402


@cache
def qdq_model(name: str, activation: str = "int8"):
    """Named QDQ models (quantised once per session)."""
    builders = {
        # conv + pool + dw + 1x1 + residual add + global pool + fc: the layers of MLPerf-Tiny CNNs
        "cnn": lambda: Builder((1, 3, 16, 16), seed=11).conv(16).pool().depthwise().conv(24, k=1, pad=0)
        .residual().global_pool().flatten().fc(10),
        "slice": lambda: Builder((1, 3, 12, 12), seed=1).conv(8).pool().conv(16).flatten().fc(10),
        "convheavy": lambda: Builder((1, 16, 24, 24), seed=2).conv(32).conv(32).conv(32).pool()
        .conv(64).global_pool().flatten().fc(10),
        "chain": lambda: Builder((1, 4, 10, 10), seed=3).conv(8).depthwise().conv(8, k=1, pad=0)
        .act("Sigmoid").pool("AveragePool", k=2, stride=2),
        "softmax": lambda: Builder((1, 3, 8, 8), seed=7).conv(4).flatten().fc(10).act("Softmax", axis=1),
    }
    b = builders[name]()
    return quantize(b.model(), b.input_shape, activation=activation), b.input_shape


def inputs_for(shape, n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, *shape[1:])).astype(np.float32)


@pytest.fixture(scope="session")
def models():
    return qdq_model
