"""Start-up cost of the pytest-npu plugin for a run that never touches an NPU.

Every pytest run in an environment with pytest-npu installed loads the plugin, so its import must
stay cheap (goal: < 0.3 s added to `pytest --co`; the heavy stages load on the first `npu.run`).
Measured in fresh subprocesses; extra_info carries the medians and the difference.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest

PLUGIN_IMPORT = ("import time, pytest; start = time.perf_counter(); import pytest_npu.harness.plugin; "
                 "print(time.perf_counter() - start)")


def _collect_seconds(directory, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", *extra],
                   cwd=directory, capture_output=True, check=False)
    return time.perf_counter() - start


@pytest.mark.benchmark(group="plugin start-up")
def test_plugin_import_time(benchmark):
    """The plugin module's own import on top of an already imported pytest (seconds)."""
    samples: list[float] = []

    def measure() -> None:
        output = subprocess.run([sys.executable, "-c", PLUGIN_IMPORT], capture_output=True, text=True,
                                check=True)
        samples.append(float(output.stdout))

    benchmark.pedantic(measure, rounds=7, iterations=1)
    benchmark.extra_info["plugin_import_median_s"] = statistics.median(samples)
    assert statistics.median(samples) < 0.3


@pytest.mark.benchmark(group="plugin start-up")
def test_collect_overhead_in_an_empty_directory(benchmark, tmp_path):
    """`pytest --co` in an empty directory with the plugin minus with `-p no:npu` (interleaved, medians)."""
    def overhead() -> float:
        with_plugin, without = [], []
        for _ in range(3):
            with_plugin.append(_collect_seconds(tmp_path))
            without.append(_collect_seconds(tmp_path, "-p", "no:npu"))
        benchmark.extra_info.update(with_npu_s=statistics.median(with_plugin),
                                    without_npu_s=statistics.median(without))
        return statistics.median(with_plugin) - statistics.median(without)

    difference = benchmark.pedantic(overhead, rounds=1, iterations=1)
    benchmark.extra_info["overhead_s"] = difference
    assert difference < 0.3
