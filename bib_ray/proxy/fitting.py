"""Fitting on the offline rows: embed them once, solve the proxy in closed form, train aux ensembles.

Two proxies: the linear head on an LM's embeddings (``BidirectionalProxy``, from the sufficient
statistics alone) and, for backbone ``ntk``, BDI's NTK proxy on one-hot features of at most
``ntk_rows`` rows (``NTKProxy``). The offline embeddings can come from this process's LM
(``fit_proxy``) or from elsewhere (shard actors, a sweep's shared embedding pass:
``FittedProxy.linear_head``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from bib_ray.backbones import BackboneSpec, build_backbone
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings, aux_training_rows
from bib_ray.core.methods import NTK_BACKBONE
from bib_ray.core.ntk_proxy import NTKProxy, kernel_rows
from bib_ray.core.proxy import BidirectionalProxy, DesignProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.devices import resolve_device
from bib_ray.proxy.artifacts import LMIdentity, save_proxy_artifact
from bib_ray.proxy.embedding import SequenceEmbedder
from bib_ray.tasks.base import Task


# the proxy a run that names no backbone uses: the NTK proxy on one-hot features, chosen by measurement over
# tiny / onehot / ntk / unirep-256 on the suite's tasks and the main job (docs/backbones.md, "The default")
DEFAULT_BACKBONE = NTK_BACKBONE


@dataclass(frozen=True)
class ProxySettings:
    """How a proxy is fitted: the LM (``backbone`` spec, weights in ``dtype``, on ``device``), rows per
    LM call, the ridge's ``beta_scale``, the offline rows the aux ensembles train on, and for backbone
    ``ntk`` the rows in the NTK proxy's kernel."""

    backbone: BackboneSpec = BackboneSpec(DEFAULT_BACKBONE)
    beta_scale: float = 1e-6
    device: str = "auto"
    embed_batch_size: int = 512
    aux_max_rows: int = AuxiliarySettings.max_rows
    dtype: str = "float32"
    ntk_rows: int = 5000

    @property
    def uses_ntk_proxy(self) -> bool:
        """Whether the proxy is the NTK on one-hot features (backbone ``ntk``) rather than an LM's head."""
        return self.backbone.name == NTK_BACKBONE

    @property
    def feature_backbone(self) -> BackboneSpec:
        """The backbone that embeds sequences: ``onehot`` under the NTK proxy, else ``backbone``."""
        return BackboneSpec("onehot") if self.uses_ntk_proxy else self.backbone

    @property
    def feature_dtype(self) -> str:
        """Precision of the embedding backbone's weights: ``dtype`` for an LM; one-hot features under the
        NTK proxy stay float32."""
        return "float32" if self.uses_ntk_proxy else self.dtype


@dataclass
class FittedProxy:
    """Everything fitted on the offline set: the LM's identity, the statistics, the closed-form proxy,
    and the embeddings of the rows the auxiliary ensemble trains on (``aux_rows`` of task.x).
    ``embedder`` is the LM in this process; None on a Ray driver, whose LMs live on shard actors."""

    task: Task
    embedder: SequenceEmbedder | None
    lm: LMIdentity
    statistics: EmbeddingStatistics
    proxy: DesignProxy
    aux_rows: np.ndarray
    aux_phi: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def linear_head(cls, task: Task, lm: LMIdentity, statistics: EmbeddingStatistics, aux_rows: np.ndarray,
                    aux_phi: torch.Tensor, beta_scale: float, embedder: SequenceEmbedder | None = None,
                    device: torch.device | str = "cpu", timings: dict | None = None) -> "FittedProxy":
        """The linear-head proxy solved from offline ``statistics`` embedded elsewhere (shard actors, a
        sweep's shared pass), on ``device``."""
        started = time.perf_counter()
        proxy = BidirectionalProxy(statistics, beta_scale=beta_scale, device=device)
        timings = {**(timings or {}), "solve_proxy_s": time.perf_counter() - started}
        return cls(task, embedder, lm, statistics, proxy, aux_rows, aux_phi, timings)

    @classmethod
    def ntk(cls, task: Task, lm: LMIdentity, statistics: EmbeddingStatistics, rows: np.ndarray, phi: torch.Tensor,
            aux_rows: np.ndarray, aux_phi: torch.Tensor, beta_scale: float, embedder: SequenceEmbedder | None = None,
            device: torch.device | str = "cpu", gram: torch.Tensor | None = None,
            timings: dict | None = None) -> "FittedProxy":
        """The NTK proxy on the one-hot features ``phi`` of offline ``rows`` (``kernel_rows``), labels
        standardised by the full set's ``statistics``; ``gram``: their kernel when computed elsewhere."""
        started = time.perf_counter()
        proxy = NTKProxy(phi, torch.as_tensor(task.y[rows]), statistics.label_mean, statistics.label_std, None,
                         beta_scale, device=device, gram=gram)
        timings = {**(timings or {}), "solve_proxy_s": time.perf_counter() - started, "kernel_rows": len(rows)}
        return cls(task, embedder, lm, statistics, proxy, aux_rows, aux_phi, timings)

    def aux_labels(self) -> torch.Tensor:
        """Standardised labels of the aux training rows."""
        y = torch.as_tensor(self.task.y[self.aux_rows], dtype=torch.float64)
        return (y - self.proxy.label_mean) / self.proxy.label_std


