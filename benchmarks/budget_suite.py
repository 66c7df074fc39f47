"""N real budget tests on a tiny QDQ model, written into a directory: the suite the harness
benchmarks run as fresh pytest processes (``test_bench_harness.py``, ``history_shards.py``).

The budgets are twice the figures the tiny model measures on the default target here (so every
test passes on budgets that a 2x regression would break) and the MSE the float model allows.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compiler"))
logging.getLogger().setLevel(logging.ERROR)

from models import Builder, quantize  # noqa: E402

import pytest_npu  # noqa: E402

SHAPE = (1, 1, 4, 4)

BUDGET_MODULE = '''
from pathlib import Path

import numpy as np
import pytest

from pytest_npu.harness import ModelPair

HERE = Path(__file__).parent
PAIR = ModelPair(HERE / "tiny_qdq.onnx", HERE / "tiny_float.onnx")
X = np.load(HERE / "inputs.npy")


@pytest.mark.npu_budget(latency_ms={latency_ms!r}, energy_mj={energy_mj!r}, mse={mse!r})
@pytest.mark.parametrize("case", range({n}))
def test_budget(npu, case):
    npu.run(PAIR, X[case % len(X):][:4], reference="float")
'''


def write_budget_suite(directory: Path, tests: int) -> None:
    """The tiny float/QDQ pair, 16 inputs and ``test_budgets.py`` with ``tests`` budget tests."""
    builder = Builder(SHAPE, seed=0).conv(2).flatten().fc(3)
    float_model = builder.model()
    x = np.random.default_rng(1).uniform(0.0, 1.0, (16, *SHAPE[1:])).astype(np.float32)
    qdq = quantize(float_model, SHAPE, data=x)
    onnx.save(float_model, directory / "tiny_float.onnx")
    onnx.save(qdq, directory / "tiny_qdq.onnx")
    np.save(directory / "inputs.npy", x)
    summary = pytest_npu.compile(qdq, "u55-256").run(x[:4]).summary
    (directory / "test_budgets.py").write_text(BUDGET_MODULE.format(
        n=tests, latency_ms=2 * summary.latency_ms, energy_mj=2 * summary.energy_mj, mse=1e-2))
