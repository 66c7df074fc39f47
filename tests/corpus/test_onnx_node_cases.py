"""ONNX's own operator test cases, for every operator the importer knows: each (case, variant)
passes (exactly against the expected output, or within one LSB of onnxruntime's QDQ execution) or
is refused with a ``pytest_npu`` error naming the culprit -- no foreign exception, no wrong result.
``python tests/corpus/onnx_cases.py`` prints the table of outcomes."""

from __future__ import annotations

import onnx_cases
import pytest

OPS = sorted({onnx_cases.op_of(c) for c in onnx_cases.cases()})


@pytest.mark.parametrize("op", OPS)
def test_node_cases_pass_or_are_refused_by_name(op):
    bad = []
    for case in onnx_cases.cases():
        if onnx_cases.op_of(case) != op:
            continue
        for variant in onnx_cases.VARIANTS:
            outcome = onnx_cases.run_variant(case, variant)
            if outcome is None:
                continue
            if outcome.kind not in ("exact", "ort", "refused"):
                bad.append(outcome)
    assert not bad, "\n".join(f"{o.case} [{o.variant}] {o.kind}: {o.detail}" for o in bad)


def test_the_corpus_exercises_every_outcome_class():
    """The corpus is not vacuous: cases run on the NPU and pass against both oracles."""
    picked = [c for c in onnx_cases.cases() if c.name in (
        "test_conv_with_strides_padding", "test_qlinearmatmul_2D_int8_float32", "test_softmax_axis_0",
        "test_unsqueeze_axis_0", "test_add_uint32")]
    kinds = {(c.name, v): o.kind for c in picked for v in onnx_cases.VARIANTS
             if (o := onnx_cases.run_variant(c, v)) is not None}
    assert kinds[("test_conv_with_strides_padding", "qdq")] == "ort"
    assert kinds[("test_qlinearmatmul_2D_int8_float32", "frozen")] == "exact"
    assert kinds[("test_softmax_axis_0", "qdq")] == "ort"          # axis 0 is not a batch axis here
    assert kinds[("test_unsqueeze_axis_0", "qdq")] == "ort"
    assert kinds[("test_add_uint32", "as-is")] == "refused"