def fit_proxy(task: Task, settings: ProxySettings, progress: bool = False,
              device: torch.device | None = None) -> FittedProxy:
    """Embed the offline set once in this process (on ``device``, default ``settings.device``) and solve
    the proxy in closed form: the LM's linear head, or the NTK proxy on one-hot features for backbone ``ntk``."""
    target = device if device is not None else resolve_device(settings.device)
    started = time.perf_counter()
    backbone = build_backbone(settings.feature_backbone, task.alphabet, task.read_length,
                              dtype=settings.feature_dtype)
    embedder = SequenceEmbedder(backbone, task, target)
    loaded = time.perf_counter()
    statistics, phi = embedder.statistics(task.x, task.y, settings.embed_batch_size, progress)
    embedded = time.perf_counter()
    aux_rows = aux_training_rows(len(task.y), settings.aux_max_rows)
    lm = LMIdentity.of(embedder, task)
    timings = {"load_backbone_s": loaded - started, "embed_offline_s": embedded - loaded,
               "embed_rows_per_s": len(task.y) / max(embedded - loaded, 1e-9)}
    if settings.uses_ntk_proxy:
        rows = kernel_rows(len(task.y), settings.ntk_rows)
        return FittedProxy.ntk(task, lm, statistics, rows, phi[rows], aux_rows, phi[aux_rows], settings.beta_scale,
                               embedder, target, timings=timings)
    return FittedProxy.linear_head(task, lm, statistics, aux_rows, phi[aux_rows], settings.beta_scale, embedder,
                                   target, timings)


def fit_aux_ensemble(statistics: EmbeddingStatistics, phi: torch.Tensor, labels: torch.Tensor,
                     settings: AuxiliarySettings, seed: int) -> tuple[AuxiliaryEnsemble, dict]:
    """The ensemble for ``seed`` trained on rows ``phi`` with standardised ``labels`` (on the CPU),
    and its out-of-bag metrics."""
    mean, std = statistics.feature_moments()
    aux = AuxiliaryEnsemble(statistics.dim, settings, seed, mean, std)
    return aux, aux.fit(phi, labels)


def fit_and_save_proxy(task: Task, settings: ProxySettings, out: Path, aux_settings: AuxiliarySettings | None = None,
                       seed: int = 0) -> Path:
    """Fit the proxy and one aux ensemble on ``task`` and write the scoring artifact (no design run)."""
    aux_settings = aux_settings or AuxiliarySettings(max_rows=settings.aux_max_rows)
    fitted = fit_proxy(task, replace(settings, aux_max_rows=aux_settings.max_rows))
    aux, _ = fit_aux_ensemble(fitted.statistics, fitted.aux_phi, fitted.aux_labels(), aux_settings, seed)
    return save_proxy_artifact(out, task, fitted.lm, fitted.statistics, fitted.proxy, aux.to(fitted.lm.device))
