"""Corrupted model bytes: the importer either imports them or raises ModelError, never anything
else (no bare traceback from protobuf, onnx or numpy)."""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_npu.errors import ModelError
from pytest_npu.ir import from_onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fixtures" / "models"))
import make_corpus  # noqa: E402

GOOD = make_corpus.tiny_cnn().SerializeToString()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(1, len(GOOD)))
def test_corrupted_bytes_import_or_raise_model_error(flips, keep):
    data = bytearray(GOOD[:keep])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        graph = from_onnx(bytes(data))
    except ModelError as exc:
        assert str(exc).startswith("<bytes>")
    else:
        assert graph.nodes and graph.outputs
