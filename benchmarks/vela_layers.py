"""Calibrate the block model (``npu/blocks.py``) against Vela, one int8 layer at a time.

Two steps, two environments (TensorFlow is never a dependency of the package or its tests):

    # 1. make single-layer int8 .tflite models and a manifest of their shapes (TensorFlow venv)
    /path/to/tf-venv/bin/python benchmarks/vela_layers.py make OUT
    # 2. run Vela 5.2.0 on each for u55-256 and u55-128 and compare (the pytest-npu venv)
    python benchmarks/vela_layers.py compare OUT [--json OUT/compare.json]
    # the small model the Vela peer tests read (fixtures/vela/conv_pool_fc.tflite)
    /path/to/tf-venv/bin/python benchmarks/vela_layers.py fixture fixtures/vela

``compare`` reads Vela's debug database (``--enable-debug-db``): its block config and its estimate
of each operation on its own (``est_op_cycles_without_buffering``: the MAC, output-stage, command
and first-block terms, before weight streaming), and prints them beside ``npu.blocks.op_cycles``
for the same shapes on the same target file. Weight streaming and SRAM access are not in this
figure; the whole-network benchmark (``vela_bench.py``) covers them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# kind, ifm (H, W, C), out channels, kernel (H, W), stride
LAYERS = [
    ("conv", (32, 32, 3), 16, (3, 3), 1), ("conv", (32, 32, 16), 16, (3, 3), 1),
    ("conv", (32, 32, 16), 32, (3, 3), 2), ("conv", (16, 16, 32), 32, (3, 3), 1),
    ("conv", (16, 16, 32), 64, (3, 3), 2), ("conv", (16, 16, 64), 64, (3, 3), 1),
    ("conv", (8, 8, 64), 64, (3, 3), 1), ("conv", (8, 8, 64), 128, (1, 1), 1),
    ("conv", (49, 10, 1), 64, (10, 4), 2), ("conv", (25, 5, 64), 64, (1, 1), 1),
    ("conv", (12, 12, 128), 128, (1, 1), 1), ("conv", (6, 6, 256), 256, (1, 1), 1),
    ("conv", (48, 48, 8), 16, (3, 3), 1), ("conv", (24, 24, 16), 32, (1, 1), 1),
    ("conv", (3, 3, 256), 256, (1, 1), 1), ("conv", (96, 96, 3), 8, (3, 3), 2),
    ("conv", (48, 48, 8), 8, (1, 1), 1), ("conv", (4, 4, 128), 256, (3, 3), 1),
    ("depthwise", (32, 32, 16), 16, (3, 3), 1), ("depthwise", (48, 48, 8), 8, (3, 3), 1),
    ("depthwise", (24, 24, 32), 32, (3, 3), 2), ("depthwise", (12, 12, 64), 64, (3, 3), 1),
    ("depthwise", (6, 6, 128), 128, (3, 3), 1), ("depthwise", (25, 5, 64), 64, (3, 3), 1),
    ("depthwise", (3, 3, 256), 256, (3, 3), 1), ("depthwise", (96, 96, 8), 8, (3, 3), 2),
    ("fc", (1, 1, 64), 10, (1, 1), 1), ("fc", (1, 1, 256), 128, (1, 1), 1),
    ("fc", (1, 1, 640), 128, (1, 1), 1), ("fc", (1, 1, 128), 128, (1, 1), 1),
    ("fc", (1, 1, 128), 8, (1, 1), 1), ("fc", (1, 1, 1024), 10, (1, 1), 1),
    ("avgpool", (8, 8, 64), 64, (8, 8), 8), ("avgpool", (25, 5, 64), 64, (25, 5), 1),
    ("avgpool", (6, 6, 256), 256, (6, 6), 6), ("avgpool", (32, 32, 16), 16, (2, 2), 2),
    ("avgpool", (12, 12, 32), 32, (3, 3), 3), ("maxpool", (32, 32, 16), 16, (2, 2), 2),
    ("maxpool", (16, 16, 32), 32, (2, 2), 2), ("maxpool", (24, 24, 8), 8, (3, 3), 3),
]
TARGETS = {"u55-256": "ethos-u55-256", "u55-128": "ethos-u55-128"}


def layer_name(kind, ifm, cout, kernel, stride) -> str:
    return f"{kind}_{'x'.join(map(str, ifm))}_{cout}_k{kernel[0]}x{kernel[1]}_s{stride}"


def _out(n: int, k: int, s: int, same: bool) -> int:
    return -(-n // s) if same else (n - k) // s + 1


def make(out: Path) -> None:
    """Keras layer -> full-integer int8 TFLite (TFLiteConverter, representative data), + manifest."""
    import numpy as np
    import tensorflow as tf

    layers = tf.keras.layers
    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for kind, ifm, cout, kernel, stride in LAYERS:
        name = layer_name(kind, ifm, cout, kernel, stride)
        x = tf.keras.Input(ifm if kind != "fc" else (ifm[2],), batch_size=1)
        if kind == "conv":
            y = layers.Conv2D(cout, kernel, strides=stride, padding="same", activation="relu")(x)
        elif kind == "depthwise":
            y = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", activation="relu")(x)
        elif kind == "fc":
            y = layers.Dense(cout, activation="relu")(x)
        else:
            pool = layers.AveragePooling2D if kind == "avgpool" else layers.MaxPooling2D
            y = pool(kernel, strides=stride)(x)
        _convert(tf.keras.Model(x, y), rng, out / f"{name}.tflite")
        same = kind in ("conv", "depthwise")
        ofm = (1, 1, cout) if kind == "fc" else (_out(ifm[0], kernel[0], stride, same),
                                                 _out(ifm[1], kernel[1], stride, same), cout)
        manifest.append({"name": name, "kind": kind, "ifm": ifm, "ofm": ofm, "kernel": kernel,
                         "stride": [stride, stride]})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _convert(model, rng, path: Path) -> None:
    """Full-integer int8 TFLite with int8 input and output (TFLiteConverter, representative data)."""
    import numpy as np
    import tensorflow as tf

    def data():
        for _ in range(8):
            yield [rng.standard_normal((1, *model.input.shape[1:])).astype(np.float32)]
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = data
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())


def fixture(out: Path) -> None:
    """conv 3x3 (8 -> 16, ReLU) -> max pool 2x2 -> fully connected 10: three NPU layers, 6 KB."""
    import numpy as np
    import tensorflow as tf

    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    x = tf.keras.Input((16, 16, 8), batch_size=1)
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = layers.Flatten()(layers.MaxPooling2D(2)(y))
    out.mkdir(parents=True, exist_ok=True)
    _convert(tf.keras.Model(x, layers.Dense(10)(y)), np.random.default_rng(0), out / "conv_pool_fc.tflite")


def _debug_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    root = ET.parse(path).getroot()
    return {t.get("name"): list(csv.DictReader(io.StringIO((t.text or "").strip()))) for t in root.iter("table")}


def vela_operation(model: Path, accelerator: str, workdir: Path) -> dict:
    """Vela's block config and stand-alone estimate of the model's one MAC-array operation."""
    out = workdir / accelerator / model.stem
    debug = out / f"{model.stem}_debug.xml"
    if not debug.exists():
        subprocess.run([sys.executable, "-m", "ethosu.vela", str(model), "--accelerator-config", accelerator,
                        "--output-dir", str(out), "--enable-debug-db"], check=True, capture_output=True)
    tables = _debug_tables(debug)
    main = tables["perf_debug_main"][0]
    perf = next(r for r in tables["perf_debug"] if r["id"] == main["id"])
    return {"cycles": int(perf["est_op_cycles_without_buffering"]),
            "block": [int(main[f"ofm_block_{k}"]) for k in "hwc"]}


def ours(entry: dict, target) -> dict:
    from pytest_npu.npu import blocks

    kind = {"conv": "conv", "depthwise": "depthwise", "fc": "vector", "avgpool": "pool", "maxpool": "pool"}
    op = blocks.BlockOp(kind[entry["kind"]], tuple(entry["ifm"]), tuple(entry["ofm"]), kernel=tuple(entry["kernel"]),
                        stride=tuple(entry["stride"]), relu=entry["kind"] not in ("avgpool", "maxpool"),
                        bias=entry["kind"] in ("conv", "depthwise", "fc"),
                        output="max_pool" if entry["kind"] == "maxpool" else "default",
                        ifm_linear=True, ofm_linear=True)     # a one-layer model reads and writes graph I/O
    timed = blocks.op_cycles(target.blocks, target.mac.ofm_lanes, target.mac.ifm_lanes, op,
                             sram_latency=target.sram_latency_cycles,
                             sram_bytes_per_cycle=target.sram_bytes_per_cycle, sram_burst=target.sram_burst_bytes,
                             weight_latency=target.dram_latency_cycles)
    return {"cycles": timed.total, "block": list(timed.config.ofm)}


def compare(folder: Path, json_path: Path | None) -> int:
    from tabulate import tabulate

    from pytest_npu import targets

    manifest = json.loads((folder / "manifest.json").read_text())
    rows, results = [], []
    for target_name, accelerator in TARGETS.items():
        target = targets.load(target_name)
        for entry in manifest:
            vela = vela_operation(folder / f"{entry['name']}.tflite", accelerator, folder / "vela")
            mine = ours(entry, target)
            ratio = mine["cycles"] / vela["cycles"]
            results.append({"target": target_name, "layer": entry["name"], "vela": vela, "ours": mine,
                            "ratio": ratio})
            rows.append([target_name, entry["name"], vela["cycles"], mine["cycles"], f"{ratio:.2f}",
                         "x".join(map(str, vela["block"])), "same" if vela["block"] == mine["block"] else
                         "x".join(map(str, mine["block"]))])
    print(tabulate(rows, headers=["target", "layer", "Vela cycles", "pytest-npu", "ratio", "Vela block",
                                  "pytest-npu block"], disable_numparse=True))
    ratios = [r["ratio"] for r in results]
    same = sum(r["vela"]["block"] == r["ours"]["block"] for r in results)
    print(f"\n{len(ratios)} layer x target pairs: ratio min {min(ratios):.2f}, max {max(ratios):.2f}, "
          f"mean {statistics.mean(ratios):.3f}; same OFM block as Vela in {same}")
    if json_path:
        json_path.write_text(json.dumps(results, indent=1))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("make").add_argument("out", type=Path)
    sub.add_parser("fixture").add_argument("out", type=Path)
    cmp = sub.add_parser("compare")
    cmp.add_argument("folder", type=Path)
    cmp.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command in ("make", "fixture"):
        (make if args.command == "make" else fixture)(args.out)
        return 0
    return compare(args.folder, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
