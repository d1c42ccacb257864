"""The fitted-proxy artifact: safetensors for tensors, JSON for everything else (no pickle).

A directory with
    proxy.json         format version, proxy kind, backbone spec, task identity (alphabet, length,
                       template), beta settings, label normalisation, aux-ensemble config, embedding
                       fingerprint; for the NTK proxy its kernel's settings
    proxy.safetensors  offline statistics (gram, phi_sum, phi_y, label sums), aux-ensemble state
                       ("aux." prefix), fingerprint embeddings; and the proxy itself: the LM's head
                       weights w ("head."), or the NTK proxy's kernel rows, standardised labels and
                       dual weights ("ntk.x", "ntk.y", "ntk.alpha")
Loading rebuilds the backbone from its spec and checks that it reproduces the fingerprint; the NTK
proxy is rebuilt from its dual weights (no solve), so it scores as the saved one did.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file

from bib_ray.alphabets import encode
from bib_ray.backbones import build_backbone
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.ntk import ReluNTK
from bib_ray.core.ntk_proxy import NTKProxy
from bib_ray.core.proxy import BidirectionalProxy, DesignProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.proxy.embedding import SequenceEmbedder
from bib_ray.errors import UserError
from bib_ray.proxy.scoring import score_codes
from bib_ray.tasks.base import Task

ARTIFACT_FORMAT = 1
JSON_NAME, TENSORS_NAME = "proxy.json", "proxy.safetensors"
FINGERPRINT_ROWS = 4
FINGERPRINT_RTOL = 1e-4
LINEAR_HEAD, NTK = "linear-head", "ntk"  # proxy kinds (proxy.json "proxy"; absent: linear-head)


@dataclass(frozen=True)
class LMIdentity:
    """What a run records of its LM without holding it: the backbone's description, the device it
    ran on, and its embeddings of the task's first ``FINGERPRINT_ROWS`` offline rows (the fingerprint
    that a loader checks). Made wherever the LM lives: in this process or on a shard actor."""

    description: dict
    device: str
    fingerprint_phi: torch.Tensor

    @property
    def spec(self) -> str:
        return self.description["spec"]

    @classmethod
    def of(cls, embedder: SequenceEmbedder, task: Task) -> "LMIdentity":
        return cls.from_probe(embedder, fingerprint_codes(task))

    @classmethod
    def from_probe(cls, embedder: SequenceEmbedder, probe: np.ndarray) -> "LMIdentity":
        return cls(embedder.backbone.describe(), str(embedder.device), embedder.embed_codes(probe).cpu())


def fingerprint_codes(task: Task) -> np.ndarray:
    """The offline rows whose embeddings identify the LM in an artifact."""
    return task.x[:FINGERPRINT_ROWS]


def save_proxy_artifact(directory: Path, task: Task, lm: LMIdentity, statistics: EmbeddingStatistics,
                        proxy: DesignProxy, aux: AuxiliaryEnsemble | None,
                        fixed_positions: list[int] | None = None) -> Path:
    """Write the artifact directory of ``proxy`` (an LM's linear head or the NTK proxy) fitted on offline
    rows with ``statistics``; returns it. ``fixed_positions`` (1-based) records the positions the run's
    designs kept."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = fingerprint_codes(task)
    tensors = {f"stats.{k}": v.contiguous() for k, v in statistics.to_tensors().items()}
    tensors.update(proxy_tensors(proxy))
    tensors["fingerprint.phi"] = lm.fingerprint_phi.contiguous()
    if aux is not None:
        tensors.update({f"aux.{k}": v.detach().cpu().contiguous() for k, v in aux.state_dict().items()})
    save_file(tensors, str(directory / TENSORS_NAME))
    meta = {
        "format": ARTIFACT_FORMAT,
        "backbone": lm.description,
        "task": task.identity(),
        "proxy": NTK if isinstance(proxy, NTKProxy) else LINEAR_HEAD,
        "kernel": dataclasses.asdict(proxy.kernel) if isinstance(proxy, NTKProxy) else None,
        "beta": proxy.beta, "beta_scale": proxy.beta_scale, "design_beta_scale": proxy.design_beta_scale,
        "label_mean": proxy.label_mean, "label_std": proxy.label_std, "offline_rows": statistics.count,
        "aux": None if aux is None else aux.config(),
        "fingerprint_sequences": task.sequences(probe),
        "fixed_positions": fixed_positions,
    }
    (directory / JSON_NAME).write_text(json.dumps(meta, indent=2))
    return directory


def proxy_tensors(proxy: DesignProxy) -> dict[str, torch.Tensor]:
    """What an artifact stores of the proxy itself: the head's weights, or the NTK proxy's dual form."""
    if isinstance(proxy, NTKProxy):
        if not isinstance(proxy.kernel, ReluNTK):
            raise ValueError(f"only the ReLU NTK can be saved, not {type(proxy.kernel).__name__}")
        tensors = {f"ntk.{name}": getattr(proxy, name).detach().cpu().contiguous() for name in ("x", "y", "alpha")}
        x = tensors["ntk.x"]
        if bool(((x == 0) | (x == 1)).all()):  # one-hot rows: stored as bytes, exactly (1/8 of float64)
            tensors["ntk.x"] = x.to(torch.uint8)
        return tensors
    if isinstance(proxy, BidirectionalProxy):
        return {"head.weights": proxy.weights.detach().cpu().contiguous()}
    raise ValueError(f"no artifact format for a {type(proxy).__name__}")


def proxy_from_tensors(meta: dict, tensors: dict[str, torch.Tensor], statistics: EmbeddingStatistics,
                       device: str | torch.device) -> DesignProxy:
    """The proxy ``proxy_tensors`` stored, as its kind in ``meta`` says."""
    if meta.get("proxy", LINEAR_HEAD) == NTK:
        return NTKProxy.from_dual(tensors["ntk.x"], tensors["ntk.y"], tensors["ntk.alpha"], meta["label_mean"],
                                  meta["label_std"], ReluNTK(**meta["kernel"]), meta["beta"], meta["beta_scale"],
                                  meta["design_beta_scale"], device)
    return BidirectionalProxy(statistics, meta["beta_scale"], meta["design_beta_scale"], device)


@dataclass
class LoadedProxy:
    """A proxy artifact ready to score sequences."""

    meta: dict
    embedder: SequenceEmbedder
    proxy: DesignProxy
    aux: AuxiliaryEnsemble | None
    sha256: str

    @property
    def alphabet(self) -> str:
        return self.meta["task"]["alphabet"]

    @property
    def length(self) -> int:
        return int(self.meta["task"]["length"])

    @property
    def kind(self) -> str:
        """``linear-head`` (an LM's head) or ``ntk`` (the NTK proxy on one-hot features)."""
        return self.meta.get("proxy", LINEAR_HEAD)

    @property
    def model_id(self) -> str:
        """What scores: the LM's backbone spec, or ``ntk`` for the NTK proxy."""
        return NTK if self.kind == NTK else self.meta["backbone"]["spec"]

    def score(self, sequences: list[str], batch_size: int = 512) -> dict[str, np.ndarray]:
        """Proxy score, aux mean and aux std (label units) of designed-residue strings."""
        codes = encode(sequences, self.alphabet)
        if codes.shape[1] != self.length:
            raise UserError(f"sequences have length {codes.shape[1]}, the proxy scores length {self.length}")
        return score_codes(self.embedder, self.proxy, self.aux, codes, batch_size)


ArtifactFiles = dict[str, bytes]  # {JSON_NAME: ..., TENSORS_NAME: ...}: an artifact as it travels between nodes


def read_artifact_files(location: str | Path) -> ArtifactFiles:
    """The artifact's two files, read where this process runs: a local directory, or a storage URI
    (``s3://``, ``gs://``, ... through pyarrow's file systems) that this node can reach."""
    text = str(location)
    if "://" not in text:
        directory = Path(text).expanduser()
        missing = [name for name in (JSON_NAME, TENSORS_NAME) if not (directory / name).is_file()]
        if missing:
            raise UserError(f"{text} is not a proxy artifact (missing {', '.join(missing)}); pass the proxy/ "
                            f"directory of a design run or of a sweep's best trial")
        return {name: (directory / name).read_bytes() for name in (JSON_NAME, TENSORS_NAME)}
    import pyarrow.fs

    try:
        filesystem, root = pyarrow.fs.FileSystem.from_uri(text)
        files = {}
        for name in (JSON_NAME, TENSORS_NAME):
            with filesystem.open_input_stream(f"{root.rstrip('/')}/{name}") as stream:
                files[name] = stream.read()
        return files
    except (OSError, pyarrow.ArrowException) as error:
        raise UserError(f"cannot read the proxy artifact at {text}: {error}") from None


def artifact_hash(files: ArtifactFiles) -> str:
    digest = hashlib.sha256()
    for name in (JSON_NAME, TENSORS_NAME):
        digest.update(files[name])
    return digest.hexdigest()


def load_proxy_artifact(location: str | Path | ArtifactFiles, device: str | torch.device = "cpu") -> LoadedProxy:
    """Rebuild the backbone, proxy and aux model of an artifact written by ``save_proxy_artifact``,
    from its directory or URI, or from its files' bytes (as shipped to a Serve replica on another node)."""
    files = location if isinstance(location, dict) else read_artifact_files(location)
    where = "artifact" if isinstance(location, dict) else str(location)
    meta = json.loads(files[JSON_NAME])
    if meta.get("format") != ARTIFACT_FORMAT:
        raise UserError(f"{where}: artifact format {meta.get('format')} is not supported ({ARTIFACT_FORMAT})")
    tensors = load_tensors(files[TENSORS_NAME])
    shell = Task.from_identity(meta["task"])
    alphabet = shell.alphabet
    backbone = build_backbone(meta["backbone"]["spec"], alphabet, shell.read_length)
    embedder = SequenceEmbedder(backbone, shell, device)
    fingerprint = embedder.embed_codes(encode(meta["fingerprint_sequences"], alphabet))
    stored = tensors["fingerprint.phi"]
    if fingerprint.shape != stored.shape or not torch.allclose(fingerprint, stored, rtol=FINGERPRINT_RTOL,
                                                               atol=FINGERPRINT_RTOL):
        raise UserError(f"backbone {meta['backbone']['spec']!r} does not reproduce the embeddings stored in "
                        f"{where}: it is not the model the proxy was fitted with")
    statistics = EmbeddingStatistics.from_tensors(
        {k.removeprefix("stats."): v for k, v in tensors.items() if k.startswith("stats.")})
    proxy = proxy_from_tensors(meta, tensors, statistics, device)
    aux = None
    if meta["aux"] is not None:
        aux_state = {k.removeprefix("aux."): v for k, v in tensors.items() if k.startswith("aux.")}
        aux = AuxiliaryEnsemble.from_state(meta["aux"], aux_state).to(device)
    return LoadedProxy(meta, embedder, proxy, aux, artifact_hash(files))
