"""A tiny built-in transformer encoder with a seeded random initialisation.

Needs no download, so it is the offline default and the test backbone. Its features are
random (not pre-trained); the proxy it gives is a random-feature ridge regression.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bib_ray.backbones.base import Backbone


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Standard sin/cos position codes (length, dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention (fused scaled-dot-product kernel) + MLP block."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, dim = h.shape
        qkv = self.qkv(self.norm1(h)).view(batch, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, head_dim)
        mixed = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, dim)
        h = h + self.out(mixed)
        return h + self.mlp(self.norm2(h))


class TinyTransformerBackbone(Backbone):
    """Embedding table over the alphabet, sinusoidal positions, ``layers`` encoder blocks, final LayerNorm;
    phi = mean of the last hidden states over positions."""

    def __init__(self, alphabet: str, hidden_size: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> None:
        super().__init__()
        if hidden_size % heads or hidden_size % 2:
            raise ValueError("hidden_size must be even and divisible by heads")
        self.alphabet = alphabet
        self.hidden_size = hidden_size
        self.spec = "tiny" if (hidden_size, layers, heads, seed) == (64, 2, 4, 0) else (
            f"tiny:hidden_size={hidden_size},layers={layers},heads={heads},seed={seed}")
        self.options = {"hidden_size": hidden_size, "layers": layers, "heads": heads, "seed": seed}
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG; leave it as it was
            self.token_embedding = nn.Parameter(torch.empty(len(alphabet), hidden_size))
            self.layers = nn.ModuleList(_EncoderLayer(hidden_size, heads) for _ in range(layers))
            self.final_norm = nn.LayerNorm(hidden_size)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name == "token_embedding":
                    parameter.normal_(0.0, 1.0, generator=generator)
                elif parameter.ndim >= 2:  # Linear weights (out, in): std 1/sqrt(in)
                    parameter.normal_(0.0, parameter.shape[-1] ** -0.5, generator=generator)
                elif "norm" not in name:  # Linear biases; LayerNorm keeps weight 1, bias 0
                    parameter.zero_()
        self.freeze()

    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        h = probs.to(self.token_embedding.dtype) @ self.token_embedding
        h = h + sinusoidal_positions(h.shape[1], self.hidden_size).to(h.device, h.dtype)
        for layer in self.layers:
            h = layer(h)
        return self.final_norm(h).mean(1).to(torch.float32)

    def describe(self) -> dict:
        return {**super().describe(), **self.options}
