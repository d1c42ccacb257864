"""Control backbone with no language model: phi(x) is the flattened one-hot sequence.

The linear head on it is the additive (per-position) model, and its kernel counts matching
positions. It isolates what the optimiser does from what an LM's features contribute.
"""

from __future__ import annotations

import torch

from bib_ray.backbones.base import Backbone


class OneHotBackbone(Backbone):
    """phi (B, L * V) = the input distributions themselves, flattened (no parameters)."""

    def __init__(self, alphabet: str, length: int) -> None:
        super().__init__()
        self.alphabet = alphabet
        self.length = length
        self.hidden_size = length * len(alphabet)
        self.spec = f"onehot:length={length}"

    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        if probs.shape[1] != self.length:
            raise ValueError(f"onehot backbone built for length {self.length}, got {probs.shape[1]}")
        return probs.flatten(1).to(torch.float32)
