"""Unit tests of the case study's pieces: table builder, budget derivation, test-file generator, charts."""

from __future__ import annotations

import ast
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.casestudy import report_html, table, testgen

FLOAT = table.ModelFigures("float", "float", "float32", params=5_000, size_kib=19.5, macs=84_224, top1=0.9889)
INT8 = table.ModelFigures("int8", "float -> int8", "int8", params=5_000, size_kib=5.1, macs=84_224, top1=0.9861)
PRUNED = table.ModelFigures("pruned-kd-int8", "pruned+KD -> int8", "int8", params=1_300, size_kib=1.5,
                            macs=23_000, top1=0.9833)


def port(model: table.ModelFigures, target: str, latency_ms: float, **overrides) -> table.PortFigures:
    values = dict(model=model, target=target, samples=360, top1=0.9861, top1_drop=0.0028, mse=0.0123,
                  sqnr_db=31.47, cycles=int(latency_ms * 5e5), latency_ms=latency_ms, energy_mj=0.00108,
                  energy_breakdown_mj={"mac": 7e-6, "sram": 1.6e-5, "dram": 1.0e-3, "static": 4.4e-5},
                  sram_peak_bytes=5504, dram_bytes=6386, roofline_cycles=1703, host_ms=0.05,
                  unsupported=(), layers=[{"layer": "conv1", "op": "conv2d", "cycles": 1674},
                                          {"layer": "fc", "op": "fully_connected", "cycles": 400}])
    values.update(overrides)
    return table.PortFigures(**values)


PORTS = [port(INT8, "u55-256", 0.017774), port(PRUNED, "u55-256", 0.0101),
         port(INT8, "edge-3core", 0.003319), port(PRUNED, "edge-3core", 0.0021,
                                                   unsupported=(("node_Softmax", "softmax", "not in the ISA"),))]


def test_port_tables_one_per_target_with_the_float_row_first():
    tables = table.port_tables(FLOAT, PORTS)
    assert list(tables) == ["u55-256", "edge-3core"]
    lines = tables["u55-256"].splitlines()
    assert lines[0].split()[0] == "model"
    assert "float (host CPU)" in lines[2]
    assert "float -> int8" in lines[3] and "pruned+KD -> int8" in lines[4]
    assert len(lines) == 5                        # header, rule, float, two variants
    assert "edge-3core" not in tables["u55-256"]


def test_port_row_figures_are_the_records():
    fig = PORTS[0]
    row = dict(zip(table.PORT_HEADERS, table.port_row(fig)))
    assert row["top-1 %"] == "98.6"
    assert row["latency ms"] == "0.0178"
    assert row["energy uJ"] == "1.080"
    assert row["SRAM KiB"] == f"{5504 / 1024:.1f}"
    assert row["speedup"] == f"{0.05 / 0.017774:.1f}x"
    assert row["energy split"] == "dram 94% static 4%"


def test_speedup_and_efficiency_are_derived_not_stored():
    fig = PORTS[2]
    assert fig.speedup == pytest.approx(0.05 / 0.003319)
    assert fig.efficiency == pytest.approx(1703 / fig.cycles)
    assert port(INT8, "x", 0.0).speedup == math.inf


def test_unsupported_table_lists_fallback_or_says_there_is_none():
    assert "node_Softmax" in table.unsupported_table(PORTS)
    assert "no host fallback" in table.unsupported_table(PORTS[:2])


def test_steps_table_shows_missing_figures_as_empty_cells():
    text = table.steps_table([table.StepFigures("pruned+KD", "prune 50% structured l1", 1300, 4.9, 23000,
                                                0.95, None, 1.25)])
    assert "prune 50% structured l1" in text and "95.0" in text and "1.2" in text
    assert "1,300" in text and "23,000" in text                       # thousands separators
    assert "None" not in text and text.splitlines()[-1].split()[-2:] == ["95.0", "1.2"]


def test_budgets_are_measured_figures_with_the_stated_margins():
    limits = testgen.budgets(PORTS[0])
    assert limits["latency_ms"] == 0.0196          # 0.017774 * 1.10 = 0.019551 -> up to 3 digits
    assert limits["energy_mj"] == 0.00119          # 0.001188 -> 0.00119
    assert limits["sram_kib"] == 5.92              # 5.375 KiB * 1.1 = 5.9125 -> 5.92
    assert limits["mse"] == 0.0185                 # 0.0123 * 1.5 = 0.01845 -> 0.0185
    assert limits["sqnr_db"] == 30.4               # floor: 31.47 - 1 = 30.47 -> down to 30.4
    assert limits["top1_drop"] == 0.0128           # 0.0028 + 0.01
    for metric, value in testgen.measured(PORTS[0]).items():
        margin = testgen.MARGINS[metric]
        assert (limits[metric] <= value) if margin.floor else (limits[metric] >= value)


def test_a_bit_exact_port_gets_no_sqnr_floor():
    limits = testgen.budgets(port(INT8, "u55-256", 0.01, sqnr_db=math.inf, mse=0.0))
    assert "sqnr_db" not in limits
    assert limits["mse"] == 0.0


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=1e-9, max_value=1e9), st.booleans())
def test_rounding_never_tightens_and_keeps_three_digits(value, floor):
    rounded = testgen._round_outward(value, floor)
    assert (rounded <= value) if floor else (rounded >= value * (1 - 1e-12))
    assert abs(rounded - value) <= abs(value) * 0.011
    assert len(f"{rounded:.6g}".replace(".", "").replace("-", "").lstrip("0").split("e")[0].rstrip("0")) <= 3


