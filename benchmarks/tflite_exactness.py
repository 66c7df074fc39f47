"""How many outputs equal LiteRT's reference kernels, on many more cases than the test suite
runs: per operator (the soak behind ``tests/npu/test_tflite_exact.py``) and per shipped model
(``fixtures/tflite/``, the soak behind ``tests/ir/test_tflite_models.py``).

    python benchmarks/tflite_exactness.py [--cases 300] [--samples 100] [--target u55-256 ...]
                                          [--only operators|models]

Each operator case has drawn shapes, quantisation parameters, fused activation and inputs (the
test suite's case builders, seeds 1000.. so they differ from the suite's examples), written as a
one-operator ``.tflite``. Every ``.tflite`` goes through ``pytest_npu.compile`` (the importer) and
LiteRT's ``BUILTIN_REF`` kernels; the tables count differing outputs (per model: samples whose
output differs anywhere) and the largest difference. Needs ``ai-edge-litert``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "npu"))

from litert_ops import run_reference  # noqa: E402
from test_tflite_exact import RANDOM_CASES  # noqa: E402

import pytest_npu  # noqa: E402


def measure(maker, target: str, cases: int) -> tuple[int, int, int, int]:
    """(samples, outputs, differing outputs, max |difference| in LSB) over ``cases`` seeds."""
    samples = outputs = differing = worst = 0
    for seed in range(1000, 1000 + cases):
        case = maker(seed)
        expected = run_reference(case.model, *case.inputs)
        cm = pytest_npu.compile(case.model, target)
        feed = {name: x.reshape(len(x), *cm.program.tensors[name].shape)
                for name, x in zip(cm.program.inputs, case.inputs)}
        got = cm.run_quantized(feed).outputs[cm.program.outputs[0]].reshape(expected.shape)
        diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
        samples += len(case.inputs[0])
        outputs += diff.size
        differing += int((diff > 0).sum())
        worst = max(worst, int(diff.max()))
    return samples, outputs, differing, worst


def measure_model(path: Path, target: str, samples_n: int) -> tuple[int, int, int]:
    """(samples, samples not bit-exact, max |difference| in LSB) of a shipped model on real inputs."""
    sys.path.insert(0, str(path.parent))
    from samples import litert_reference, samples

    q, want, _, _ = litert_reference(path, samples(path.stem.removesuffix("_int16"), samples_n, offset=0))
    (got,) = pytest_npu.compile(path, target).run_quantized(q).outputs.values()
    diff = np.abs(got.astype(np.int64).reshape(want.shape) - want.astype(np.int64)).reshape(len(want), -1)
    return len(want), int((diff.max(axis=1) > 0).sum()), int(diff.max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--samples", type=int, default=100, help="real inputs per shipped model")
    parser.add_argument("--target", nargs="+", default=["u55-128", "u55-256", "u65-512", "edge-3core"])
    parser.add_argument("--only", choices=["operators", "models"])
    args = parser.parse_args(argv)
    if args.only != "operators":
        models = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "tflite").glob("*.tflite"))
        print("| model | " + " | ".join(f"{t}: samples not bit-exact / samples (max LSB)" for t in args.target)
              + " |")
        print("|---|" + "---|" * len(args.target))
        for path in models:
            cells = []
            for target in args.target:
                n, differing, worst = measure_model(path, target, args.samples)
                cells.append(f"{differing} / {n} ({worst})")
            print(f"| {path.stem} | " + " | ".join(cells) + " |", flush=True)
        print()
    if args.only == "models":
        return 0
    print("| operator | " + " | ".join(f"{t}: differing / outputs (max LSB)" for t in args.target) + " |")
    print("|---|" + "---|" * len(args.target))
    for name, maker in sorted(RANDOM_CASES.items()):
        cells = []
        for target in args.target:
            _, outputs, differing, worst = measure(maker, target, args.cases)
            cells.append(f"{differing} / {outputs} ({worst})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
