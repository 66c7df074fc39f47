"""The TFLite models shipped under ``fixtures/tflite/`` (Keras models converted by TFLiteConverter,
see its ``make_fixtures.py``), compiled with ``pytest_npu.compile("model.tflite", target)``, equal
LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``) bit for bit on real inputs, on every
built-in target whose rounding is TFLite's; ``run()`` speaks the model's own float layout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import pytest_npu
from pytest_npu import targets

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tflite"
sys.path.insert(0, str(FIXTURES))
from samples import litert_reference as litert  # noqa: E402
from samples import samples  # noqa: E402

MODELS = sorted(FIXTURES.glob("*.tflite"))
MLPERF = ("resnet8", "ds_cnn", "mobilenet_v1_025", "autoencoder")
TFLITE_TARGETS = [name for name in ("u55-128", "u55-256", "u65-512", "edge-3core")
                  if targets.load(name).rounding == "tflite"]
SAMPLES = 6


def _inputs(path: Path, n: int = SAMPLES) -> np.ndarray:
    return samples(path.stem.removesuffix("_int16"), n, offset=1200)


@pytest.mark.parametrize("target", TFLITE_TARGETS)
@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_equals_litert_reference_kernels(path, target):
    q, expected, _, _ = litert(path, _inputs(path))
    compiled = pytest_npu.compile(path, target)
    (got,) = compiled.run_quantized(q).outputs.values()
    diff = np.abs(got.astype(np.int64).reshape(expected.shape) - expected.astype(np.int64))
    assert diff.max() == 0, (f"{path.name} on {target}: {int((diff.reshape(len(diff), -1).max(1) > 0).sum())} of "
                             f"{len(diff)} samples differ from LiteRT BUILTIN_REF, max {int(diff.max())} LSB")


@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_shaped_models_run_every_layer_on_the_npu(name):
    compiled = pytest_npu.compile(FIXTURES / f"{name}.tflite", "u55-256")
    assert compiled.unsupported() == []


@pytest.mark.parametrize("path", [FIXTURES / "resnet8.tflite", FIXTURES / "ds_cnn_int16.tflite"],
                         ids=["int8", "int16"])
def test_run_takes_floats_in_the_models_layout_and_returns_dequantised_outputs(path):
    x = _inputs(path, 3)
    _, expected, _, out = litert(path, x)
    scale, zero_point = out["quantization"]
    compiled = pytest_npu.compile(path, "u55-256")
    (name,) = compiled.graph.inputs
    assert compiled.graph.boundary(name).shape == (1, *x.shape[1:])      # TFLite's own NHWC, batch 1
    (got,) = compiled.run(x).outputs.values()
    want = ((expected.astype(np.float32) - zero_point) * np.float32(scale)).reshape(got.shape)
    np.testing.assert_array_equal(got, want)


def test_pruned_model_has_dead_channels_and_still_compiles_exactly():
    """>50 % zero weights and whole all-zero output channels (their TFLite scales ~1e-10):
    multiplier 0, output = bias alone, as LiteRT (exactness is the first test's)."""
    graph = pytest_npu.ir.from_tflite(FIXTURES / "mobilenet_v1_025.tflite")
    weights = [t.data for t in graph.tensors.values() if t.data is not None and t.dtype == "int8" and t.data.ndim >= 2]
    total = sum(w.size for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    dead = sum(int((w.reshape(-1, w.shape[-1]) == 0).all(axis=0).sum()) for w in weights if w.ndim >= 3)
    assert zeros / total > 0.5 and dead > 0
    assert pytest_npu.compile(FIXTURES / "mobilenet_v1_025.tflite", "u55-128").unsupported() == []
