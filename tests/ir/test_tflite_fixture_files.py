"""The shipped TFLite fixtures are what ``fixtures/tflite/README.md`` says, and ``samples.py``
reproduces the inputs they were trained on: LiteRT's reference kernels classify held-out digits
from ``samples()`` well above chance (a drift in the preprocessing would drop them to chance), and
the pruned MobileNet keeps its >50 % zero int8 weights and all-zero output channels."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_interpreter = pytest.importorskip("ai_edge_litert.interpreter")
pytest.importorskip("sklearn")

HERE = Path(__file__).resolve().parents[2] / "fixtures" / "tflite"
_spec = importlib.util.spec_from_file_location("tflite_fixture_samples", HERE / "samples.py")
samples_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples_module)

MODELS = sorted(p.stem for p in HERE.glob("*.tflite"))
N = 64


def _interpret(name: str) -> _interpreter.Interpreter:
    return _interpreter.Interpreter(model_path=str(HERE / f"{name}.tflite"),
                                    experimental_op_resolver_type=_interpreter.OpResolverType.BUILTIN_REF)


def _run(name: str, x: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    it = _interpret(name)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = inp["quantization"]
    info = np.iinfo(inp["dtype"])
    q = np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(inp["dtype"])
    it.resize_tensor_input(inp["index"], q.shape)
    it.allocate_tensors()
    it.set_tensor(inp["index"], q)
    it.invoke()
    return it.get_tensor(out["index"]), inp, out


def test_every_model_has_its_samples():
    assert set(MODELS) == set(samples_module.SHAPES)
    assert len(MODELS) >= 7


@pytest.mark.parametrize("name", MODELS)
def test_reference_kernels_run_the_held_out_samples(name):
    x = samples_module.samples(name, N)
    y, inp, out = _run(name, x)
    assert tuple(inp["shape_signature"][1:]) == x.shape[1:] == samples_module.SHAPES[name]
    assert inp["dtype"] == out["dtype"] == (np.int16 if name.endswith("_int16") else np.int8)
    if name == "autoencoder":   # 0.039 measured; predicting the mean image: 0.174
        scale, zero = out["quantization"]
        mse = np.mean(((y.astype(np.float64) - zero) * scale - x) ** 2)
        assert mse < 0.5 * np.mean((x - x.mean(axis=0)) ** 2)
    else:
        assert np.mean(y.argmax(-1) == samples_module.labels(name, N)) >= 0.7


def test_pruned_mobilenet_has_zero_weights_and_dead_channels():
    it = _interpret("mobilenet_v1_025")
    it.allocate_tensors()
    axes = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
    weights = zeros = dead = 0
    for op in it._get_ops_details():
        if op["op_name"] in axes:
            w = np.moveaxis(it.get_tensor(op["inputs"][1]), axes[op["op_name"]], 0)
            weights, zeros = weights + w.size, zeros + int((w == 0).sum())
            dead += int((w.reshape(len(w), -1) == 0).all(axis=1).sum())
    assert zeros > weights / 2 and dead >= 10, (zeros, weights, dead)
