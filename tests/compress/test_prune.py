"""Pruning: exact sparsity, channels really removed, the input model untouched, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pytest_npu import compress
from pytest_npu.compress._stats import onnx_stats
from pytest_npu.errors import CompressionError
from reference_models import digits_cnn, ds_cnn, resnet8, transformer_block


@pytest.fixture(scope="module")
def digits():
    return digits_cnn.load()


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@settings(max_examples=25, deadline=None)
@given(amount=st.floats(0.0, 0.95), scope=st.sampled_from(["layer", "global"]))
def test_unstructured_zeroes_exactly_the_fraction(digits, amount, scope):
    pruned = compress.prune(digits, amount, scope=scope)
    weights = _weights(pruned)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    if scope == "layer":      # torch rounds the count per layer
        expected = sum(round(amount * w.numel()) for w in weights)
    else:
        expected = round(amount * total)
    assert zeros == expected
    assert not any(hasattr(m, "weight_orig") for m in pruned.modules())   # prune.remove ran: it exports
    assert int(sum(int((w == 0).sum()) for w in _weights(digits))) == 0     # the input is untouched


def test_structured_removes_channels_and_keeps_the_classes(digits):
    pruned = compress.prune(digits, 0.5, structured=True)
    assert pruned.conv1.out_channels == 8 and pruned.bn1.num_features == 8
    assert pruned.conv2.in_channels == 8 and pruned.conv2.out_channels == 16
    assert pruned.fc.in_features == 64 and pruned.fc.out_features == 10       # across Flatten; classes kept
    assert digits.conv1.out_channels == 16
    before, after = onnx_stats(compress.to_onnx(digits)), onnx_stats(compress.to_onnx(pruned))
    assert after.params < 0.35 * before.params and after.macs < 0.35 * before.macs


@pytest.mark.parametrize("module", [resnet8, ds_cnn], ids=["residual-adds", "depthwise"])
def test_structured_handles_residuals_and_depthwise(module):
    model = module.load()
    pruned = compress.prune(model, 0.25, structured=True)
    x = torch.from_numpy(module.test_data(2))
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape
    kept = sum(p.numel() for p in pruned.parameters())
    assert kept < 0.8 * sum(p.numel() for p in model.parameters())


def test_random_ranking_is_seeded(digits):
    a = compress.prune(digits, 0.3, norm="random", seed=3)
    b = compress.prune(digits, 0.3, norm="random", seed=3)
    for wa, wb in zip(_weights(a), _weights(b)):
        assert torch.equal(wa, wb)


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5, "half", True, float("nan")])
def test_amount_outside_unit_interval_is_refused(amount):
    with pytest.raises(CompressionError, match=r"prune\(amount=.*\[0, 1\)"):
        compress.prune(amount)


def test_unknown_norm_and_scope_suggest_the_right_word():
    with pytest.raises(CompressionError, match="did you mean 'l2'"):
        compress.prune(0.5, norm="L2 ")
    with pytest.raises(CompressionError, match="did you mean 'global'"):
        compress.prune(0.5, scope="globl")


def test_structured_refuses_layernorm_naming_the_layer():
    with pytest.raises(CompressionError, match=r"layer 'ln1' \(LayerNorm\).*structured=False"):
        compress.prune(transformer_block.load(), 0.5, structured=True)
    pruned = compress.prune(transformer_block.load(), 0.5)           # unstructured works
    assert float((pruned.ff1.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_structured_refuses_grouped_convolution():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 36, 3))
    model.input_shape = (4, 8, 8)
    with pytest.raises(CompressionError, match=r"layer '0' is a grouped convolution \(groups=2\)"):
        compress.prune(model, 0.5, structured=True)


def test_onnx_input_is_refused():
    with pytest.raises(CompressionError, match="prune before quantising"):
        compress.prune(0.5).apply(digits_cnn.load_onnx())


def test_model_without_input_shape_asks_for_it():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(CompressionError, match="input_shape"):
        compress.prune(model, 0.5, structured=True)
    pruned = compress.prune(model, 0.5, structured=True, input_shape=(4,))
    assert pruned[0].out_features == 2 and pruned[2].out_features == 2
    assert np.isfinite(pruned(torch.ones(1, 4)).detach().numpy()).all()