def test_rendered_file_uses_only_the_public_api_and_one_test_per_port():
    recipe = testgen.Recipe(samples=120, prune_amount=0.5, distill_epochs=2, calibration_samples=256,
                            command="pytest-npu demo --quick")
    text = testgen.render(PORTS, recipe)
    tree = ast.parse(text)
    imported = {alias.name if isinstance(node, ast.Import) else node.module
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    assert imported <= {"__future__", "pathlib", "pytest", "pytest_npu", "reference_models"}
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    assert set(classes) == {"TestOnU55256", "TestOnEdge3core"}
    tests = [f.name for f in classes["TestOnEdge3core"].body if isinstance(f, ast.FunctionDef)]
    assert tests == ["test_int8", "test_pruned_kd_int8"]
    assert '@pytest.mark.npu_target("u55-256")' in text
    assert "npu_budget(\n        latency_ms=0.0196, energy_mj=0.00119" in text
    assert "SAMPLES = 120" in text and "epochs=2" in text
    assert "def pruned_kd():" in text and "models/digits_pruned_kd_float.onnx" in text


def test_float_only_variants_do_not_train_a_student(tmp_path):
    recipe = testgen.Recipe(None, 0.5, 2, 256, "pytest-npu demo")
    path = testgen.write(tmp_path / "test_port.py", [PORTS[0]], recipe)
    text = path.read_text()
    assert "pruned_kd" not in text and "SAMPLES = None" in text
    assert "npu_baseline = false" in (tmp_path / "pytest.ini").read_text()


def test_target_paths_make_valid_class_names():
    assert testgen._class_name("/tmp/my-npu.toml") == "TestOnMyNpu"
    assert testgen._class_name("3core") == "TestOnT3core"


def test_html_charts_are_plotly_inlined_with_the_figures():
    pytest.importorskip("plotly")
    text = report_html.render(
        reference=FLOAT, host_ms=0.05, steps=[], figures=PORTS, port_headers=table.PORT_HEADERS,
        port_rows={t: [table.port_row(p) for p in PORTS if p.target == t] for t in ("u55-256", "edge-3core")},
        timings={"emulation": 1.5}, command="pytest-npu demo", test_file="t.py", test_outcome="4 passed",
        test_passed=True)
    assert text.count("Plotly.newPlot(") == 4     # accuracy/latency, energy, per-layer x 2 variants
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=", text)   # nothing fetched
    assert '"x":[0.017774,0.0101]' not in text and '"x":[0.017774]' in text  # one trace per target x variant
    assert '"name":"static"' in text and '"barmode":"stack"' in text         # energy split, with its legend
    assert "1,674" in text and "node_Softmax" in text and "passed" in text


def test_the_cli_dispatcher_can_run_the_case_study(monkeypatch, capsys):
    """configure/run follow the subcommand protocol; a bad option value is refused with its name."""
    from pytest_npu import cli

    monkeypatch.setitem(cli.SUBCOMMANDS, "demo", ("pytest_npu.casestudy", "the case study"))
    assert cli.main(["demo", "--targets", ","]) == 2
    assert "--targets ','" in capsys.readouterr().err


def test_without_plotly_the_demo_stops_before_any_work_and_says_what_to_do(tmp_path, without_plotly, capsys):
    from pytest_npu.casestudy import main

    assert main(["--quick", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'pytest-npu[html]'" in err and "--no-html" in err
    assert not (tmp_path / "out").exists()


def _settings(tmp_path):
    import importlib

    demo = importlib.import_module("pytest_npu.casestudy.run")
    return demo, demo.Settings(out=tmp_path, quick=True, targets=("u55-256",), variants=("int8",), html=False,
                               samples=8, distill_epochs=1)


def test_a_failing_step_stops_the_demo_and_names_the_step(tmp_path, monkeypatch, capsys):
    from pytest_npu.errors import CompileError

    demo, settings = _settings(tmp_path)
    ran = []
    monkeypatch.setattr(demo.Demo, "step_float", lambda self: ran.append("float"))
    monkeypatch.setattr(demo.Demo, "step_compress", lambda self: ran.append("compress"))

    def broken(self):
        raise CompileError("layer conv1: kernel 9x9 exceeds u55-256's max_kernel 8")

    monkeypatch.setattr(demo.Demo, "step_compile", broken)
    monkeypatch.setattr(demo.Demo, "step_emulate", lambda self: ran.append("emulate"))
    assert demo.Demo(settings).main() == 1
    assert ran == ["float", "compress"]
    assert "step 3 (compilation) failed: layer conv1: kernel 9x9" in capsys.readouterr().err


def test_a_failing_generated_test_fails_the_demo(tmp_path, monkeypatch, capsys):
    demo, settings = _settings(tmp_path)
    for step in ("step_float", "step_compress", "step_compile", "step_emulate", "step_figures", "step_report"):
        monkeypatch.setattr(demo.Demo, step, lambda self: None)

    def failing_test(self):
        self.test_passed = False

    monkeypatch.setattr(demo.Demo, "step_test", failing_test)
    assert demo.Demo(settings).main() == 1
    assert "the generated test failed" in capsys.readouterr().err


def test_target_files_are_made_absolute_for_the_generated_test(tmp_path, monkeypatch):
    """The generated test runs from --out, so a relative .toml path must not depend on the cwd."""
    import argparse
    import dataclasses

    from pytest_npu import targets

    demo, _ = _settings(tmp_path)
    custom = dataclasses.replace(targets.load("u55-256"), name="my-npu")
    (tmp_path / "my-npu.toml").write_text(targets.to_toml(custom))
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(out="out", quick=True, targets="my-npu.toml,u65-512", no_html=True, no_test=True)
    settings = demo.settings_from(args)
    assert settings.targets == (str(tmp_path / "my-npu.toml"), "u65-512")
    assert settings.command == "pytest-npu demo --out out --quick --targets my-npu.toml,u65-512 --no-html --no-test"
