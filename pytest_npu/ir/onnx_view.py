"""The cleaned ONNX graph the import stages share (NCHW, ONNX op names).

It lives apart from :mod:`.onnx_import` so that the later stages (:mod:`.qdq`, :mod:`.layout`,
:mod:`.patterns`) can read it without importing the module that drives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass
class OnnxView:
    """The cleaned ONNX graph every later stage reads (NCHW, ONNX op names)."""

    nodes: list[onnx.NodeProto]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    inputs: list[str]
    outputs: list[str]
    opset: int
    source: str
    name: str
    folded: dict[str, list[str]] = field(default_factory=dict)   # node name -> extra source ops

    def where(self, node: onnx.NodeProto) -> str:
        return f"{self.source}: node '{node.name}' ({node.op_type})"


def attrs_of(node: onnx.NodeProto) -> dict:
    """ONNX attributes as plain Python values (bytes decoded)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        out[a.name] = v
    return out
