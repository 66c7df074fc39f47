"""How far pytest-npu's figures move between CPUs and float kernels: the measurement behind the
default baseline tolerances (``pytest_npu/harness/tolerances.py``).

    python benchmarks/float_drift.py [--json OUT]

The NPU's figures come from exact integer emulation; the accuracy figures (mse, max_abs_err,
sqnr_db, cosine, top1_drop) compare its outputs with a *float* reference run by onnxruntime, whose
kernels are picked per instruction set, and the models themselves come out of float code (torch
for the seeded reference models and distillation, onnxruntime for calibration). This script
computes every figure of the examples' digits ports and of the seeded MLPerf-Tiny-shaped models
under each of these variations, on this one machine:

* torch's kernels: ``ATEN_CPU_CAPABILITY`` unset (AVX-512 here), ``avx2`` and ``default`` (scalar),
  each in its own process that rebuilds and re-quantises every model;
* numpy's kernels: ``NPY_DISABLE_CPU_FEATURES`` without AVX-512/AVX2/FMA;
* onnxruntime: 1 or 2 intra-op threads, graph optimisations off (the harness's reference session)
  or all on (layout transforms chosen per instruction set: NCHWc blocks of 16 floats on AVX-512,
  8 on AVX2);
* another implementation of the same float graph: onnx's ``ReferenceEvaluator`` (numpy kernels),
  an upper bound for what a CPU with other SIMD widths does to onnxruntime's sums;
* another CPU: the example baselines as committed at ``a128682`` (``examples/__npu__``) were
  recorded on a different x86-64 machine, with onnxruntime's optimisations on (the reference
  session of that time), so they are compared with this machine's figures under those settings.

It prints, per figure, the largest relative change seen under each variation, whether the exact
figures stayed identical, and what a real change does: one output element off by one quantum,
and requantisation rounded the gemmlowp way ("double") instead of once ("single").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = ("mse", "max_abs_err", "sqnr_db", "cosine", "top1_drop")
EXACT = ("cycles", "latency_ms", "energy_mj", "sram_kib", "dram_kib", "macs", "model_kib", "top1")
ENVIRONMENTS = {
    "unset": {},
    "aten=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten=default": {"ATEN_CPU_CAPABILITY": "default"},
    "numpy without AVX-512/AVX2/FMA": {"NPY_DISABLE_CPU_FEATURES":
                                       "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL "
                                       "AVX512_SPR AVX2 FMA3"},
}
#: float reference engines: (label, onnxruntime threads, optimised) or the onnx reference evaluator
ENGINES = {
    "ort 1 thread, no optimisation": (1, False),
    "ort 2 threads, no optimisation": (2, False),
    "ort 1 thread, all optimisations": (1, True),
    "ort 2 threads, all optimisations": (2, True),
    "onnx.reference (numpy kernels)": None,
}
HARNESS_ENGINE = "ort 1 thread, no optimisation"
RECORDED_ENGINE = "ort 1 thread, all optimisations"     # what recorded examples/__npu__ at RECORDED_AT
RECORDED_AT = "a128682"                                 # the last commit with baselines from another CPU
#: (case, model, precision, target, samples): the examples' ports first, then the seeded models
CASES = [
    ("digits int8 u55-256", "digits_cnn", "int8", "u55-256", None),
    ("digits int8 u55-128", "digits_cnn", "int8", "u55-128", None),
    ("digits int8 edge-3core", "digits_cnn", "int8", "edge-3core", None),
    ("digits int16 u65-512", "digits_cnn", "int16", "u65-512", None),
    ("digits int16 edge-3core", "digits_cnn", "int16", "edge-3core", None),
    ("resnet8 int8", "resnet8", "int8", "u55-256", 8),
    ("ds_cnn int8", "ds_cnn", "int8", "u55-256", 8),
    ("autoencoder int8", "autoencoder", "int8", "u55-256", 8),
    ("transformer_block int8", "transformer_block", "int8", "u55-256", 8),
    ("mobilenet_v1 int8", "mobilenet_v1", "int8", "u55-256", 2),
]
#: committed example baseline entries holding the same figures as a case
RECORDED = {
    "digits int8 u55-256": ("test_digits_port.json", "TestAccuracy.test_int8_port[u55-256]", "u55-256"),
    "digits int8 u55-128": ("test_digits_port.json", "TestAccuracy.test_int8_port[u55-128]", "u55-128"),
    "digits int8 edge-3core": ("test_digits_port.json", "TestAccuracy.test_int8_port[edge-3core]", "edge-3core"),
    "digits int16 u65-512": ("test_digits_port.json",
                             "TestAccuracy.test_int16_activations_buy_accuracy[u65-512]", "u65-512"),
    "digits int16 edge-3core": ("test_digits_port.json",
                                "TestAccuracy.test_int16_activations_buy_accuracy[edge-3core]", "edge-3core"),
}


# --------------------------------------------------------------------------------------------------
# one process: every case under every engine


def _reference(engine, float_path: Path, feeds: dict):
    import numpy as np

    if engine is None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load(str(float_path))
        names = [o.name for o in model.graph.output]
        return dict(zip(names, ReferenceEvaluator(model).run(None, feeds)))
    import onnxruntime as ort

    threads, optimised = engine
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if not optimised:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(float_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return {name: np.asarray(value) for name, value in zip(names, session.run(names, feeds))}


def _case_inputs(model: str, precision: str, samples: int | None, workdir: Path):
    import reference_models

    module = reference_models.get(model)
    data = module.test_data()
    images, labels = data if isinstance(data, tuple) else (data, None)
    if samples is not None:
        images = images[:samples]
        labels = None if labels is None else labels[:samples]
    if model == "digits_cnn":
        from pytest_npu import compress

        float_path = module.onnx_path()
        quantized = workdir / f"{model}.{precision}.onnx"
        if not quantized.exists():
            compress.quantize(str(float_path), precision, calibration=module.calib_data(128), output=quantized)
    else:
        float_path = reference_models.onnx_for(model, None, workdir)
        quantized = reference_models.onnx_for(model, precision, workdir)
    return Path(float_path), Path(quantized), images, labels


def measure() -> dict:
    """Every case's figures under every engine, in this process (its environment is the variant)."""
    import tempfile

    import numpy as np

    from pytest_npu.harness.session import NpuRunner, RunnerOptions

    runner = NpuRunner(RunnerOptions(targets=["u55-256"], host_runs=0))
    workdir = Path(tempfile.mkdtemp(prefix="float-drift-"))
    result: dict = {"cases": {}, "models": {}}
    for case, model, precision, target, samples in CASES:
        float_path, quantized, images, labels = _case_inputs(model, precision, samples, workdir)
        result["models"][case] = {"float": hashlib.sha256(float_path.read_bytes()).hexdigest()[:16],
                                  "quantized": hashlib.sha256(quantized.read_bytes()).hexdigest()[:16]}
        feeds = {_input_name(float_path): images}
        figures = {}
        npu_outputs = None
        for label, engine in ENGINES.items():
            expected = _reference(engine, float_path, feeds)
            run = runner.run(quantized, images, reference=expected, labels=labels, target=target)
            figures[label] = {k: float(v) for k, v in run.metrics.items()}
            npu_outputs = run.outputs
            compiled = run.compiled
        result["cases"][case] = figures
        result.setdefault("one_lsb", {})[case] = _one_lsb(npu_outputs, compiled,
                                                         _reference(ENGINES[HARNESS_ENGINE], float_path, feeds),
                                                         labels, np)
    return result


