"""The one interface every language-model backbone implements.

A backbone is a frozen LM built for a residue alphabet. It embeds a batch of residue
distributions P (B, L, V) -- hard one-hot rows for real sequences, soft rows during
optimisation -- differentiably into phi (B, H): the mean of the last hidden states over
the residue positions (special tokens excluded). Feeding P instead of token ids is what
lets gradients reach the design logits: the LM receives ``inputs_embeds = P @ E_alphabet``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from bib_ray.alphabets import encode


class Backbone(nn.Module, ABC):
    """Frozen LM embedding residue distributions over ``alphabet`` into R^hidden_size."""

    #: how to rebuild this backbone with ``bib_ray.backbones.build_backbone`` (e.g. "tiny", "unirep-256")
    spec: str
    #: residue letters, in the order of the last axis of the distributions passed to ``embed``
    alphabet: str
    #: dimension d of phi
    hidden_size: int

    def freeze(self) -> "Backbone":
        """Put in eval mode and stop gradients into the weights (gradients still reach the inputs)."""
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")

    @abstractmethod
    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        """probs (B, L, V) over ``alphabet`` (rows sum to 1) -> phi (B, H), differentiable in probs."""

    def embed_token_ids(self, sequences: list[str]) -> torch.Tensor:
        """phi for sequences entered through the model's own token-id path (no inputs_embeds).

        Must equal ``embed(one_hot(sequences))``; backbones with a tokenizer override this to go
        through it, which is what the token-id vs one-hot equality test checks.
        """
        codes = torch.as_tensor(encode(sequences, self.alphabet), device=self.device)
        probs = nn.functional.one_hot(codes, len(self.alphabet)).to(torch.float32)
        return self.embed(probs)

    def describe(self) -> dict:
        """JSON-serialisable identity of the backbone, written into artifacts and reports."""
        return {"spec": self.spec, "alphabet": self.alphabet, "hidden_size": self.hidden_size}
