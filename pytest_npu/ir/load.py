"""One door for every entry point that takes a model: ONNX or TFLite, told apart by content.

A ``.tflite`` flatbuffer carries ``TFL3`` at bytes 4..8 (whatever the file is called); anything
else is read as ONNX. ``compile``, the ``npu`` fixture and the CLI all call :func:`import_model`,
so a format is added here once.
"""

from __future__ import annotations

import os
from pathlib import Path

from .graph import Graph
from .tflite_import import MAGIC, from_tflite, is_tflite


def model_format(model) -> str:
    """'tflite' or 'onnx' for a path, bytes or ModelProto (by content first, then by suffix)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return "tflite" if is_tflite(bytes(model[:8])) else "onnx"
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if path.is_file():
            with path.open("rb") as f:
                head = f.read(8)
            if head[4:8] == MAGIC:
                return "tflite"
        return "tflite" if path.suffix.lower() == ".tflite" else "onnx"
    return "onnx"


def import_model(model) -> Graph:
    """The IR graph of ``model`` (path, bytes, or onnx.ModelProto), ONNX or TFLite."""
    if model_format(model) == "tflite":
        return from_tflite(model)
    from .onnx_import import from_onnx

    return from_onnx(model)
