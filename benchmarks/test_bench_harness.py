"""What the pytest-npu harness costs a suite: 100 budget tests on a tiny QDQ model, serial and `-n 2`.

Each run is a fresh `python -m pytest` subprocess (as in CI), timed from start to exit.  The same
100 tests with plain asserts on the same data and the plugin loaded but idle give the baseline, so
`overhead_s` is what compiling, emulating, comparing, checking budgets and writing the records add.
Goal: the 100 budget tests take <= 60 s with `-n 2`.

Run: `.venv/bin/pytest benchmarks/test_bench_harness.py -p no:randomly --benchmark-only`
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_benchmark")
pytest.importorskip("xdist")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget_suite import write_budget_suite  # noqa: E402

N_TESTS = 100
XDIST_GOAL_S = 60.0

PLAIN_MODULE = '''
from pathlib import Path

import numpy as np
import pytest

X = np.load(Path(__file__).parent / "inputs.npy")


@pytest.mark.parametrize("case", range({n}))
def test_plain(case):
    assert np.isfinite(X[case % len(X):][:4]).all()
'''


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    """A directory holding the tiny float/QDQ pair, inputs and both generated modules
    (``budget_suite.py``: budgets twice what the tiny model measures)."""
    directory = tmp_path_factory.mktemp("harness-suite")
    write_budget_suite(directory, N_TESTS)
    (directory / "test_plain.py").write_text(PLAIN_MODULE.format(n=N_TESTS))
    (directory / "pytest.ini").write_text("[pytest]\n")
    return directory


def _environment(directory: Path) -> dict[str, str]:
    """Bytecode cached in a private folder (the environment disables it; children would recompile)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
    return env


def _pytest(directory: Path, module: str, workers: int, *extra: str, expect: int = N_TESTS) -> tuple[float, str]:
    """Wall seconds of one `python -m pytest` run and its output; a failed run fails the benchmark."""
    command = [sys.executable, "-m", "pytest", module, "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               "--npu-no-baseline", "--npu-no-history", *(["-n", str(workers)] if workers else ["-p", "no:xdist"]),
               *extra]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=_environment(directory), capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}"
    assert re.search(rf"\b{expect} passed\b", done.stdout), done.stdout[-2000:]
    # as a reader would type it in the suite's directory: no path of this machine in the report
    shown = ["python", *command[1:]]
    return seconds, " ".join(Path(c).name if c.startswith(str(directory)) else c for c in shown)


@pytest.mark.benchmark(group="harness overhead")
@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "xdist-2"])
def test_hundred_budget_tests(benchmark, suite, workers):
    """Wall time of 100 budget tests minus 100 plain tests, in fresh subprocesses (seconds)."""
    _pytest(suite, "test_budgets.py::test_budget[0]", 0, expect=1)    # warm the bytecode cache; not timed
    report = suite / f"npu-{workers}.json"
    plain_s, _ = _pytest(suite, "test_plain.py", workers)
    timings: dict[str, float] = {}

    def budget_run() -> None:
        timings["budget_s"], timings["command"] = _pytest(suite, "test_budgets.py", workers,
                                                          f"--npu-json={report.name}")

    benchmark.pedantic(budget_run, rounds=1, iterations=1)
    budget_s = timings["budget_s"]
    benchmark.extra_info.update(
        tests=N_TESTS, workers=workers, budget_tests_s=round(budget_s, 2), plain_tests_s=round(plain_s, 2),
        overhead_s=round(budget_s - plain_s, 2),
        overhead_per_test_ms=round(1000 * (budget_s - plain_s) / N_TESTS, 1), command=timings["command"])

    tests = json.loads(report.read_text())["tests"]     # the controller saw every budget checked
    assert len(tests) == N_TESTS and all(t["runs"] == 1 and not t["breaches"] for t in tests)
    assert {tuple(sorted(t["budgets"])) for t in tests} == {("energy_mj", "latency_ms", "mse")}
    print(json.dumps(benchmark.extra_info, indent=1))
    if workers == 2:
        assert budget_s <= XDIST_GOAL_S, f"100 budget tests took {budget_s:.1f} s with -n 2 (goal {XDIST_GOAL_S} s)"
