"""Loading the plugin must not import the heavy stages: a run that never uses an NPU stays fast.

(The time itself is a benchmark: benchmarks/test_bench_plugin.py.)
"""

from __future__ import annotations

HEAVY = ("numpy", "onnx", "onnxruntime", "torch", "tabulate", "pytest_npu.compiler", "pytest_npu.npu",
         "pytest_npu.metrics", "pytest_npu.targets.loader")


def test_collecting_without_npu_imports_no_heavy_module(pytester, bytecode_cache):
    pytester.makeconftest(f"""
        import sys

        def pytest_sessionfinish(session):
            loaded = [name for name in {HEAVY!r} if name in sys.modules]
            open("loaded.txt", "w").write(",".join(loaded))
    """)
    pytester.makepyfile("def test_a():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert "plugins: " in result.stdout.str() and "npu-" in result.stdout.str()
    assert (pytester.path / "loaded.txt").read_text() == ""
