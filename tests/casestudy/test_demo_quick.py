"""`pytest-npu demo --quick` end to end in a temp dir: tables, HTML, models, and a green generated test.

One run feeds every check (it trains a student and emulates the held-out digits). A last check proves
the generated budgets are real gates: the same file with one latency budget halved must fail.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import subprocess
import sys

import pytest

from pytest_npu.casestudy import main

# the package exports the run(args) function under the same name as this module
run = importlib.import_module("pytest_npu.casestudy.run")

pytestmark = pytest.mark.slow


def _run_quick(out):
    capture = pytest.MonkeyPatch()
    stdout, stderr = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", stdout)
    capture.setattr(sys, "stderr", stderr)
    try:
        code = main(["--quick", "--out", str(out)])
    finally:
        capture.undo()
    return code, stdout.getvalue(), stderr.getvalue()


def test_quick_demo_end_to_end(tmp_path):
    """One test on purpose: the run is the expensive part, and under xdist a module-scoped fixture
    would run it once per worker."""
    code, stdout, stderr = _run_quick(tmp_path)
    assert code == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    _check_tables(stdout, tmp_path)
    _check_steps_and_models(stdout, tmp_path)
    _check_html(stdout, tmp_path)
    _check_generated_test(stdout, tmp_path)
    _check_a_tightened_budget_fails(tmp_path)


def _check_tables(stdout, out):
    for target in run.QUICK_TARGETS:
        section = stdout.split(f"\n{target} (")[1].split("\n\n")[0]
        rows = {line.split("  ")[0]: line for line in section.splitlines()}
        assert "float (host CPU)" in rows
        for variant in run.QUICK_VARIANTS:
            label = run.VARIANTS[variant][0]
            assert label in rows, f"{label} missing from the {target} table:\n{section}"
            assert re.search(r"\d+\.\dx\s*$", rows[label]), rows[label]      # the speedup column
    figures = json.loads((out / "figures.json").read_text())
    assert {(f["target"], f["model"]["name"]) for f in figures} == {
        (t, v) for t in run.QUICK_TARGETS for v in run.QUICK_VARIANTS}
    for fig in figures:
        assert fig["samples"] == run.QUICK_SAMPLES
        assert 0.9 <= fig["top1"] <= 1.0
        assert fig["latency_ms"] > 0 and fig["energy_mj"] > 0 and fig["cycles"] >= fig["roofline_cycles"]
        assert sum(fig["energy_breakdown_mj"].values()) == pytest.approx(fig["energy_mj"], rel=1e-6)
    pruned = next(f for f in figures if f["model"]["name"] == "pruned-kd-int8")
    dense = next(f for f in figures if f["model"]["name"] == "int8")
    assert pruned["model"]["macs"] < 0.6 * dense["model"]["macs"]       # 50 % of channels really gone


def _check_steps_and_models(stdout, out):
    assert "prune 50% structured" in stdout and "distill 2 ep" in stdout and "quantize int8" in stdout
    saved = sorted(p.name for p in (out / "models").iterdir())
    assert saved == ["digits_int8.onnx", "digits_pruned-kd-int8.onnx", "digits_pruned_kd_float.onnx"]


def _check_html(stdout, out):
    html = (out / "report.html").read_text()
    assert str((out / "report.html").resolve()) in stdout
    assert html.count("Plotly.newPlot(") >= 4 and not re.search(r"<script\b[^>]*\bsrc=", html)
    assert "cycles per inference" in html and '"barmode":"stack"' in html


def _check_generated_test(stdout, out):
    assert "generated test passed (exit code 0)" in stdout
    assert re.search(r"\b4 passed\b", stdout)
    text = (out / "test_digits_port.py").read_text()
    assert text.count("@pytest.mark.npu_budget(") == len(run.QUICK_TARGETS) * len(run.QUICK_VARIANTS)


def _check_a_tightened_budget_fails(out):
    """The budgets are real gates: halve one latency budget and that test must fail with the breach."""
    source = (out / "test_digits_port.py").read_text()
    limit = float(re.search(r"latency_ms=([0-9.e-]+)", source).group(1))
    tightened = source.replace(f"latency_ms={limit!r}", f"latency_ms={limit / 2!r}", 1)
    (out / "test_tightened.py").write_text(tightened)
    done = subprocess.run([sys.executable, "-m", "pytest", "test_tightened.py", "-q", "-p", "no:cacheprovider",
                           "-k", "TestOnU55256 and test_int8"], cwd=out, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "latency_ms" in done.stdout and "1 failed" in done.stdout


def test_unknown_target_is_refused_before_any_work(tmp_path, capsys):
    assert main(["--targets", "u55-265", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "u55-265" in err and "u55-256" in err
    assert not (tmp_path / "models").exists()
