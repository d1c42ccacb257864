"""The fitted-proxy artifact: safetensors for tensors, JSON for everything else (no pickle).

A directory with
    proxy.json         format version, backbone spec, task identity (alphabet, length, template),
                       beta settings, label normalisation, aux-ensemble config, embedding fingerprint
    proxy.safetensors  offline statistics (gram, phi_sum, phi_y, label sums), head weights w,
                       aux-ensemble state ("aux." prefix), fingerprint embeddings
Loading rebuilds the backbone from its spec and checks that it reproduces the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bib_ray.alphabets import encode
from bib_ray.backbones import build_backbone
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.proxy import BidirectionalProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.embedding import SequenceEmbedder
from bib_ray.errors import UserError
from bib_ray.scoring import score_codes
from bib_ray.tasks.base import Task

ARTIFACT_FORMAT = 1
JSON_NAME, TENSORS_NAME = "proxy.json", "proxy.safetensors"
FINGERPRINT_ROWS = 4
FINGERPRINT_RTOL = 1e-4


def save_proxy_artifact(directory: Path, task: Task, embedder: SequenceEmbedder, proxy: BidirectionalProxy,
                        aux: AuxiliaryEnsemble | None) -> Path:
    """Write the artifact directory; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = task.x[:FINGERPRINT_ROWS]
    tensors = {f"stats.{k}": v.contiguous() for k, v in proxy.statistics.to_tensors().items()}
    tensors["head.weights"] = proxy.weights.detach().cpu().contiguous()
    tensors["fingerprint.phi"] = embedder.embed_codes(probe).contiguous()
    if aux is not None:
        tensors.update({f"aux.{k}": v.detach().cpu().contiguous() for k, v in aux.state_dict().items()})
    save_file(tensors, str(directory / TENSORS_NAME))
    meta = {
        "format": ARTIFACT_FORMAT,
        "backbone": embedder.backbone.describe(),
        "task": task.identity(),
        "beta": proxy.beta, "beta_scale": proxy.beta_scale, "design_beta_scale": proxy.design_beta_scale,
        "label_mean": proxy.label_mean, "label_std": proxy.label_std, "offline_rows": proxy.count,
        "aux": None if aux is None else aux.config(),
        "fingerprint_sequences": task.sequences(probe),
    }
    (directory / JSON_NAME).write_text(json.dumps(meta, indent=2))
    return directory


@dataclass
class LoadedProxy:
    """A proxy artifact ready to score sequences."""

    meta: dict
    embedder: SequenceEmbedder
    proxy: BidirectionalProxy
    aux: AuxiliaryEnsemble | None
    sha256: str

    @property
    def alphabet(self) -> str:
        return self.meta["task"]["alphabet"]

    @property
    def length(self) -> int:
        return int(self.meta["task"]["length"])

    def score(self, sequences: list[str], batch_size: int = 512) -> dict[str, np.ndarray]:
        """Proxy score, aux mean and aux std (label units) of designed-residue strings."""
        codes = encode(sequences, self.alphabet)
        if codes.shape[1] != self.length:
            raise UserError(f"sequences have length {codes.shape[1]}, the proxy scores length {self.length}")
        return score_codes(self.embedder, self.proxy, self.aux, codes, batch_size)


def artifact_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in (JSON_NAME, TENSORS_NAME):
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()


def load_proxy_artifact(directory: str | Path, device: str | torch.device = "cpu") -> LoadedProxy:
    """Read an artifact written by ``save_proxy_artifact`` and rebuild its backbone, proxy and aux model."""
    directory = Path(directory)
    if not (directory / JSON_NAME).is_file() or not (directory / TENSORS_NAME).is_file():
        raise UserError(f"{directory} is not a proxy artifact (needs {JSON_NAME} and {TENSORS_NAME})")
    meta = json.loads((directory / JSON_NAME).read_text())
    if meta.get("format") != ARTIFACT_FORMAT:
        raise UserError(f"{directory}: artifact format {meta.get('format')} is not supported ({ARTIFACT_FORMAT})")
    tensors = load_file(str(directory / TENSORS_NAME))
    shell = Task.from_identity(meta["task"])
    alphabet = shell.alphabet
    backbone = build_backbone(meta["backbone"]["spec"], alphabet, shell.read_length)
    embedder = SequenceEmbedder(backbone, shell, device)
    fingerprint = embedder.embed_codes(encode(meta["fingerprint_sequences"], alphabet))
    if not torch.allclose(fingerprint, tensors["fingerprint.phi"], rtol=FINGERPRINT_RTOL, atol=FINGERPRINT_RTOL):
        raise UserError(f"backbone {meta['backbone']['spec']!r} does not reproduce the embeddings stored in "
                        f"{directory}: it is not the model the proxy was fitted with")
    statistics = EmbeddingStatistics.from_tensors(
        {k.removeprefix("stats."): v for k, v in tensors.items() if k.startswith("stats.")})
    proxy = BidirectionalProxy(statistics, meta["beta_scale"], meta["design_beta_scale"], device)
    aux = None
    if meta["aux"] is not None:
        aux_state = {k.removeprefix("aux."): v for k, v in tensors.items() if k.startswith("aux.")}
        aux = AuxiliaryEnsemble.from_state(meta["aux"], aux_state).to(device)
    return LoadedProxy(meta, embedder, proxy, aux, artifact_hash(directory))
