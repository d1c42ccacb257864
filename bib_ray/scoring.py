"""Scoring integer-coded sequences with a fitted proxy and its auxiliary ensemble (label units)."""

from __future__ import annotations

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.proxy import DesignProxy
from bib_ray.embedding import SequenceEmbedder


@torch.no_grad()
def score_codes(embedder: SequenceEmbedder, proxy: DesignProxy, aux: AuxiliaryEnsemble | None,
                codes: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
    """proxy_score = mu + sigma phi.w; aux_mean / aux_std = mean and spread of the members (if any)."""
    phi = embedder.embed_codes(codes, batch_size).to(embedder.device)
    out = {"proxy_score": proxy.predict_raw(phi).cpu().numpy()}
    if aux is not None:
        members = aux(phi).double() * proxy.label_std + proxy.label_mean
        out["aux_mean"] = members.mean(0).cpu().numpy()
        spread = members.std(0) if members.shape[0] > 1 else torch.zeros_like(members[0])
        out["aux_std"] = spread.cpu().numpy()
    return out
