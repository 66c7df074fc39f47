"""MLPerf-Tiny-shaped models: structure counted by hand, exports faithful, seeded, cached."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import reference_models
from pytest_npu.compress import onnx_stats
from pytest_npu.compress._stats import run_onnx


def conv(cin, cout, k, out_hw, groups=1, bias=True):
    """(params, MACs) of a conv, by the textbook formula; BN folded into the bias."""
    kh, kw = (k, k) if isinstance(k, int) else k
    params = cout * (cin // groups) * kh * kw + (cout if bias else 0)
    return params, out_hw[0] * out_hw[1] * cout * (cin // groups) * kh * kw


def dense(n_in, n_out, rows=1):
    return n_in * n_out + n_out, rows * n_in * n_out


def total(*layers):
    return sum(p for p, _ in layers), sum(m for _, m in layers)


def resnet8_counts():
    return total(conv(3, 16, 3, (32, 32)),
                 conv(16, 16, 3, (32, 32)), conv(16, 16, 3, (32, 32)),
                 conv(16, 32, 3, (16, 16)), conv(32, 32, 3, (16, 16)), conv(16, 32, 1, (16, 16)),
                 conv(32, 64, 3, (8, 8)), conv(64, 64, 3, (8, 8)), conv(32, 64, 1, (8, 8)),
                 dense(64, 10))


def ds_cnn_counts():
    block = [conv(64, 64, 3, (25, 5), groups=64), conv(64, 64, 1, (25, 5))]
    return total(conv(1, 64, (10, 4), (25, 5)), *(block * 4), dense(64, 12))


def mobilenet_counts():
    plan = [(8, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2),
            *[(128, 128, 1)] * 5, (128, 256, 2), (256, 256, 1)]
    layers, hw = [conv(3, 8, 3, (48, 48))], 48
    for cin, cout, stride in plan:
        hw //= stride
        layers += [conv(cin, cin, 3, (hw, hw), groups=cin), conv(cin, cout, 1, (hw, hw))]
    return total(*layers, dense(256, 2))


def autoencoder_counts():
    widths = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]
    return total(*(dense(a, b) for a, b in zip(widths, widths[1:])))


def transformer_counts():
    seq, d, heads, hidden = 16, 32, 2, 64
    dh = d // heads
    layernorms = (2 * d * 2, 0)
    attention = (0, 2 * heads * seq * seq * dh)                 # Q.K^T and A.V
    return total(layernorms, *[dense(d, d, rows=seq)] * 4, attention,
                 dense(d, hidden, rows=seq), dense(hidden, d, rows=seq))


EXPECTED = {
    "resnet8": resnet8_counts(), "ds_cnn": ds_cnn_counts(), "mobilenet_v1": mobilenet_counts(),
    "autoencoder": autoencoder_counts(), "transformer_block": transformer_counts(),
    "digits_cnn": total(conv(1, 16, 3, (8, 8)), conv(16, 32, 3, (4, 4)), dense(128, 10)),
}


def test_hand_counts_match_the_published_mlperf_tiny_sizes():
    """Sanity of the formulas themselves against MLPerf Tiny's published figures."""
    assert EXPECTED["resnet8"][1] == pytest.approx(12.5e6, rel=0.01)       # 12.5 M MACs
    assert EXPECTED["ds_cnn"][1] == pytest.approx(2.66e6, rel=0.02)        # ~2.7 M MACs
    assert EXPECTED["mobilenet_v1"][1] == pytest.approx(7.49e6, rel=0.02)  # ~7.5 M MACs


@pytest.mark.parametrize("name", reference_models.NAMES)
def test_parameters_and_macs_match_hand_formulas(name):
    stats = onnx_stats(reference_models.onnx_for(name))
    assert (stats.params, stats.macs) == EXPECTED[name]


@pytest.mark.parametrize("name", [n for n in reference_models.NAMES if n != "digits_cnn"])
def test_export_is_faithful_seeded_and_batch_dynamic(name):
    module = reference_models.get(name)
    model, again = module.load(), module.load()
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(not torch.allclose(bn.running_var, torch.ones_like(bn.running_var)) for bn in norms)
    x = module.test_data(3)
    assert x.shape == (3, *module.input_shape) and x.dtype == np.float32
    assert not np.array_equal(x, module.calib_data(3))
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(reference_models.onnx_for(name), x), expected, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["ds_cnn", "transformer_block"])
def test_quantised_exports_are_cached_and_close(name):
    first = reference_models.onnx_for(name, "int8")
    assert reference_models.onnx_for(name, "int8") == first
    model = onnx.load(str(first))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    x = reference_models.get(name).test_data(8)
    float_out = run_onnx(reference_models.onnx_for(name), x)
    err = np.sqrt(np.mean((run_onnx(model, x) - float_out) ** 2)) / np.std(float_out)
    assert err < 0.1, f"int8 relative RMS error {err:.3f}"


def test_unknown_model_name_suggests_one():
    with pytest.raises(KeyError, match="did you mean 'resnet8'"):
        reference_models.get("resnet-8")


def test_export_onnx_signatures(tmp_path):
    from reference_models import autoencoder, digits_cnn

    assert autoencoder.export_onnx(tmp_path / "a.onnx").is_file()
    assert digits_cnn.export_onnx(None, tmp_path / "d.onnx").is_file()
    with pytest.raises(TypeError, match="destination path"):
        digits_cnn.export_onnx(digits_cnn.load())
