"""Print the digits compression figures quoted in the README and docs/compression.md.

    python -m reference_models.report_compression [--epochs 6] [--tablefmt github]

Everything is measured on the 360 held-out digits by onnxruntime with the QDQ semantics (graph
optimisations off), the arithmetic the NPU implements.
"""

from __future__ import annotations

import argparse
import time

from tabulate import tabulate


def rows(epochs: int = 6) -> list[dict]:
    from pytest_npu import compress

    from . import digits_cnn

    float_model, test = digits_cnn.load(), digits_cnn.test_data()
    calib = digits_cnn.calib_data()
    variants = {
        "int8": (compress.quantize("int8", calibration=calib),),
        "int16 (a16w8)": (compress.quantize("int16", calibration=calib),),
        "prune 50% structured + distill": (
            compress.prune(0.5, structured=True),
            compress.distill(float_model, digits_cnn.train_data(), epochs=epochs, progress=False)),
    }
    variants["prune 50% structured + distill + int8"] = (*variants["prune 50% structured + distill"],
                                                         compress.quantize("int8", calibration=calib))
    table: list[dict] = []
    base = None
    for name, steps in [("float", ()), *variants.items()]:
        start = time.perf_counter()
        final = compress.pipeline(float_model, *steps, eval_data=test).final
        base = base or final
        assert final.top1 is not None and base.top1 is not None and final.mse is not None  # labelled eval
        table.append({
            "model": name, "top-1 %": round(100 * final.top1, 2),
            "drop (points)": round(100 * (base.top1 - final.top1), 2),
            "params": final.params, "MACs": final.macs,
            "MACs saved %": round(100 * (1 - final.macs / base.macs), 1),
            "weights KiB": round(final.size_kib, 2),
            "x smaller": round(base.stats.weight_bytes / final.stats.weight_bytes, 2),
            "ONNX KiB": round(final.stats.onnx_kib, 2),
            "MSE vs float": float(f"{final.mse:.3g}"), "s": round(time.perf_counter() - start, 1),
        })
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="distillation epochs (default 6)")
    parser.add_argument("--tablefmt", default="github")
    args = parser.parse_args(argv)
    print(tabulate(rows(args.epochs), headers="keys", tablefmt=args.tablefmt, floatfmt="g", intfmt=","))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
