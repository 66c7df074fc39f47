"""pytest-npu as a package, not a checkout: the wheel carries the built-in targets and the reference
models' artifacts, and installed into a fresh virtualenv outside the repository (core
dependencies only, no torch) it lists its targets and runs a budget test.

The wheel is built from a copy of the package sources with ``python -m build --no-isolation``
(setuptools and build come with the dev extra), so the build needs no network and writes nothing
into the checkout. Installing the wheel resolves its dependencies with pip, under the
repository's constraints file like every install here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "pytest_npu", "reference_models")

pytestmark = pytest.mark.package

BUDGET_SUITE = '''
import numpy as np
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from pytest_npu.harness import ModelPair
from reference_models import digits_cnn


class Calibration(CalibrationDataReader):
    """Uniform images in [0, 1] (the digits' range): no scikit-learn needed for a core install."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.batches = iter([{"x": rng.uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)} for _ in range(32)])

    def get_next(self):
        return next(self.batches, None)


@pytest.fixture(scope="session")
def digits_int8(tmp_path_factory):
    """The shipped float digits CNN quantised by onnxruntime (the user's own tool, no torch)."""
    out = tmp_path_factory.mktemp("models") / "digits_int8.onnx"
    quantize_static(str(digits_cnn.onnx_path()), str(out), Calibration(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
    return ModelPair(out, digits_cnn.onnx_path())


@pytest.mark.npu_budget(latency_ms=0.05, energy_mj=0.005, sram_kib=64)
def test_digits_port(npu, npu_target, digits_int8):
    images = np.random.default_rng(1).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    npu.run(digits_int8, images, reference="float")
'''


def _clean_env(venv: Path | None = None) -> dict[str, str]:
    """The environment without anything pointing back at this checkout or this virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


def _run(command: list, cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (no build isolation: offline and about a second)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, "."], source, _clean_env())
    (built,) = dist.glob("pytest_npu-*.whl")
    return built


def test_the_wheel_carries_targets_artifacts_and_license(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    builtin = {p.name for p in (ROOT / "pytest_npu" / "targets" / "builtin").glob("*.toml")}
    assert {n.rsplit("/", 1)[-1] for n in names if n.startswith("pytest_npu/targets/builtin/")} == builtin
    artifacts = {p.name for p in (ROOT / "reference_models" / "artifacts").iterdir()}
    assert {n.rsplit("/", 1)[-1] for n in names if n.startswith("reference_models/artifacts/")} == artifacts
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/", "examples/")) for n in names)
    assert "License-Expression: Apache-2.0" in metadata and any(n.endswith("licenses/LICENSE") for n in names)
    assert "npu = pytest_npu.harness.plugin" in entry_points and "pytest-npu = pytest_npu.cli:main" in entry_points
    assert "Provides-Extra: html" in metadata and "Provides-Extra: torch" in metadata


def test_a_fresh_venv_outside_the_repo_lists_targets_and_passes_a_budget_test(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, _clean_env())
    env = _clean_env(venv)
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", ROOT / "constraints.txt",
          wheel], tmp_path, env)
    project = tmp_path / "my-project"
    project.mkdir()
    located = _run([python, "-c", "import pytest_npu, reference_models; print(pytest_npu.__file__); "
                    "print(reference_models.__file__)"], project, env).stdout
    assert str(ROOT) not in located and str(venv) in located
    targets = _run([venv / "bin" / "pytest-npu", "targets"], project, env).stdout
    assert all(name in targets for name in ("u55-128", "u55-256", "u65-512", "edge-3core"))
    (project / "test_port.py").write_text(BUDGET_SUITE)
    run = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--npu-no-baseline",
                "--npu-target=u55-256", "--npu-target=edge-3core"], project, env)
    assert "2 passed" in run.stdout and "npu summary" in run.stdout
