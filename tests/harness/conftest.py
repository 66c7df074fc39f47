"""Shared fixtures for the plugin tests: a tiny real QDQ model (onnx.helper + onnxruntime quantiser).

Pytester runs get the model files copied into their directory, so the same files work for
in-process and subprocess (xdist) runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import hypothesis  # noqa: F401  (see below)
import numpy as np
import pytest

# pytester's in-process runs drop every module first imported inside them, and this environment
# writes no bytecode cache, so hypothesis (imported by its plugin in each inner run) would be
# re-imported and assertion-rewritten in every run: importing it here once saves ~2 s a run.

# pytester is enabled for the whole suite in pyproject.toml (addopts -p pytester)

HERE = Path(__file__).parent


def _float_model():
    """x (N,1,4,4) -> Conv 3x3 (2 ch, pad 1) -> Relu -> Flatten -> Gemm (32 -> 3) = y (N,3)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (2,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.3, (3, 32)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (3,)).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Flatten", ["relu"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def calibration() -> np.ndarray:
    return np.random.default_rng(1).uniform(0.0, 1.0, (32, 1, 4, 4)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_calibration() -> np.ndarray:
    return calibration()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{'float': path, 'qdq': path}: a float model and its int8 QDQ (per-channel) quantisation."""
    import logging

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    directory = tmp_path_factory.mktemp("tiny")
    float_path, qdq_path = directory / "tiny_float.onnx", directory / "tiny_qdq.onnx"
    onnx.save(_float_model(), float_path)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": batch[None]} for batch in calibration()])

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)
    quantize_static(str(float_path), str(qdq_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
    return {"float": float_path, "qdq": qdq_path}


@pytest.fixture(scope="session")
def _bytecode_dir() -> Path:
    """Shared by sessions and xdist workers (a cache: stale entries are checked against the sources)."""
    import os
    import tempfile

    return Path(tempfile.gettempdir()) / f"pytest-npu-pycache-{os.getuid()}"


@pytest.fixture
def bytecode_cache(monkeypatch, _bytecode_dir):
    """Let subprocess runs cache bytecode in a private directory (the environment disables it, so
    each child would otherwise compile numpy, onnx, hypothesis... from source); nothing is written
    beside the sources."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(_bytecode_dir))


@pytest.fixture
def npu_dir(pytester, tiny_models):
    """A pytester directory holding the tiny models and a conftest exposing them as fixtures."""
    # pytester restores sys.modules after each in-process run; importing the stages here keeps one
    # copy of each class (a Target made by a re-imported loader must still be a Target to the compiler)
    import pytest_npu.compiler.api  # noqa: F401
    import pytest_npu.harness.diagnose  # noqa: F401
    import pytest_npu.metrics  # noqa: F401
    import pytest_npu.npu.emulator  # noqa: F401
    import pytest_npu.targets  # noqa: F401

    for path in tiny_models.values():
        shutil.copy(path, pytester.path / path.name)
    np.save(pytester.path / "calib.npy", calibration())
    pytester.makeconftest(CONFTEST)
    # baselines/history (engineer G's plugin) have their own tests; here they would demand baselines
    pytester.makeini("[pytest]\nnpu_host_runs = 1\nnpu_baseline = false\nnpu_history = off\n")
    return pytester


CONFTEST = '''
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def qdq():
    return HERE / "tiny_qdq.onnx"


@pytest.fixture(scope="session")
def pair():
    return (HERE / "tiny_qdq.onnx", HERE / "tiny_float.onnx")


@pytest.fixture(scope="session")
def x():
    return np.load(HERE / "calib.npy")[:8]
'''
