"""Turn a pytest-benchmark JSON file into the Markdown tables the README shows.

    python -m pytest benchmarks -p no:xdist --benchmark-only --benchmark-json=bench.json
    python benchmarks/summarize.py bench.json [--compact]

One table per benchmark function: each row is a benchmark, with its mean wall time and every
``extra_info`` figure it recorded (ratios, GMAC/s, cycles vs roofline...). Nothing is typed in by
hand: the README's "Measured" section is this script's output.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

from tabulate import tabulate


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:60]
    return value


# The README's compact view: benchmark function -> the extra_info columns worth a glance.
COMPACT = {
    "test_bench_models.py::test_emulator_vs_onnxruntime_vs_reference": [
        "model", "batch", "emulator_ms", "onnxruntime_ms", "onnxruntime_qdq_ms", "reference_evaluator_ms",
        "emulator_over_onnxruntime", "emulator_over_onnxruntime_qdq", "emulator_over_reference"],
    "test_bench_compile.py::test_cycles_vs_roofline": [
        "cycles", "roofline_cycles", "efficiency", "latency_ms", "energy_mj",
        "conv_cycles_over_roofline_median"],
    "test_bench_compile.py::test_compile_cold": ["instructions", "layers"],
    "test_bench_compile.py::test_compile_cached": [],
    "test_bench_gemm.py::test_bench_exact_conv2d": ["blas_threads", "exact_gmac_per_s", "float32_gmac_per_s",
                                                    "ratio_vs_float32"],
    "test_bench_gemm.py::test_bench_exact_fully_connected_gemm": [
        "blas_threads", "exact_gmac_per_s", "float32_gmac_per_s", "ratio_vs_float32"],
    "test_bench_emulator.py::test_emulator_vs_onnxruntime": ["batch", "emulator_ms", "onnxruntime_ms",
                                                             "ratio_emulator_over_ort"],
    "test_bench_harness.py::test_hundred_budget_tests": ["workers", "budget_tests_s", "plain_tests_s",
                                                          "overhead_s"],
    "test_bench_plugin.py::test_collect_overhead_in_an_empty_directory": ["with_npu_s", "without_npu_s",
                                                                           "overhead_s"],
    "test_bench_vela.py::test_vela_agreement": [
        "cycles", "vela_cycles", "cycles_ratio", "worst_conv_ratio", "weight_bytes", "vela_weight_bytes",
        "weight_ratio", "zero_weight_fraction", "sram_bytes", "vela_sram_bytes", "sram_ratio"],
}


def tables(data: dict, compact: bool = False) -> str:
    by_module: dict[str, list[dict]] = defaultdict(list)
    for bench in data["benchmarks"]:
        by_module[bench["fullname"].split("[")[0]].append(bench)
    out = []
    for module, benches in sorted(by_module.items()):
        keys: list[str] = []
        short = module.split("/")[-1]
        if compact and short not in COMPACT:
            continue
        for bench in benches:
            keys += [k for k in bench.get("extra_info", {}) if k not in keys]
        if compact:
            keys = [k for k in COMPACT[short] if k in keys]
        rows = [[bench["name"], f"{bench['stats']['mean'] * 1e3:.3g}"]
                + [_fmt(bench.get("extra_info", {}).get(k, "")) for k in keys] for bench in benches]
        out.append(f"### {module}\n\n" + tabulate(rows, ["benchmark", "mean ms", *keys], tablefmt="github"))
    machine = data.get("machine_info", {})
    out.append(f"Host: {machine.get('cpu', {}).get('brand_raw', '?')}, "
               f"{machine.get('cpu', {}).get('count', '?')} cores, Python {machine.get('python_version', '?')}.")
    return "\n\n".join(out) + "\n"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--compact"]
    with open(args[0], encoding="utf-8") as fh:
        print(tables(json.load(fh), compact="--compact" in sys.argv))
