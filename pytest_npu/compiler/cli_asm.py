"""``pytest-npu asm MODEL --target NAME [-o FILE.npuprog]``: the compiled program as assembly."""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a quantised (QDQ/QOperator) .onnx file")
    parser.add_argument("--target", required=True, metavar="NAME|PATH", help="built-in target or .toml")
    parser.add_argument("-o", "--output", metavar="FILE", help="also save the program (.npuprog)")
    parser.add_argument("--cores", type=int, default=None, help="schedule on this many cores")


def run(args: argparse.Namespace) -> int:
    from .api import compile

    options = {} if args.cores is None else {"cores": args.cores}
    cm = compile(args.model, args.target, **options)
    print(cm.program.to_asm())
    if args.output:
        path = cm.program.save(args.output)
        print(f"; saved to {path}")
    return 0