def _input_name(float_path: Path) -> str:
    import onnx

    model = onnx.load(str(float_path))
    constants = {init.name for init in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in constants)


def _one_lsb(outputs: dict, compiled, expected: dict, labels, np) -> dict:
    """Median relative change of each accuracy figure when one output element moves by one quantum
    (over 64 seeded element choices, each moved away from the reference): the smallest change a
    different integer result can make."""
    from pytest_npu import metrics

    (name,) = list(outputs)[:1]
    scale = float(compiled.graph.output_quant[name].scale)
    base = metrics.compare(expected[name], outputs[name], labels)
    rng = np.random.default_rng(0)
    changes: dict[str, list[float]] = {key: [] for key in ACCURACY}
    for index in rng.choice(outputs[name].size, size=min(64, outputs[name].size), replace=False):
        moved = outputs[name].copy().reshape(-1)
        direction = 1.0 if moved[index] >= expected[name].reshape(-1)[index] else -1.0
        moved[index] += direction * scale
        figures = metrics.compare(expected[name], moved.reshape(outputs[name].shape), labels)
        for key in ACCURACY:
            if key in base and key in figures:
                changes[key].append(_relative(base[key], figures[key]))
    return {key: float(np.median(values)) for key, values in changes.items() if values}


# --------------------------------------------------------------------------------------------------
# the comparison


