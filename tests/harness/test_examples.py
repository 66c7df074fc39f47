"""The example suite (examples/) runs as a user would run it: budgets on several targets, a fuzzed
accuracy test and a baseline-gated test, with the committed baselines in examples/__npu__/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_example_suite_passes_and_a_moved_baseline_fails_with_its_delta(pytester, bytecode_cache):
    for path in EXAMPLES.iterdir():
        if path.name in {"conftest.py", "pytest.ini"} or path.name.startswith("test_"):
            shutil.copy(path, pytester.path / path.name)
    # 1. the suite as a user runs it the first time: budgets hold on every target, baselines recorded
    # (the committed examples/__npu__ files are the same kind of record, refreshed when the compiler
    # or the models change; recording here keeps this test about the workflow, not about today's numbers)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--npu-no-history", "--npu-json=run.json",
                                           "--npu-update-baseline")
    result.assert_outcomes(passed=8)
    records = json.loads((pytester.path / "run.json").read_text())["tests"]
    assert len(records) == 9 and all(r["status"] == "ok" for r in records)
    by_test = {(r["name"], r["target"]): r for r in records}
    int8 = by_test[("test_int8_port[u55-128]", "u55-128")]
    assert int8["budgets"] == {"energy_mj": 0.002, "latency_ms": 0.05, "model_kib": 16.0, "sqnr_db": 30.0,
                               "sram_kib": 64.0, "top1_drop": 0.01}
    assert int8["metrics"]["top1"] > 0.95
    fuzz = by_test[("test_int8_accuracy_on_any_image", "u55-256")]
    assert fuzz["runs"] > 1 and fuzz["metrics"]["cosine"] >= 0.99

    # 2. pretend the last release was faster: the regression gate must catch the difference
    baseline_file = pytester.path / "__npu__" / "test_digits_regression.json"
    baseline = json.loads(baseline_file.read_text())
    entry = baseline["tests"]["test_int8_figures_do_not_regress[u55-256]"]["u55-256"]["metrics"]
    recorded_cycles = entry["cycles"]
    entry["cycles"] = recorded_cycles - 100
    baseline_file.write_text(json.dumps(baseline, indent=2, sort_keys=True) + "\n")
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--npu-no-history", "test_digits_regression.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "NPU check failed: test_digits_regression.py::test_int8_figures_do_not_regress[[]u55-256[]] "
        "on target u55-256 (1 check failed, 1 run(s))",
        "", "metric    budget    measured    margin    baseline    delta    note", "*",
        f"cycles    -         {int(recorded_cycles):,} * -  * {int(recorded_cycles) - 100:,} * 100 * "
        "regressed by +100 (+*%), tolerance exact",
    ])


def test_committed_example_baselines_cover_every_example_test():
    """Every example test x target has a committed entry (refresh: pytest examples --npu-update-baseline)."""
    entries = set()
    for path in (EXAMPLES / "__npu__").glob("*.json"):
        for test, targets in json.loads(path.read_text())["tests"].items():
            entries |= {(path.stem, test, target) for target in targets}
    assert {("test_digits_regression", "test_int8_figures_do_not_regress[u55-256]", "u55-256"),
            ("test_digits_port", "TestAccuracy.test_int8_port[edge-3core]", "edge-3core"),
            ("test_digits_fuzz", "test_int8_accuracy_on_any_image", "u55-256")} <= entries
    assert len(entries) == 9
