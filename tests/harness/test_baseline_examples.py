"""The example suite passes against its committed baselines (examples/__npu__) on this machine.

The baselines hold exact figures (cycles, energy, memory: compared exactly) and figures against a
float reference (compared with the measured default tolerances), so this must hold on any CPU:
CI runs it again with torch forced onto other kernels (``ATEN_CPU_CAPABILITY=avx2`` and
``=default``, see the Makefile's ``test`` target).
"""

from __future__ import annotations

import shutil
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_pass_against_their_committed_baselines(pytester, bytecode_cache):
    for path in EXAMPLES.iterdir():
        if path.name in {"conftest.py", "pytest.ini", "__npu__"} or path.name.startswith("test_"):
            (shutil.copytree if path.is_dir() else shutil.copy)(path, pytester.path / path.name)
    committed = {path.name: path.read_bytes() for path in (pytester.path / "__npu__").iterdir()}
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", "--npu-no-history")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["9 passed against baselines"])
    assert "regressed" not in result.stdout.str() and "stale" not in result.stdout.str()
    assert {path.name: path.read_bytes() for path in (pytester.path / "__npu__").iterdir()} == committed
