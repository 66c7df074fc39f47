"""The example suite (examples/) runs as a user would run it: budgets on several targets, a fuzzed
accuracy test and a baseline-gated test, with the committed baselines in examples/__npu__/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_example_suite_passes_and_a_moved_baseline_fails_with_its_delta(pytester):
    for path in EXAMPLES.iterdir():
        if path.name in {"conftest.py", "pytest.ini", "__npu__"} or path.name.startswith("test_"):
            copy = shutil.copytree if path.is_dir() else shutil.copy
            copy(path, pytester.path / path.name)
    # pretend the last release was faster: the regression gate must catch the difference
    baseline_file = pytester.path / "__npu__" / "test_digits_regression.json"
    baseline = json.loads(baseline_file.read_text())
    entry = baseline["tests"]["test_int8_figures_do_not_regress[u55-256]"]["u55-256"]["metrics"]
    recorded_cycles = entry["cycles"]
    entry["cycles"] = recorded_cycles - 100
    baseline_file.write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")

    result = pytester.runpytest_subprocess("-p", "no:randomly", "--npu-no-history", "--npu-json=run.json")
    result.assert_outcomes(passed=7, failed=1)
    result.stdout.fnmatch_lines([
        "NPU check failed: test_digits_regression.py::test_int8_figures_do_not_regress[[]u55-256[]] "
        "on target u55-256 (1 check failed, 1 run(s))",
        "", "metric    budget    measured    margin    baseline    delta    note", "*",
        f"cycles    -         {int(recorded_cycles):,} * -  * {int(recorded_cycles) - 100:,} * 100 * "
        "regressed by +100 (+*%), tolerance exact",
    ])
    records = json.loads((pytester.path / "run.json").read_text())["tests"]
    assert len(records) == 9
    by_test = {(r["name"], r["target"]): r for r in records}
    int8 = by_test[("test_int8_port[u55-128]", "u55-128")]
    assert int8["budgets"] == {"energy_mj": 0.002, "latency_ms": 0.05, "model_kib": 16.0, "sqnr_db": 30.0,
                               "sram_kib": 64.0, "top1_drop": 0.01}
    assert int8["metrics"]["top1"] > 0.95 and int8["status"] == "ok"
    fuzz = by_test[("test_int8_accuracy_on_any_image", "u55-256")]
    assert fuzz["runs"] > 1 and fuzz["metrics"]["cosine"] >= 0.99
    assert by_test[("test_int8_figures_do_not_regress[u55-256]", "u55-256")]["status"] == "FAILED"
