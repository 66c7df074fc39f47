"""Vela as a peer: its configuration from a target file, its CSVs parsed, its layers paired with ours.

The tests that run Vela need the [vela] extra (CI installs it) and skip with that reason without it;
the parser and pairing tests read CSV text in Vela's own column layout and need nothing.
"""

from __future__ import annotations

import configparser
import csv
import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from pytest_npu import targets
from pytest_npu.errors import PeerError
from pytest_npu.peers import vela

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "vela" / "conv_pool_fc.tflite"
needs_vela = pytest.mark.skipif(importlib.util.find_spec("ethosu") is None,
                                reason="Vela is not installed (pip install 'pytest-npu[vela]')")

REGOR_LAYERS = """Original Operator,NNG Operator,Target,Staging Usage,Peak% (Staging),Op Cycles,Network% (cycles),NPU,SRAM AC,DRAM AC,OnFlash AC,OffFlash AC,MAC Count,Network% (MAC),Util% (MAC),Name
Conv2D,Conv2D,NPU,6144,100.0,3392,19.9,3392,768,0,0,1520,294912,95.3,33.9,conv
Conv2D,Relu,NPU,0,0.0,0,0.0,0,0,0,0,0,0,0.0,100,conv
Softmax,MaxPool,NPU,64,1.0,134,0.7,134,12,0,0,0,10,0.0,1.2,fc_softmax_0
Softmax,Sub,NPU,64,1.0,16,0.1,16,10,0,0,0,0,0.0,0.0,fc_softmax_2
Softmax,Asr,NPU,64,1.0,18,0.1,12,18,0,0,0,0,0.0,0.0,out
"""
LEGACY_LAYERS = """TFLite_operator,NNG Operator,SRAM Usage,Peak%,Op Cycles,Network%,NPU,SRAM AC,DRAM AC,OnFlash AC,OffFlash AC,MAC Count,Network%,Util%,Name
CONV_2D,Conv2DBias,54864,100.0,28964.0,100.0,28964.0,13952.0,0.0,0.0,0.0,4718592,100.0,63.6,conv
"""
SUMMARY = {"network": "net", "accelerator_configuration": "Ethos_U55_256",
           "system_config": "Ethos_U55_High_End_Embedded", "memory_mode": "Shared_Sram", "core_clock": "500000000.0",
           "sram_memory_used": "6.0", "total_npu_encoded_weights": "1376", "off_chip_flash_weight_read_bytes": "1520",
           "off_chip_flash_feature_map_read_bytes": "0", "off_chip_flash_total_bytes": "1776", "nn_macs": "294922",
           "cycles_total": "3560"}


