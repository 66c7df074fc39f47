"""A small pre-norm transformer encoder block (sequence 16, width 32, 2 heads, MLP 64).

Here so the compiler meets what CNNs never show it: activation x activation MatMul, Softmax,
LayerNormalization and GELU (LUT candidates or host fallback).  Seeded weights, seeded inputs.
    h = x + Proj(Attention(LN1(x)));  y = h + FF2(GELU(FF1(LN2(h))))
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._common import SeededReference

NAME = "transformer_block"
SEQ, WIDTH, HEADS, HIDDEN = 16, 32, 2, 64
input_shape = (SEQ, WIDTH)
SEED = 1632


class TransformerBlock(nn.Module):
    def __init__(self, seq: int = SEQ, width: int = WIDTH, heads: int = HEADS, hidden: int = HIDDEN):
        super().__init__()
        self.seq, self.heads, self.head_dim = seq, heads, width // heads
        self.ln1 = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.ff1 = nn.Linear(width, hidden)
        self.gelu = nn.GELU()
        self.ff2 = nn.Linear(hidden, width)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1, self.seq, self.heads, self.head_dim).transpose(1, 2)   # (B, H, S, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        q, k, v = self._split_heads(self.q(h)), self._split_heads(self.k(h)), self._split_heads(self.v(h))
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        attended = torch.matmul(torch.softmax(scores, dim=-1), v)                    # (B, H, S, D)
        x = x + self.proj(attended.transpose(1, 2).reshape(-1, self.seq, self.heads * self.head_dim))
        return x + self.ff2(self.gelu(self.ff1(self.ln2(x))))


def _randomise_norms(model: TransformerBlock, seed: int) -> TransformerBlock:
    """LayerNorm affine parameters away from (1, 0), so folding/LUT paths see real values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in (model.ln1, model.ln2):
            norm.weight.copy_(torch.rand(norm.normalized_shape, generator=gen) + 0.5)
            norm.bias.copy_(torch.randn(norm.normalized_shape, generator=gen) * 0.1)
    return model


_ref = SeededReference(NAME, lambda: _randomise_norms(TransformerBlock(), SEED), input_shape, SEED)
build, load, export_onnx, calib_data, test_data = (_ref.build, _ref.load, _ref.export_onnx, _ref.calib_data,
                                                   _ref.test_data)
