"""The per-layer table as people read it: one column order, units in the headers, exact figures,
a terminal table that fits the terminal, and a CSV with every column (``inspect --csv``)."""

from __future__ import annotations

import csv
import io

import onnx
import pytest
from models import qdq_model

from pytest_npu import compiler
from pytest_npu.cli import main
from pytest_npu.compiler.report import csv_text, layer_columns, layer_view, table

ROWS = [
    {"layer": "conv1", "op": "conv2d", "where": "npu", "reason": "", "in_shapes": [[8, 8, 1]],
     "out_shapes": [[8, 8, 16]], "macs": 9216, "cycles": 896, "dram_bytes": 288, "sram_peak": 7408,
     "energy_mj": 5.0165344e-05, "efficiency": 0.3214, "vela_cycles": 901},
    {"layer": "softmax", "op": "softmax", "where": "host", "reason": "not in the instruction set",
     "in_shapes": [[10]], "out_shapes": [[10]], "macs": 0, "cycles": 3104, "dram_bytes": 40, "sram_peak": 0,
     "energy_mj": 1.2e-06, "efficiency": None},
]


def test_columns_come_in_a_fixed_order_and_new_figures_slot_in_after_them():
    headers = [c.header for c in layer_columns(layer_view(ROWS))]
    assert headers[:6] == ["layer", "op", "where", "cycles", "cycles %", "MACs"]
    assert headers[-1] == "vela_cycles"                       # a figure no column describes yet still shows
    assert "efficiency" not in headers and "roofline %" in headers


def test_cells_have_separators_units_and_no_none():
    text = table(ROWS, width=None)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["layer", "op", "where", "cycles"]
    assert "3,104" in text and "9,216" in text and "8x8x16" in text and "50.2" in text   # nJ, 3 digits
    assert "None" not in text and "e-0" not in text and "[[" not in text
    assert "77.6" in text                                     # softmax: 3104 of 4000 cycles


def test_mac_utilisation_and_sram_share_need_the_target_figures():
    plain = layer_view(ROWS)
    assert "mac_util" not in plain[0] and "sram_peak_share" not in plain[0]
    view = layer_view(ROWS, peak_macs_per_cycle=128, sram_bytes=65536)
    assert view[0]["mac_util"] == pytest.approx(9216 / (896 * 128))
    assert "mac_util" not in view[1]                          # a host layer uses no MAC array
    assert view[0]["sram_peak_share"] == pytest.approx(7408 / 65536)


def test_csv_keeps_exact_figures_and_every_column():
    rows = list(csv.DictReader(io.StringIO(csv_text(ROWS, {"test": "t.py::test_a", "target": "u55-128"},
                                                    peak_macs_per_cycle=128))))
    assert list(rows[0])[:6] == ["test", "target", "layer", "op", "where", "cycles"]
    assert [int(r["cycles"]) for r in rows] == [896, 3104] and rows[0]["in_shapes"] == "8x8x1"
    assert rows[1]["host_reason"] == "not in the instruction set" and rows[0]["host_reason"] == ""
    assert float(rows[0]["energy_nj"]) == pytest.approx(50.165344) and rows[0]["vela_cycles"] == "901"
    assert sum(float(r["cycles_pct"]) for r in rows) == pytest.approx(100, abs=0.02)


def test_inspect_fits_the_terminal_and_writes_the_csv(tmp_path, capsys, monkeypatch):
    q, _ = qdq_model("cnn")
    path = tmp_path / "cnn.onnx"
    onnx.save(q, path)
    monkeypatch.setenv("COLUMNS", "80")
    out_csv = tmp_path / "layers.csv"
    assert main(["inspect", str(path), "--target", "u55-256", "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    layer_lines = out.split("\n\n")[1].splitlines()
    assert max(len(line) for line in layer_lines) <= 80
    assert "left out to fit the terminal" in out and f"wrote {out_csv}" in out
    rows = list(csv.DictReader(out_csv.open()))
    expected = compiler.compile(str(path), "u55-256").layers()
    assert [(r["layer"], int(r["cycles"]), int(r["macs"])) for r in rows] == [
        (r["layer"], r["cycles"], r["macs"]) for r in expected]
    assert all(r["mac_util_pct"] != "" for r in rows if r["where"] == "npu" and int(r["cycles"]))


def test_inspect_csv_to_an_unwritable_place_is_a_clear_error(tmp_path, capsys):
    q, _ = qdq_model("cnn")
    path = tmp_path / "cnn.onnx"
    onnx.save(q, path)
    assert main(["inspect", str(path), "--target", "u55-256", "--csv", str(tmp_path / "no" / "x.csv")]) == 2
    assert "--csv" in capsys.readouterr().err
