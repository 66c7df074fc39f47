"""Encoded weight sizes: Vela's own encoder when installed, an entropy estimate otherwise."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pytest_npu.compiler import weights

needs_codec = pytest.mark.skipif(importlib.util.find_spec("ethosu") is None,
                                 reason="Vela's mlw_codec is not installed (pip install 'pytest-npu[vela]')")
ENCODE = dict(depthwise=False, part_kernel=False, ofm_block_depth=32, ifm_bits=8, ifm_micro_depth=8,
              ofm_micro_depth=8)


def _weights(zero_fraction: float, shape=(3, 3, 64, 64), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = np.clip(np.round(rng.normal(0, 40, shape)), -127, 127).astype(np.int8)
    w[rng.random(shape) < zero_fraction] = 0
    return w


def test_scale_streams_are_ten_bytes_per_channel_padded_to_16():
    assert weights.scale_stream_bytes(10) == 112 and weights.scale_stream_bytes(32) == 320


@needs_codec
def test_dense_weights_stay_their_size_and_sparse_ones_shrink():
    dense = _weights(0.0)
    assert 0.85 * dense.nbytes <= weights.weight_stream_bytes(dense, 0, **ENCODE) <= 1.05 * dense.nbytes
    sparse = _weights(0.83)
    assert weights.weight_stream_bytes(sparse, 0, **ENCODE) < 0.4 * sparse.nbytes


@needs_codec
@pytest.mark.parametrize("zero_fraction", [0.0, 0.5, 0.83, 0.95])
def test_the_estimate_is_within_15_percent_of_the_encoder(monkeypatch, zero_fraction):
    w = _weights(zero_fraction)
    encoded = weights.weight_stream_bytes(w, 0, **ENCODE)
    monkeypatch.setattr(weights, "codec", lambda: None)
    estimated = weights.weight_stream_bytes(w, 0, **ENCODE)
    assert estimated == pytest.approx(encoded, rel=0.15)


def test_without_the_encoder_the_estimate_follows_the_zeros(monkeypatch):
    monkeypatch.setattr(weights, "codec", lambda: None)
    sizes = [weights.weight_stream_bytes(_weights(z), 0, **ENCODE) for z in (0.0, 0.5, 0.9)]
    assert sizes[0] > sizes[1] > sizes[2] > 0 and all(s % 16 == 0 for s in sizes)
