"""The pytest plugin (entry point ``pytest_npu.harness.plugin``) and the objects it hands to tests.

Light on purpose: pytest imports this package at start-up in every project where pytest-npu is
installed, so nothing here imports numpy, onnx or the compiler.
"""

from __future__ import annotations

from .session import ModelPair, NpuRecord, NpuResult, NpuRunner
from .verdict import Breach, NpuBudgetExceeded

__all__ = ["Breach", "ModelPair", "NpuBudgetExceeded", "NpuRecord", "NpuResult", "NpuRunner"]
