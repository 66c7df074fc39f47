"""Bytes of the encoded weight and scale/bias streams a weight DMA moves on an Ethos-U target.

With ``weight_compression = "ethos-u"`` weights sit in off-chip memory as the NPU's compressed
stream (Arm's "mlw" format, Golomb-Rice codes with zero runs) and scales/biases as 10-byte
records per output channel (40-bit bias, 32-bit scale, 6-bit shift), each stream padded to 16
bytes: what Vela's ``weight_compressor.py`` writes. The DMA moves those bytes; the weight decoder
hands the MAC array the plain weights, so the emulator copies the plain block and the cost model
charges the encoded size (``DmaIn.encoded_bytes``).

The size comes from Vela's own encoder, ``ethosu.mlw_codec.reorder_encode`` (the ``[vela]`` extra),
called as Vela calls it: weights minus their zero point in OHWI order, bricked by the OFM block
depth the block model chose, part-kernel-first when the convolution traverses that way. Without
the extra it is estimated: the Shannon entropy of the block's weight values in bits per weight
(the codes are near-optimal for the peaked distributions of trained and pruned weights), plus
one byte per 64 weights of stream overhead. ``tests/compiler/test_weights.py`` measures the
estimate against the encoder.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..npu import blocks as block_model

STREAM_ALIGN = 16
SCALE_RECORD_BYTES = block_model.BIAS_BYTES_PER_CHANNEL
ESTIMATE_OVERHEAD_WEIGHTS_PER_BYTE = 64


def _align(n: int) -> int:
    return -(-int(n) // STREAM_ALIGN) * STREAM_ALIGN


@lru_cache(maxsize=1)
def codec():
    """Vela's weight encoder, or None when the ``[vela]`` extra is not installed."""
    try:
        from ethosu import mlw_codec
    except ImportError:
        return None
    return mlw_codec


def scale_stream_bytes(channels: int) -> int:
    """The scale/bias stream of ``channels`` output channels, padded to 16 bytes."""
    return _align(SCALE_RECORD_BYTES * channels)


def weight_stream_bytes(weights: np.ndarray, zero_point: int, *, depthwise: bool, part_kernel: bool,
                        ofm_block_depth: int, ifm_bits: int, ifm_micro_depth: int, ofm_micro_depth: int,
                        dilation: tuple[int, int] = (1, 1)) -> int:
    """Encoded bytes of one weight block, padded to 16.

    ``weights``: (KH, KW, Cin, Cout) for a convolution, (KH, KW, C) depthwise, (K, N) fully
    connected (the IR layouts)."""
    w = np.asarray(weights).astype(np.int16) - np.int16(zero_point)
    if w.ndim == 2:                  # (K, N) -> (N, 1, 1, K)
        ohwi = w.T[:, None, None, :]
    elif w.ndim == 3:                # (KH, KW, C) -> (C, KH, KW, 1)
        ohwi = np.transpose(w, (2, 0, 1))[..., None]
    else:                            # (KH, KW, Cin, Cout) -> (Cout, KH, KW, Cin)
        ohwi = np.transpose(w, (3, 0, 1, 2))
    mlw = codec()
    if mlw is None:
        return _align(estimate_bytes(ohwi))
    encoded, _ = mlw.reorder_encode(
        ifm_micro_depth, ofm_micro_depth, np.ascontiguousarray(ohwi), max(1, min(ofm_block_depth, ohwi.shape[0])),
        depthwise, part_kernel and not depthwise, ifm_bits,
        block_model.SUBKERNEL_MAX // dilation[0], block_model.SUBKERNEL_MAX // dilation[1])
    return _align(len(encoded))


def estimate_bytes(values: np.ndarray) -> int:
    """Entropy-coded size of a block of weights (the fallback when mlw_codec is absent)."""
    flat = np.asarray(values).reshape(-1)
    if flat.size == 0:
        return 0
    _, counts = np.unique(flat, return_counts=True)
    p = counts / flat.size
    bits = float(-(p * np.log2(p)).sum()) * flat.size
    return int(math.ceil(bits / 8)) + -(-flat.size // ESTIMATE_OVERHEAD_WEIGHTS_PER_BYTE)