def _write_outputs(folder: Path, layers: str) -> None:
    (folder / "net_per-layer.csv").write_text(layers)
    with (folder / "net_summary_Ethos_U55_High_End_Embedded.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SUMMARY))
        writer.writeheader()
        writer.writerow(SUMMARY)


def test_parse_reads_the_summary_and_every_layer(tmp_path):
    _write_outputs(tmp_path, REGOR_LAYERS)
    estimate = vela.parse(tmp_path, "net")
    assert (estimate.cycles, estimate.macs, estimate.sram_used_bytes) == (3560, 294922, 6 * 1024)
    assert estimate.weight_read_bytes == 1776 and estimate.off_chip_read_bytes == 1776   # scales are in the total
    assert estimate.latency_ms == pytest.approx(3560 / 500e6 * 1e3)
    assert [(v.name, v.op, v.cycles) for v in estimate.layers][:2] == [("conv", "Conv2D", 3392), ("conv", "Relu", 0)]
    assert estimate.layers[0].off_chip_access_cycles == 1520 and estimate.layers[0].staging_bytes == 6144
    assert estimate.metrics()["vela_cycles"] == 3560.0


def test_parse_reads_the_legacy_cores_column_names(tmp_path):
    _write_outputs(tmp_path, LEGACY_LAYERS)
    (layer,) = vela.parse(tmp_path, "net").layers
    assert (layer.original_op, layer.op, layer.cycles, layer.staging_bytes) == ("CONV_2D", "Conv2DBias", 28964, 54864)


def test_parse_names_the_folder_when_vela_wrote_nothing(tmp_path):
    with pytest.raises(PeerError, match="net_summary"):
        vela.parse(tmp_path, "net")


def test_side_by_side_pairs_by_output_and_folds_decompositions_into_their_layer(tmp_path):
    _write_outputs(tmp_path, REGOR_LAYERS)
    rows = [{"layer": "conv2d", "outputs": ["conv"], "op": "conv2d", "where": "npu", "macs": 294912, "cycles": 3000},
            {"layer": "softmax", "outputs": ["out"], "op": "softmax", "where": "npu", "macs": 0, "cycles": 300}]
    paired = vela.side_by_side(rows, vela.parse(tmp_path, "net"), targets.load("u55-256"))
    conv, softmax = paired
    assert (conv["vela_cycles"], conv["vela_macs"], conv["vela_ops"]) == (3392, 294912, "Conv2D")
    assert conv["cycles_ratio"] == pytest.approx(3000 / 3392)
    assert conv["vela_off_chip_bytes"] == 1520          # access cycles x 1 B/cycle of flash
    assert softmax["vela_cycles"] == 134 + 16 + 18 and softmax["vela_ops"] == "MaxPool+Sub+Asr"
    assert sum(r["vela_cycles"] for r in paired) == sum(v.cycles for v in vela.parse(tmp_path, "net").layers)


def test_a_target_without_a_vela_accelerator_is_refused_by_key():
    with pytest.raises(PeerError, match="vela_accelerator"):
        vela.accelerator(targets.load("edge-3core"))


def test_a_missing_vela_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ethosu.vela", None)
    with pytest.raises(PeerError, match=r"pytest-npu\[vela\]"):
        vela.require()


def test_only_tflite_models_are_sent_to_vela(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not tflite")
    with pytest.raises(PeerError, match="TFLite"):
        vela.estimate(onnx, targets.load("u55-256"))


@needs_vela
@pytest.mark.parametrize("name", ["u55-256", "u55-128"])
def test_the_ethos_u_targets_follow_a_shipped_system_config(name):
    assert vela.shipped_system(targets.load(name)) == "Ethos_U55_High_End_Embedded"


@needs_vela
def test_different_figures_get_their_own_vela_ini(tmp_path):
    target = dataclasses.replace(targets.load("u55-256"), dram_bytes_per_cycle=2.0, dram_latency_cycles=100)
    assert vela.shipped_system(target) is None
    arguments = vela.config_arguments(target, tmp_path)
    ini = configparser.ConfigParser()
    ini.read(tmp_path / "vela.ini")
    system = ini[f"System_Config.{vela.SYSTEM_NAME}"]
    assert float(system["OffChipFlash_clock_scale"]) * 8 == 2.0 and system["OffChipFlash_read_latency"] == "100"
    assert arguments[arguments.index("--arena-cache-size") + 1] == str(target.sram_bytes)


@needs_vela
def test_estimate_reports_what_vela_printed(tmp_path):
    """The figures come from Vela's own CSVs: re-read them here with the csv module and compare."""
    target = targets.load("u55-256")
    estimate = vela.estimate(FIXTURE, target, tmp_path)
    assert estimate.version == "5.2.0" and estimate.accelerator == "Ethos_U55_256"
    with (tmp_path / "conv_pool_fc_per-layer.csv").open() as handle:
        printed = list(csv.DictReader(handle))
    assert [v.cycles for v in estimate.layers] == [round(float(r["Op Cycles"])) for r in printed]
    summary = next(tmp_path.glob("conv_pool_fc_summary_*.csv"))
    with summary.open() as handle:
        assert estimate.cycles == round(float(next(csv.DictReader(handle))["cycles_total"]))
    assert estimate.cycles == sum(v.cycles for v in estimate.layers)
    assert {v.original_op for v in estimate.layers} == {"Conv2D", "MaxPool", "FullyConnected"}


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "tflite").glob("*.tflite"))


@needs_vela
@pytest.mark.parametrize("target", ["u55-256", "u55-128"])
@pytest.mark.parametrize("model", SHIPPED, ids=[m.stem for m in SHIPPED])
def test_shipped_models_agree_with_vela(model, target):
    """The calibration's promise on every shipped TFLite model: whole-network cycles within 15 % of
    Vela 5.2.0, no convolution Vela runs as one operation off by more than 1.5x either way, and on
    the model with more than half its weights zero, the weight bytes read off chip within 10 %."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import vela_bench

    row = vela_bench.compare(model, target)
    assert 0.85 <= row["cycles_ratio"] <= 1.15, (row["cycles"], row["vela_cycles"])
    worst = row["worst_conv_ratio"]
    assert worst != worst or 1 / 1.5 <= worst <= 1.5, (row["worst_conv_layer"], worst)   # nan: none
    if row["zero_weight_fraction"] > 0.5:
        assert 0.9 <= row["weight_ratio"] <= 1.1, (row["weight_bytes"], row["vela_weight_bytes"])
