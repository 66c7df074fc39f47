"""How many outputs of each operator equal LiteRT's reference kernels, on many more drawn cases
than the test suite runs: the soak behind ``tests/npu/test_tflite_exact.py`` and the per-operator
table of the TFLite-semantics work.

    python benchmarks/tflite_exactness.py [--cases 300] [--target u55-256 ...]

Each case is one operator with drawn shapes, quantisation parameters, fused activation and
inputs (the test suite's case builders, seeds 1000.. so they differ from the suite's examples),
written as a one-operator ``.tflite``, run by LiteRT's ``BUILTIN_REF`` kernels and by the compiled
program; the table counts differing outputs and the largest difference. Needs ``ai-edge-litert``.
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
        cm = pytest_npu.compile(case.graph, target)
        feed = {name: x.reshape(len(x), *cm.program.tensors[name].shape)
                for name, x in zip(cm.program.inputs, case.inputs)}
        got = cm.run_quantized(feed).outputs[cm.program.outputs[0]].reshape(expected.shape)
        diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
        samples += len(case.inputs[0])
        outputs += diff.size
        differing += int((diff > 0).sum())
        worst = max(worst, int(diff.max()))
    return samples, outputs, differing, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--target", nargs="+", default=["u55-128", "u55-256", "u65-512", "edge-3core"])
    args = parser.parse_args(argv)
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
