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


def seeded_model(build_fn, input_shape: Sequence[int], seed: int):
    """``build_fn()`` with seeded weights and data-derived BatchNorm statistics, in eval mode.

    Built and measured in float64, then rounded to float32: torch's samplers and kernels differ in
    the last float32 bit between instruction sets (AVX-512, AVX2 and scalar ATen kernels gave three
    different resnet8 weight sets), which rounding float64 results to float32 absorbs, so every CPU
    gets the same bytes and therefore the same quantised model and the same figures.
    """
    import torch

    from pytest_npu.compress._export import single_thread

    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = build_fn()
        with single_thread():
            seed_batchnorm(model, seeded_inputs(input_shape, 64, seed + 1).astype(np.float64), seed)
    finally:
        torch.set_default_dtype(previous)
    model = model.float()
    model.input_shape = tuple(input_shape)
    return model.eval()


class SeededReference:
    """The accessors of a model for which no data set ships: seeded weights and seeded inputs.

    Each module binds them at module level (``load = _ref.load`` ...), so every seeded model has the
    same API as ``digits_cnn`` (except that ``test_data`` has no labels: there is nothing to take
    them from).
    """

    def __init__(self, name: str, build_fn, input_shape: Sequence[int], seed: int):
        self.name, self.build_fn, self.input_shape, self.seed = name, build_fn, tuple(input_shape), seed

    def build(self):
        model = self.build_fn()
        model.input_shape = self.input_shape
        return model

    def load(self):
        """Seeded weights and BatchNorm statistics measured on seeded inputs (no trained weights exist)."""
        return seeded_model(self.build_fn, self.input_shape, self.seed)

    def export_onnx(self, model_or_path: Any = None, path: str | Path | None = None) -> Path:
        """``export_onnx(path)`` exports ``load()``; ``export_onnx(model, path)`` exports ``model``."""
        model, path = split_export_args(model_or_path, path)
        return export(model if model is not None else self.load(), path, self.input_shape)

    def calib_data(self, n: int = 64) -> np.ndarray:
        """Seeded standard-normal inputs (distinct from ``test_data``)."""
        return seeded_inputs(self.input_shape, n, self.seed + 100)

    def test_data(self, n: int = 32) -> np.ndarray:
        """Seeded standard-normal inputs, without labels."""
        return seeded_inputs(self.input_shape, n, self.seed + 200)

    test_data.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into one
