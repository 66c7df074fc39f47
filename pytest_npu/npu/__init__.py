"""The emulated NPU: instruction set, programs, exact kernels, cost model and emulator.

``Emulator(target).run(program, inputs) -> Execution``; programs are built by the compiler (or
by hand with :class:`ProgramBuilder`) and saved/loaded with :meth:`Program.save`/``Program.load``.
"""

from __future__ import annotations

from .emulator import Emulator
from .execution import Execution, Summary, TraceRow
from .program import Program, ProgramBuilder, TensorInfo

__all__ = ["Emulator", "Execution", "Program", "ProgramBuilder", "Summary", "TensorInfo", "TraceRow"]
