"""pytest-npu against Arm's Vela 5.2.0 on int8 .tflite models: whole network and layer by layer.

    python benchmarks/vela_bench.py [MODEL.tflite ...] [--targets u55-256 u55-128] [--json OUT.json]

Default models: every ``fixtures/tflite/*.tflite``. For each model and Ethos-U target it compiles
and runs the model with pytest-npu, runs Vela on the same file for the same target (``peers.vela``:
the system configuration the target file follows), and prints Markdown: one summary table (cycles,
worst conv-layer ratio, weight bytes read off chip, SRAM used) and one per-layer table per model
and target. ``test_bench_vela.py`` records the same summary rows in ``make bench``'s JSON, so the
README's table comes from ``benchmarks/summarize.py`` like every other one. Every Vela figure is
one Vela printed; every pytest-npu figure comes from the emulator's trace.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = ("u55-256", "u55-128")
CONV_OPS = ("conv2d", "depthwise_conv2d")


def default_models() -> list[Path]:
    return sorted((ROOT / "fixtures" / "tflite").glob("*.tflite"))


def _worse(ratio: float) -> float:
    """How far off a ratio is, either way (1.2 and 1/1.2 are equally far)."""
    return max(ratio, 1 / ratio) if ratio > 0 else float("inf")


def compare(model: Path, target_name: str) -> dict:
    """pytest-npu's and Vela's figures for one model on one target, totals and per layer."""
    import pytest_npu
    from pytest_npu import targets
    from pytest_npu.compiler.cli_inspect import random_int_inputs
    from pytest_npu.peers import vela

    target = targets.load(target_name)
    cm = pytest_npu.compile(model, target)
    run = cm.run_quantized(random_int_inputs(cm, 1, 0))
    summary = run.summary
    estimate = vela.estimate(model, target)
    layers = vela.side_by_side(cm.layers(run), estimate, target)
    convs = [r for r in layers if r["op"] in CONV_OPS and r.get("vela_cycles")]
    worst = max(convs, key=lambda r: _worse(r["cycles"] / r["vela_cycles"]), default=None)
    # off-chip reads that are not feature maps: weight and scale streams (DMAs from the constants
    # image, at their encoded size) and LUT tables, as Vela's total minus its feature-map reads
    program = cm.program
    weight_bytes = sum(row.dram_read for row in run.trace if row.opcode == "LUT" or (
        row.opcode == "DMA_IN" and program.instructions[row.index].src.offset >= program.constants_offset))
    return {
        "model": model.stem, "target": target_name, "vela_version": estimate.version,
        "cycles": summary.cycles, "vela_cycles": estimate.cycles, "cycles_ratio": summary.cycles / estimate.cycles,
        "macs": summary.macs, "vela_macs": estimate.macs,
        "worst_conv_layer": worst["layer"] if worst else "",
        "worst_conv_ratio": worst["cycles"] / worst["vela_cycles"] if worst else float("nan"),
        "weight_bytes": weight_bytes, "vela_weight_bytes": estimate.weight_read_bytes,
        "weight_ratio": weight_bytes / estimate.weight_read_bytes if estimate.weight_read_bytes else float("nan"),
        "sram_bytes": cm.memory.peak, "vela_sram_bytes": estimate.sram_used_bytes,
        "sram_ratio": cm.memory.peak / estimate.sram_used_bytes if estimate.sram_used_bytes else float("nan"),
        "zero_weight_fraction": _zero_fraction(cm),
        "host_layers": [r["layer"] for r in layers if r["where"] == "host"],
        "layers": [{k: r.get(k) for k in ("layer", "op", "where", "cycles", "vela_cycles", "cycles_ratio", "macs",
                                          "vela_macs", "vela_ops")} for r in layers],
    }


def _zero_fraction(cm) -> float:
    import numpy as np

    total = zeros = 0
    for step in cm.steps:
        w = step.consts.get("weights") if step.where == "npu" else None
        if w is not None:
            total += w.size
            zeros += int(np.count_nonzero(w == step.params.get("weight_zp", 0)))
    return zeros / total if total else 0.0


def summary_table(rows: list[dict]) -> str:
    from tabulate import tabulate

    body = [[r["model"], r["target"], r["cycles"], r["vela_cycles"], f"{r['cycles_ratio']:.2f}",
             f"{r['worst_conv_ratio']:.2f}", r["weight_bytes"], r["vela_weight_bytes"], f"{r['weight_ratio']:.2f}",
             f"{r['zero_weight_fraction']:.0%}", f"{r['sram_bytes'] / 1024:.1f}", f"{r['vela_sram_bytes'] / 1024:.1f}",
             f"{r['sram_ratio']:.2f}"] for r in rows]
    return tabulate(body, headers=["model", "target", "pytest-npu cycles", "Vela cycles", "ratio",
                                   "worst conv layer", "weight bytes read", "Vela", "ratio",
                                   "zero weights", "SRAM KiB", "Vela SRAM KiB", "ratio"],
                    tablefmt="github", disable_numparse=True)


def layer_table(row: dict) -> str:
    from tabulate import tabulate

    body = [[r["layer"][-48:], r["op"], r["where"], r["cycles"], r.get("vela_cycles") or "",
             f"{r['cycles_ratio']:.2f}" if r.get("cycles_ratio") else "", r.get("vela_ops") or ""]
            for r in row["layers"]]
    return tabulate(body, headers=["layer", "op", "where", "pytest-npu cycles", "Vela cycles", "ratio",
                                   "Vela operations"], tablefmt="github", disable_numparse=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    models = args.models or default_models()
    if not models:
        parser.error("no .tflite models given and none under fixtures/tflite/")
    rows = [compare(model, target) for model in models for target in args.targets]
    print(summary_table(rows))
    for row in rows:
        print(f"\n#### {row['model']} on {row['target']}: {row['cycles']} / {row['vela_cycles']} cycles "
              f"= {row['cycles_ratio']:.2f}\n")
        print(layer_table(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
