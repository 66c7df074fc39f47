"""What a person reads after a run: the npu summary fits the terminal, ``--npu-layers-csv`` holds
every layer of every test x target, and the HTML pages work without the network."""

from __future__ import annotations

import csv
import re

import pytest

from pytest_npu.errors import ReportError
from pytest_npu.harness import html
from pytest_npu.harness.history import Change, Point

PORT = """
import pytest

@pytest.mark.npu_budget(latency_ms=1000.0, sqnr_db=1.0)
def test_port_with_a_long_descriptive_name(npu, pair, x, npu_target):
    npu.run(pair, x, reference="float")
"""


def _summary(stdout: str) -> list[str]:
    return stdout.split("npu summary", 1)[1].split("\n", 1)[1].split("npu: wrote")[0].split("=====")[0].splitlines()


def test_summary_fits_the_terminal_and_names_what_it_left_out(npu_dir, monkeypatch):
    npu_dir.makepyfile(test_port=PORT)
    monkeypatch.setenv("COLUMNS", "80")
    result = npu_dir.runpytest("--npu-target=u55-128", "--npu-target=edge-3core")
    result.assert_outcomes(passed=2)
    lines = [line for line in _summary(result.stdout.str()) if line.strip()]
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert lines[0].split()[:3] == ["test", "target", "latency_ms"]          # budgeted figures stay
    assert "sqnr_db" in lines[0]
    rows = [line for line in lines if "u55-128" in line or "edge-3core" in line]
    assert len(rows) == 2 and all("[" not in row for row in rows)           # the target column says it
    assert "left out to fit the terminal" in " ".join(lines) and "host_ms" in " ".join(lines)
    monkeypatch.setenv("COLUMNS", "250")
    wide = npu_dir.runpytest("--npu-target=u55-128")
    header = [line for line in _summary(wide.stdout.str()) if line.strip()][0]
    assert header.split() == ["test", "target", "latency_ms", "cycles", "energy_mj", "sram_kib", "mse",
                              "sqnr_db", "host_ms", "speedup", "verdict"]
    assert "test_port.py::test_port_with_a_long_descriptive_name[u55-128]" in wide.stdout.str()


def test_layers_csv_holds_every_test_and_target(npu_dir):
    npu_dir.makepyfile(test_port=PORT)
    result = npu_dir.runpytest("--npu-target=u55-128", "--npu-target=edge-3core", "--npu-layers-csv=out/layers.csv",
                               "--npu-json=run.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["npu: wrote out/layers.csv"])
    rows = list(csv.DictReader((npu_dir.path / "out" / "layers.csv").open()))
    assert list(rows[0])[:5] == ["test", "target", "layer", "op", "where"]
    by_target = {target: [r for r in rows if r["target"] == target] for target in ("u55-128", "edge-3core")}
    assert all(by_target.values()) and len(rows) == sum(len(v) for v in by_target.values())
    import json

    document = json.loads((npu_dir.path / "run.json").read_text())
    for test in document["tests"]:
        mine = by_target[test["target"]]
        assert [int(r["cycles"]) for r in mine] == [layer["cycles"] for layer in test["layers"]]
    # MAC utilisation needs the cores the program ran on: u55-128 has one; on edge-3core the compiler chose
    assert any(r["mac_util_pct"] for r in by_target["u55-128"])
    assert not any(r["mac_util_pct"] for r in by_target["edge-3core"])


def _points():
    points, regressions = [], []
    for run_id, (label, cycles, energy) in enumerate([("v1.0", 1000, 1.0e-3), ("v1.1", 1080, 1.0087e-3)], 1):
        for metric, value in (("cycles", cycles), ("energy_mj", energy)):
            points.append(Point(run_id, label, "", "t.py::test_a[u55-256]", "u55-256", metric, float(value)))
    regressions.append((points[2], Change("t.py::test_a[u55-256]", "u55-256", "cycles", 1000.0, 1080.0,
                                          "regressed", "exact")))
    return points, regressions


def test_history_page_marks_only_flagged_steps_and_scales_gently():
    pytest.importorskip("plotly")
    points, regressions = _points()
    page = html.render_history(points, {("t.py::test_a[u55-256]", "u55-256"): [{"layer": "conv", "cycles": 1080}]},
                               regressions, source="h.sqlite")
    assert page.count("Plotly.newPlot(") == 2 and page.count("<script>") == 1 + 2   # plotly.js once
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=", page)
    assert "1 regression between consecutive releases" in page and "+80 (+8.00%)" in page
    assert page.index("<h2>cycles") < page.index("<h2>energy_mj")                   # costs in vocabulary order
    assert "vs v1.0: +0.0000087 (+0.87%)" in page                                   # hover: the step, no exponent
    # energy moved 0.87 %, within its tolerance: drawn on an axis of at least +-5 %, and not marked
    axis = html.value_axis([1.0e-3, 1.0087e-3], (0.0, None))
    assert axis["range"][1] - axis["range"][0] >= 0.1 * 1.0e-3
    assert html.value_axis([1e-4, 3e-2])["type"] == "log"                           # decades: log
    assert html.value_axis([0.95, 0.9999], (-1.0, 1.0))["range"][1] == 1.0           # a cosine stops at 1


def test_a_page_without_plotly_names_the_extra(without_plotly):
    with pytest.raises(ReportError, match=r"pip install 'pytest-npu\[html\]'"):
        html.render_history(*_points()[:1], {}, [])
