"""``pytest-npu`` command line: a thin dispatcher.

Each subcommand lives beside the stage it belongs to and is imported only when used, so
``pytest-npu --help`` stays instant and no subcommand pays for another's imports (torch!).
A subcommand module exposes ``configure(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import NpuError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "targets": ("pytest_npu.targets.cli", "list the built-in targets or show one"),
    "run": ("pytest_npu.npu.cli", "run a saved program on a target and print its trace summary"),
    "inspect": ("pytest_npu.compiler.cli_inspect", "compile a model and print the per-layer table"),
    "asm": ("pytest_npu.compiler.cli_asm", "compile a model and print the program as assembly"),
    "history": ("pytest_npu.harness.cli_history", "show recorded figures across releases"),
    "compare": ("pytest_npu.harness.cli_compare", "compare two recorded runs; non-zero on regression"),
    "demo": ("pytest_npu.casestudy", "the NPU port case study on built-in defaults (digits CNN)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="pytest-npu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in SUBCOMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    sub_parser = argparse.ArgumentParser(prog=f"pytest-npu {name}", description=SUBCOMMANDS[name][1])
    module.configure(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except NpuError as exc:
        print(f"pytest-npu {name}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
