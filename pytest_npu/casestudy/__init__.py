"""The NPU port case study behind ``pytest-npu demo``: compress, compile, emulate, report, and test.

``configure(parser)`` / ``run(args) -> int`` make it a ``pytest-npu`` subcommand like the others;
``main(argv)`` runs it standalone (``python -m pytest_npu.casestudy``).
"""

from __future__ import annotations

from .run import configure, main, run

__all__ = ["configure", "main", "run"]
