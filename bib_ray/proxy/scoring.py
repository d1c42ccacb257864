"""Scoring integer-coded sequences with a fitted proxy and its auxiliary ensemble."""

from __future__ import annotations

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.evolution import ProxyScore
from bib_ray.core.proxy import DesignProxy
from bib_ray.proxy.embedding import SequenceEmbedder


@torch.no_grad()
def score_codes(embedder: SequenceEmbedder, proxy: DesignProxy, aux: AuxiliaryEnsemble | None,
                codes: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
    """In label units: proxy_score = mu + sigma phi.w; aux_mean / aux_std = mean and spread of the
    aux ensemble's members (when there is one)."""
    phi = embedder.embed_codes(codes, batch_size).to(embedder.device)
    out = {"proxy_score": proxy.predict_raw(phi).cpu().numpy()}
    if aux is not None:
        members = aux(phi).double() * proxy.label_std + proxy.label_mean
        out["aux_mean"] = members.mean(0).cpu().numpy()
        spread = members.std(0) if members.shape[0] > 1 else torch.zeros_like(members[0])
        out["aux_std"] = spread.cpu().numpy()
    return out


def proxy_scorer(embedder: SequenceEmbedder, proxy: DesignProxy, batch_size: int) -> ProxyScore:
    """codes (B, L) -> the proxy's standardised scores (B,), float64 on the CPU (what evolution ranks by)."""
    @torch.no_grad()
    def score(codes: np.ndarray) -> np.ndarray:
        phi = embedder.embed_codes(codes, batch_size).to(embedder.device)
        return proxy.predict(phi).cpu().numpy()

    return score
