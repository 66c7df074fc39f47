"""One root exception and narrow subclasses.

Every message names the input at fault (file, node, layer, instruction, option) and what to do,
so a user never has to read a traceback from deep inside numpy or onnx.
"""

from __future__ import annotations


class NpuError(Exception):
    """Root of every error pytest-npu raises on purpose."""


class TargetError(NpuError):
    """A target description is missing, unreadable or impossible (names the file and key)."""


class ProgramError(NpuError):
    """A Program file is unreadable, of an unknown version, or internally inconsistent."""


class EmulatorFault(NpuError):
    """The emulated NPU refused to execute an instruction.

    Carries the instruction index and the operand at fault so tests (and users) can assert on them.
    """

    def __init__(self, message: str, *, index: int | None = None, operand: str | None = None,
                 kind: str = "fault"):
        super().__init__(message)
        self.index = index
        self.operand = operand
        self.kind = kind


class ModelError(NpuError):
    """An ONNX model cannot be imported (names the file and node)."""


class CompileError(NpuError):
    """A graph cannot be compiled for a target (names the layer and the limit)."""


class InputError(CompileError):
    """Run-time inputs do not fit the compiled model (names the input, the shape or dtype it takes)."""


class CompressionError(NpuError):
    """A compression step got bad arguments or an unsupported model (names the layer or argument)."""


class BudgetUsageError(NpuError):
    """An npu_budget / npu_target marker or option is malformed (names the key, suggests a fix)."""


class MetricError(NpuError):
    """Reference and measured arrays cannot be compared (names both shapes or the bad labels)."""


class BaselineError(NpuError):
    """A baseline or history file is corrupt, too new, or cannot be written (names the file)."""


class PeerError(NpuError):
    """An outside estimator (Vela) is not installed, cannot read the model, or failed (names it)."""
class HistoryError(BaselineError):
    """A run history cannot be read or written: corrupt, too new, locked, unreachable, or a driver
    is missing (names the database, with any password hidden, and what to do)."""


class ReportError(NpuError):
    """A report cannot be written: an optional extra it needs is missing, or its file (names which)."""
