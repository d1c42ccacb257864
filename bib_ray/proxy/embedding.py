"""Embedding sequences of a task with a backbone: designs (differentiable) and offline rows (batched).

Designs cover the task's designed residues; when the task has a template (e.g. the GB1
domain) they are placed into it first, so the LM always reads the full sequence.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from bib_ray.backbones.base import Backbone
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.tasks.base import Task

ProgressFactory = Callable[[int, str], "object"]


class SequenceEmbedder:
    """phi for designs of one task: ``embed_designs(P)`` with gradients, ``embed_codes(x)`` in batches.

    ``device``: where to move the backbone and its inputs; None keeps the backbone where it is (as
    ``build_backbone(devices=...)`` placed it). A split backbone (``Backbone.split``) is never moved:
    ``device`` must then be None or its input device.
    """

    def __init__(self, backbone: Backbone, task: Task, device: torch.device | str | None = None) -> None:
        if backbone.alphabet != task.alphabet:
            raise ValueError(f"backbone built for {backbone.alphabet!r}, task uses {task.alphabet!r}")
        if backbone.split:
            if device is not None and not _same_device(torch.device(device), backbone.device):
                raise ValueError(f"backbone is split over several devices with inputs on {backbone.device}; "
                                 f"it cannot be moved to {device}")
            self.backbone, self.device = backbone, backbone.device
        elif device is None:
            self.backbone, self.device = backbone, backbone.device
        else:
            self.backbone, self.device = backbone.to(device), torch.device(device)
        self.task = task
        self.vocab_size = len(task.alphabet)
        self.positions = None
        self.template_probs = None
        if task.template is not None:
            template = torch.as_tensor(task.template, device=self.device)
            self.template_probs = torch.nn.functional.one_hot(template, self.vocab_size).to(torch.float32)
            self.positions = torch.as_tensor(task.design_positions, device=self.device)

    @property
    def hidden_size(self) -> int:
        return self.backbone.hidden_size

    def embed_designs(self, probs: torch.Tensor) -> torch.Tensor:
        """probs (B, L, V) over the designed residues -> phi (B, d), differentiable."""
        if self.template_probs is not None:
            full = self.template_probs.expand(probs.shape[0], -1, -1).clone()
            full[:, self.positions] = probs
            probs = full
        return self.backbone.embed(probs)

    @torch.no_grad()
    def embed_codes(self, codes: np.ndarray, batch_size: int = 512, progress: bool = False,
                    description: str = "embedding") -> torch.Tensor:
        """Integer-coded designs (N, L) -> phi (N, d) float32 on CPU."""
        from tqdm.auto import tqdm

        codes_t = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        chunks = []
        for start in tqdm(range(0, codes_t.shape[0], batch_size), desc=description, disable=not progress,
                          unit="batch", leave=False):
            batch = codes_t[start:start + batch_size].to(self.device)
            probs = torch.nn.functional.one_hot(batch, self.vocab_size).to(torch.float32)
            chunks.append(self.embed_designs(probs).float().cpu())
        if not chunks:
            return torch.zeros(0, self.hidden_size)
        return torch.cat(chunks)

    def statistics(self, codes: np.ndarray, y: np.ndarray, batch_size: int = 512,
                   progress: bool = False) -> tuple[EmbeddingStatistics, torch.Tensor]:
        """Sufficient statistics of (phi(x), y) and the embeddings themselves (for the aux model)."""
        phi = self.embed_codes(codes, batch_size, progress, description="embedding offline set")
        return EmbeddingStatistics.from_rows(phi, torch.as_tensor(y)), phi


def _same_device(requested: torch.device, actual: torch.device) -> bool:
    """``requested`` names ``actual`` ('cuda' without an index names the current CUDA device)."""
    if requested.type != actual.type:
        return False
    if requested.index is None and requested.type == "cuda":
        return actual.index == torch.cuda.current_device()
    return requested.index is None or requested.index == actual.index
