"""The one interface every language-model backbone implements.

A backbone is a frozen LM built for a residue alphabet. It embeds a batch of residue
distributions P (B, L, V) -- hard one-hot rows for real sequences, soft rows during
optimisation -- differentiably into phi (B, H): the mean of the last hidden states over
the residue positions (special tokens excluded). Feeding P instead of token ids is what
lets gradients reach the design logits: the LM receives ``inputs_embeds = P @ E_alphabet``.

Precision and placement: the weights may be float32, bfloat16 or float16 (``build_backbone(dtype=)``);
inputs are cast to the weights' dtype inside ``embed`` (so gradients reach float32 logits through
the cast) and phi always comes back float32. A backbone normally lives on one device and moves
with ``.to``; a Hugging Face backbone built for several devices is *split* (its layers spread over
them with a device map) and must not be moved: ``device`` is then where its inputs go.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import nn

from bib_ray.alphabets import encode
from bib_ray.errors import UserError


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
        """Where inputs to ``embed`` go (the device of the first weight; CPU without weights)."""
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Precision of the weights (float32 for a backbone without floating-point weights)."""
        for tensor in self.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    @property
    def split(self) -> bool:
        """True when the weights are spread over several devices (then never call ``.to``)."""
        return len({tensor.device for tensor in self.parameters()}) > 1

    def place(self, devices: Sequence[torch.device | str]) -> "Backbone":
        """Move the weights onto ``devices[0]``; backbones that can be split over several devices are
        split when built (``build_backbone``), so more than one device is a UserError here."""
        if len(devices) != 1:
            raise UserError(f"backbone {self.spec!r} runs on one device, got {len(devices)}: only Hugging Face "
                            "backbones are split over several GPUs (use one GPU per shard for the others)")
        return self.to(devices[0])

    @abstractmethod
    def embed(self, probs: torch.Tensor) -> torch.Tensor:
        """probs (B, L, V) over ``alphabet`` (rows sum to 1, any float dtype) -> phi (B, H) float32,
        differentiable in probs."""

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
        return {"spec": self.spec, "alphabet": self.alphabet, "hidden_size": self.hidden_size,
                "dtype": str(self.dtype).removeprefix("torch.")}
