"""Budget verdicts: which limits a record breaks, and the failure message a person can act on.

Kept free of numpy/onnx imports at module level: plugin start-up must stay cheap.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Breach:
    """One failed check: a budget row, or a row another plugin adds through ``pytest_npu_check``.

    ``limit`` is the budget (None when the check has no absolute limit, e.g. a baseline regression);
    ``baseline``/``delta`` are filled by baseline checks; ``message`` is a short human note.
    """

    metric: str
    limit: float | None
    measured: float
    baseline: float | None = None
    delta: float | None = None
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Breach:
        return cls(**{key: data.get(key) for key in ("metric", "limit", "measured", "baseline", "delta")},
                   message=data.get("message") or "")


class NpuBudgetExceeded(AssertionError):
    """Raised from the test call when a record breaks a budget (an AssertionError so Hypothesis shrinks)."""

    def __init__(self, message: str, breaches: list[Breach]):
        super().__init__(message)
        self.breaches = breaches


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
