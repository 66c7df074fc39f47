"""The compiler's IR (``Graph``) and its ONNX import (``from_onnx``)."""

from __future__ import annotations

from .graph import OPS, Boundary, Graph, Node, QuantParams, Tensor
from .onnx_import import from_onnx

__all__ = ["OPS", "Boundary", "Graph", "Node", "QuantParams", "Tensor", "from_onnx"]
