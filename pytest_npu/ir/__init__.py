"""The compiler's IR (``Graph``) and its importers: ``from_onnx``, ``from_tflite``, and
``import_model`` which picks one by content."""

from __future__ import annotations

from .graph import OPS, Boundary, Graph, Node, QuantParams, Tensor
from .load import import_model, model_format
from .onnx_import import from_onnx
from .tflite_import import from_tflite

__all__ = ["OPS", "Boundary", "Graph", "Node", "QuantParams", "Tensor", "from_onnx", "from_tflite",
           "import_model", "model_format"]
