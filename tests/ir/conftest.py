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
from torch_models import build_cnn, build_mixed


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
        _export(build_mixed(), torch.randn(1, 3, 8, 8), paths["float"])
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
        _export(build_cnn(), torch.randn(1, 1, 8, 8), paths["float"])
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
