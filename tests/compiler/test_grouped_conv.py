"""Grouped convolutions run as one CONV2D per group on channel slices: MACs are the real ones."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from models import Builder, assert_matches_ort, inputs_for, ort_run, quantize
from onnx import numpy_helper

import pytest_npu.compiler as compiler
from pytest_npu import targets


def _analytic_macs(node: onnx.NodeProto, model: onnx.ModelProto, out_shape) -> int:
    """OH * OW * Cout * KH * KW * Cin / groups, from the ONNX node itself."""
    w = next(i for i in model.graph.initializer if i.name == node.input[1])
    cout, cin_per_group, kh, kw = w.dims
    return out_shape[2] * out_shape[3] * cout * kh * kw * cin_per_group


def _grouped_model():
    """groups=4 (2 in / 3 out channels each), then groups=2 1x1, then a dense 3x3 stride 2."""
    b = Builder((1, 8, 10, 10), seed=3).conv(12, k=3, group=4).conv(8, k=1, pad=0, group=2).conv(4, k=3, stride=2)
    float_model = b.model()
    return float_model, quantize(float_model, b.input_shape), b.input_shape


@pytest.mark.parametrize("target", targets.available())
def test_grouped_conv_macs_are_analytic_and_outputs_match_onnxruntime(target):
    float_model, q, shape = _grouped_model()
    cm = compiler.compile(q, target)
    assert not cm.unsupported()
    x = inputs_for(shape, 4, 0)
    ex = cm.run(x)
    (name,) = cm.program.outputs
    assert_matches_ort(ex.outputs[name], ort_run(q, x), float(cm.graph.output_quant[name].scale))

    rows = {r["layer"]: r for r in cm.layers(ex)}
    convs_and_outputs = zip([n for n in float_model.graph.node if n.op_type == "Conv"],
                            [(1, 12, 10, 10), (1, 8, 10, 10), (1, 4, 5, 5)])
    for node, out_shape in convs_and_outputs:
        assert rows[node.name]["macs"] == _analytic_macs(node, float_model, out_shape), node.name
    assert ex.summary.macs == sum(r["macs"] for r in rows.values())
    convs = [i for i in cm.program.instructions if i.opcode == "CONV2D" and i.layer == "conv_1"]
    # every group conv reads 2 input channels and writes 3 output channels, with its own weights
    assert {(i.ifm.shape[-1], i.weights.shape, i.ofm.shape[-1]) for i in convs} == {(2, (3, 3, 2, 3), 3)}
    assert len(convs) % 4 == 0


def test_groups_tiled_in_whole_groups_under_sram_pressure():
    _, q, shape = _grouped_model()
    cm = compiler.compile(q, "u55-128", sram_limit_bytes=1400, cores=1)
    convs = [i for i in cm.program.instructions if i.opcode == "CONV2D" and i.layer == "conv_1"]
    assert len(convs) > 4                     # several row stripes / channel blocks
    assert all(i.ofm.shape[-1] == 3 and i.ifm.shape[-1] == 2 for i in convs)
    x = inputs_for(shape, 2, 1)
    (name,) = cm.program.outputs
    assert_matches_ort(cm.run(x).outputs[name], ort_run(q, x), float(cm.graph.output_quant[name].scale))


def _block_diagonal_twin(float_model: onnx.ModelProto, groups: int) -> onnx.ModelProto:
    """The same network with the grouped conv written as a dense conv whose weight is block-diagonal."""
    twin = onnx.ModelProto()
    twin.CopyFrom(float_model)
    conv = twin.graph.node[0]
    init = next(i for i in twin.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(init)
    cout, cig, kh, kw = w.shape
    per = cout // groups
    dense = np.zeros((cout, cig * groups, kh, kw), np.float32)
    for g in range(groups):
        dense[g * per:(g + 1) * per, g * cig:(g + 1) * cig] = w[g * per:(g + 1) * per]
    init.CopyFrom(numpy_helper.from_array(dense, init.name))
    for attr in conv.attribute:
        if attr.name == "group":
            attr.i = 1
    onnx.checker.check_model(twin)
    return twin


@pytest.mark.parametrize("target", ["u55-128", "edge-3core"])
def test_grouped_conv_costs_less_than_its_dense_block_diagonal_twin(target):
    """With groups as wide as the MAC lanes the saving reaches compute cycles and MAC energy."""
    b = Builder((1, 64, 12, 12), seed=3).conv(64, k=3, group=4, relu=False)
    grouped_float = b.model()
    grouped = compiler.compile(quantize(grouped_float, b.input_shape), target)
    dense = compiler.compile(quantize(_block_diagonal_twin(grouped_float, 4), b.input_shape), target)
    g_row, d_row = grouped.layers()[0], dense.layers()[0]
    assert g_row["macs"] == 12 * 12 * 64 * 9 * 16 and d_row["macs"] == 4 * g_row["macs"]
    assert g_row["compute_cycles"] < 0.75 * d_row["compute_cycles"]     # fixed per-instruction cycles remain
    assert g_row["energy_mj"] < d_row["energy_mj"]
