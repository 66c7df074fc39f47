"""Helpers shared by the reference models: seeded initialisation, seeded data, export, caching.

torch is imported lazily so ``reference_models.digits_cnn.onnx_path()`` / ``test_data()`` stay cheap
for callers (the pytest plugin, the compiler tests) that only need the shipped ONNX and numpy data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import nn

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def seeded_inputs(shape: Sequence[int], n: int, seed: int) -> np.ndarray:
    """Standard-normal float32 inputs ``(n, *shape)``: a stand-in where no real data set ships."""
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def seed_batchnorm(model: nn.Module, inputs: np.ndarray, seed: int) -> None:
    """Give every BatchNorm the statistics a trained net would have, deterministically.

    Running stats are the true mean/variance of the activations the seeded inputs produce (so the
    normalised activations keep sane ranges through deep stacks, as after training), and the affine
    parameters are drawn away from the trivial (1, 0) so folding BN into the convolution changes
    the weights for real.
    """
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None            # cumulative average over the batches below
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.1)
        model.train()
        for batch in np.array_split(inputs, max(1, len(inputs) // 32)):
            model(torch.from_numpy(np.ascontiguousarray(batch)))
        for bn in norms:
            bn.momentum = 0.1
    model.eval()


def export(model: nn.Module, path: str | Path, input_shape: Sequence[int]) -> Path:
    """Export with the project's one exporter (dynamo, opset 21, dynamic batch, one file)."""
    from pytest_npu.compress._export import to_onnx

    path = Path(path)
    to_onnx(model, input_shape, path)
    return path


def split_export_args(model_or_path: Any, path: str | Path | None) -> tuple[Any, Path]:
    """Accept ``export_onnx(path)``, ``export_onnx(model, path)`` and ``export_onnx(None, path)``."""
    if isinstance(model_or_path, (str, Path)):
        if path is not None:
            raise TypeError("export_onnx(path) takes the path once; to export a model call "
                            "export_onnx(model, path)")
        return None, Path(model_or_path)
    if path is None:
        raise TypeError("export_onnx needs a destination path: export_onnx(path) or export_onnx(model, path)")
    return model_or_path, Path(path)
