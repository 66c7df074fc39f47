"""Compression: prune, distil and quantise models, alone or as a measured pipeline.

torch is imported here (and in reference_models) only, never by ``import pytest_npu``.

    from pytest_npu import compress
    result = compress.pipeline(model,
                               compress.prune(0.5, structured=True),
                               compress.distill(teacher=model, data=(x_train, y_train)),
                               compress.quantize("int8", calibration=x_calib),
                               eval_data=(x_test, y_test))
    result.model        # quantised ONNX ModelProto, ready for pytest_npu.compile
    print(result.table())
"""

from __future__ import annotations

from ._export import to_onnx
from ._stats import ModelStats, onnx_stats
from ._step import Step
from .distill import Distill, distill
from .pipeline import PipelineResult, StepReport, pipeline
from .prune import Prune, prune
from .quantize import Quantize, quantize
from .search import SearchResult, search

__all__ = [
    "Distill", "ModelStats", "PipelineResult", "Prune", "Quantize", "SearchResult", "Step", "StepReport",
    "distill", "onnx_stats", "pipeline", "prune", "quantize", "search", "to_onnx",
]
