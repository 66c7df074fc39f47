"""Real models for the import tests: a tiny torch CNN exported once per session and quantised
with onnxruntime (QDQ int8, QDQ int16 activations, QOperator, dynamic).

Under pytest-xdist the workers share one export (a file lock in the run's base temp folder), so
two cores do not both pay for the dynamo exporter."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest


@contextlib.contextmanager
def _shared_folder(tmp_path_factory, worker_id: str, name: str) -> Iterator[tuple[Path, bool]]:
    """(folder, already built): one folder per test run, shared by the xdist workers."""
    if worker_id == "master":
        yield tmp_path_factory.mktemp(name), False
        return
    from filelock import FileLock  # a torch dependency, present whenever these tests run

    folder = tmp_path_factory.getbasetemp().parent / name
    folder.mkdir(exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        done = folder / "done"
        yield folder, done.exists()
        done.touch()


def _build_once(tmp_path_factory, request, name: str, names: list[str],
                build: Callable[[dict[str, Path]], None]) -> dict[str, Path]:
    worker = getattr(request.config, "workerinput", {}).get("workerid", "master")
    with _shared_folder(tmp_path_factory, worker, name) as (folder, built):
        paths = {n: folder / f"{n}.onnx" for n in names}
        if not built:
            logging.getLogger().setLevel(logging.ERROR)   # the quantiser's "consider pre-processing"
            build(paths)
        return paths


def _export(model, x, path) -> None:
    """Dynamo export, batch dim dynamic, one self-contained file; torch's own deprecation noise
    (a FutureWarning about its tree specs, raised from copyreg) is not ours to fix."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(model, (x,), path, dynamo=True, external_data=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)


def _calibration(n: int = 8):
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((4, 1, 8, 8)).astype(np.float32)} for _ in range(n)]


def _reader():
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(_calibration())

        def get_next(self):
            return next(self.batches, None)

    return Reader()


def _build_cnn():
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        """Conv-BN-ReLU-MaxPool x2, a depthwise conv, Flatten, Linear: the layout cases that matter."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 8, 3, padding=1)
            self.b1 = nn.BatchNorm2d(8)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.c2 = nn.Conv2d(8, 12, 3, padding=1)
            self.fc = nn.Linear(12 * 2 * 2, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.b1(self.c1(x))), 2)
            x = torch.relu(self.dw(x))
            x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():     # non-trivial BatchNorm statistics so the fold is exercised
        model.b1.running_mean.uniform_(-0.5, 0.5)
        model.b1.running_var.uniform_(0.5, 2.0)
        model.b1.weight.uniform_(0.5, 1.5)
    return model


def _build_mixed():
    import torch
    from torch import nn

    class Mixed(nn.Module):
        """The exporter's other idioms: HardSwish, grouped conv, gating Mul, Concat, nearest
        Upsample, AvgPool, mean over H,W (ReduceMean), LayerNorm, GELU, Softmax; two outputs."""

        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1, stride=2)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=2)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.ln = nn.LayerNorm(16)
            self.fc = nn.Linear(16, 5)

        def forward(self, x):
            a = nn.functional.hardswish(self.c1(x))
            b = torch.sigmoid(self.c2(a)) * a
            c = torch.cat([a, nn.functional.leaky_relu(b, 0.1)], 1)
            d = nn.functional.avg_pool2d(self.up(c), 2)
            f = nn.functional.gelu(self.ln(d.mean((2, 3))))
            return torch.softmax(self.fc(f), -1), torch.tanh(d)

    torch.manual_seed(1)
    return Mixed().eval()


def _mixed_reader():
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(2)
            self.batches = iter([{"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)} for _ in range(6)])

        def get_next(self):
            return next(self.batches, None)

    return Reader()


@pytest.fixture(scope="session")
def mixed_models(tmp_path_factory, request) -> dict[str, Path]:
    """A second real export (other ops, two outputs) and its QDQ int8 quantisation."""
    torch = pytest.importorskip("torch", reason="the real-model tests export with torch ([torch] extra)")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    def build(paths):
        _export(_build_mixed(), torch.randn(1, 3, 8, 8), paths["float"])
        quantize_static(str(paths["float"]), str(paths["qdq8"]), _mixed_reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)

    return _build_once(tmp_path_factory, request, "mixed", ["float", "qdq8"], build)


@pytest.fixture(scope="session")
def cnn_models(tmp_path_factory, request) -> dict[str, Path]:
    """float (opset 20 and 21), QDQ int8, QDQ int16 activations, QOperator and dynamic models."""
    import onnx

    torch = pytest.importorskip("torch", reason="the real-model tests export with torch ([torch] extra)")
    from onnx import version_converter
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    def build(paths):
        _export(_build_cnn(), torch.randn(1, 1, 8, 8), paths["float"])
        # int16 activations need opset 21; converting the export is faster than a second export
        onnx.save(version_converter.convert_version(onnx.load(paths["float"]), 21), paths["float21"])
        for name, src, fmt, act in (("qdq8", "float", QuantFormat.QDQ, QuantType.QInt8),
                                    ("qdq_u8", "float", QuantFormat.QDQ, QuantType.QUInt8),
                                    ("qdq16", "float21", QuantFormat.QDQ, QuantType.QInt16),
                                    ("qop8", "float", QuantFormat.QOperator, QuantType.QUInt8)):
            quantize_static(str(paths[src]), str(paths[name]), _reader(), quant_format=fmt,
                            per_channel=True, activation_type=act, weight_type=QuantType.QInt8)
        quantize_dynamic(str(paths["float"]), str(paths["dynamic"]), weight_type=QuantType.QInt8)

    return _build_once(tmp_path_factory, request, "cnn",
                       ["float", "float21", "qdq8", "qdq_u8", "qdq16", "qop8", "dynamic"], build)


@pytest.fixture(scope="session")
def cnn_inputs() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((6, 1, 8, 8)).astype(np.float32)
