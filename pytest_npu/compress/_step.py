"""What every compression step shares: a name for reports, and argument checking with suggestions."""

from __future__ import annotations

import abc
import difflib
from collections.abc import Iterable
from typing import Any

from pytest_npu.errors import CompressionError


def choose(value: Any, allowed: Iterable[str], argument: str) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise a CompressionError with a suggestion."""
    allowed = list(allowed)
    if isinstance(value, str) and value.lower() in allowed:
        return value.lower()
    hint = difflib.get_close_matches(str(value).lower(), allowed, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise CompressionError(f"{argument}: {value!r} is not supported (choose from {', '.join(allowed)}){suggestion}")


def is_torch_module(model: Any) -> bool:
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a hard dependency of compress
        return False
    return isinstance(model, nn.Module)


class Step(abc.ABC):
    """A compression step: ``step(model)`` returns the compressed model, the input is left untouched."""

    kind = "step"            # "torch" steps take and return nn.Module; "onnx" steps return ModelProto

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short label for reports, e.g. "prune 50% structured"."""

    @abc.abstractmethod
    def apply(self, model: Any) -> Any:
        """Return the compressed model; never modify ``model`` in place."""

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """Shape of one sample of the data this step was given (None: it takes no data); a pipeline
        exports a torch model of unknown input shape with it."""
        return None

    def __call__(self, model: Any) -> Any:
        return self.apply(model)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