def _relative(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _worst(pairs) -> tuple[float, str]:
    worst, where = 0.0, ""
    for figure_a, figure_b, label in pairs:
        change = _relative(figure_a, figure_b)
        if change > worst:
            worst, where = change, label
    return worst, where


def _recorded_elsewhere(name: str) -> dict:
    """``examples/__npu__/NAME`` as committed at RECORDED_AT (empty without git or that commit)."""
    shown = subprocess.run(["git", "show", f"{RECORDED_AT}:examples/__npu__/{name}"], cwd=ROOT,
                           capture_output=True, text=True, check=False)
    return json.loads(shown.stdout)["tests"] if shown.returncode == 0 else {}


def _variant(env: dict) -> dict:
    command = [sys.executable, __file__, "--measure"]
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"variant {env} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def report(results: dict[str, dict]) -> dict:
    from tabulate import tabulate

    base = results["unset"]
    groups: dict[str, list] = {
        "torch kernels (ATEN_CPU_CAPABILITY)": [],
        "numpy kernels (NPY_DISABLE_CPU_FEATURES)": [],
        "onnxruntime threads (1 vs 2)": [],
        "onnxruntime optimisations (off vs all)": [],
        "another implementation (onnx.reference)": [],
        "another CPU (committed example baselines)": [],
    }
    exact_moves = []
    for case in base["cases"]:
        here = base["cases"][case]
        for env_label, result in results.items():
            if env_label == "unset":
                continue
            group = "torch kernels (ATEN_CPU_CAPABILITY)" if env_label.startswith("aten") else \
                "numpy kernels (NPY_DISABLE_CPU_FEATURES)"
            for engine in ENGINES:
                groups[group].append((case, here[engine], result["cases"][case][engine], f"{case}, {env_label}"))
            if result["models"][case] != base["models"][case]:
                exact_moves.append(f"{case}: model bytes differ under {env_label}")
        for threads_a, threads_b, optimised in ((1, 2, False), (1, 2, True)):
            a = next(k for k, v in ENGINES.items() if v == (threads_a, optimised))
            b = next(k for k, v in ENGINES.items() if v == (threads_b, optimised))
            groups["onnxruntime threads (1 vs 2)"].append((case, here[a], here[b], case))
        groups["onnxruntime optimisations (off vs all)"].append(
            (case, here[HARNESS_ENGINE], here[RECORDED_ENGINE], case))
        groups["another implementation (onnx.reference)"].append(
            (case, here[HARNESS_ENGINE], here["onnx.reference (numpy kernels)"], case))
        if case in RECORDED:
            name, test, target = RECORDED[case]
            entry = _recorded_elsewhere(name).get(test, {}).get(target)
            if entry is not None:
                stored = {k: float(v) for k, v in entry["metrics"].items()}
                groups["another CPU (committed example baselines)"].append(
                    (case, here[RECORDED_ENGINE], stored, f"{case} (recorded elsewhere)"))
        for engine, figures in here.items():
            for env_label, result in results.items():
                other = result["cases"][case][engine]
                for key in EXACT:
                    if key in figures and figures[key] != other.get(key):
                        exact_moves.append(f"{case}: {key} {figures[key]} vs {other.get(key)} ({env_label}, {engine})")

    table, summary = [], {}
    for key in ACCURACY:
        row = [key]
        for group, pairs in groups.items():
            worst, where = _worst((a[key], b[key], label) for _, a, b, label in pairs if key in a and key in b)
            summary.setdefault(key, {})[group] = {"relative": worst, "where": where}
            row.append(f"{worst:.2g}" if worst else "0")
        one_lsb = [base["one_lsb"][case][key] for case in base["one_lsb"] if key in base["one_lsb"][case]]
        smallest = min((value for value in one_lsb if value > 0), default=0.0)
        summary[key]["one_lsb_smallest_median"] = smallest
        row.append(f"{smallest:.2g}")
        table.append(row)
    rounding = _relative(base["cases"]["digits int8 u55-256"][HARNESS_ENGINE]["mse"],
                         base["cases"]["digits int8 edge-3core"][HARNESS_ENGINE]["mse"])
    summary["rounding_mode_mse"] = rounding
    summary["exact_moves"] = exact_moves
    print(tabulate(table, headers=["figure", *[g.split(" (")[0] + "\n(" + g.split(" (")[1] for g in groups],
                                   "one output\nquantum off"], tablefmt="simple", disable_numparse=True))
    print()
    print("largest relative change per variation (max over the cases); last column: smallest median")
    print("relative change from moving one output element by one quantum.")
    print(f"requantisation rounding single vs double (digits int8): mse moves by {rounding:.2g} relative.")
    print("exact figures (" + ", ".join(EXACT) + "): "
          + ("identical under every variation" if not exact_moves else "MOVED:\n  " + "\n  ".join(exact_moves)))
    for key, groups_seen in summary.items():
        if isinstance(groups_seen, dict):
            for group, seen in groups_seen.items():
                if isinstance(seen, dict) and seen["where"]:
                    print(f"  {key} / {group}: worst in {seen['where']}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the measurements as JSON")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure()))
        return 0
    results = {label: _variant(env) for label, env in ENVIRONMENTS.items()}
    summary = report(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
