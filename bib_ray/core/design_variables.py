"""Design logits Z (B, L, V): initialisation from seed sequences and the straight-through relaxation."""

from __future__ import annotations

import numpy as np
import torch


def init_logits(seeds: torch.Tensor, vocab_size: int, generator: torch.Generator, std: float = 0.01) -> torch.Tensor:
    """Z ~ N(0, std^2) per entry, with each row's largest entry swapped onto the seed letter,
    so that argmax(Z) reproduces ``seeds`` (B, L) exactly.

    Every design draws its own noise. The reference code does so for proteins; for DNA it draws one
    (L, V) sample shared by all designs. One rule for every task keeps trajectories independent, so a
    batch split over workers gives the same designs as one batch."""
    noise = torch.randn(*seeds.shape, vocab_size, generator=generator, dtype=torch.float32) * std
    noise = noise.to(seeds.device)
    top_index = noise.argmax(-1, keepdim=True)
    top_value = noise.gather(-1, top_index)
    seed_index = seeds.unsqueeze(-1)
    seed_value = noise.gather(-1, seed_index)
    noise = noise.scatter(-1, top_index, seed_value)
    return noise.scatter(-1, seed_index, top_value)


MASKED_LOGIT = -1e4  # far below any reachable logit: softmax weight 0, never the argmax


def mask_logits(logits: torch.Tensor, allowed: np.ndarray) -> torch.Tensor:
    """Set the logits (B, L, V) of letters not ``allowed`` at a position to MASKED_LOGIT; ``allowed`` is
    (L, V) for every design or (B, L, V) per design, bool.

    Their softmax weight and hence their gradient are then 0, so Adam never moves them and
    decoding never picks them; a position with one allowed letter has no gradient at all. The
    letters of the current argmax must be allowed."""
    mask = torch.as_tensor(np.asarray(allowed, dtype=bool), device=logits.device)
    if mask.shape not in (logits.shape[1:], logits.shape):
        raise ValueError(f"allowed {tuple(mask.shape)} does not match logits {tuple(logits.shape[1:])}")
    mask = mask.expand_as(logits)
    if not bool(mask.gather(-1, logits.argmax(-1, keepdim=True)).all()):
        raise ValueError("a starting letter is not allowed at its position")
    return logits.masked_fill(~mask, MASKED_LOGIT)


def straight_through(logits: torch.Tensor) -> torch.Tensor:
    """Hard one-hot of argmax in the forward pass; gradient of softmax in the backward pass."""
    soft = torch.softmax(logits, dim=-1)
    hard = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())  # the bracket is exactly 0 forward, so rows stay exactly one-hot
