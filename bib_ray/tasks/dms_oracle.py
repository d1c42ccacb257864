"""Approximate oracle for deep-mutational-scan tasks: an MLP on the substitutions a variant carries.

f(x) = v . relu(sum_{(i,a) in subs(x)} E[i,a] + c) + d, i.e. an MLP on the one-hot of observed
substitutions (an EmbeddingBag keeps it sparse). It is trained on 90 % of the whole scan and
its Spearman / Pearson on the other 10 % are recorded, so every report can say how far to
trust it. A design is scored only inside the data's support: at most ``radius`` substitutions
from the wild type, each of them seen in the scan; anything else is UNKNOWN, never a number.
"""

from __future__ import annotations

import numpy as np
import torch

from bib_ray.tasks.evaluation import spearman
from bib_ray.tasks.base import DesignStatus, OracleKind, OracleResult

HIDDEN = 64
EPOCHS = 15
BATCH = 512
LR = 3e-3
VALIDATION_FRACTION = 0.1


class SubstitutionMLP(torch.nn.Module):
    def __init__(self, features: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.bag = torch.nn.EmbeddingBag(features, hidden, mode="sum")
        torch.nn.init.normal_(self.bag.weight, std=0.05)
        self.bias = torch.nn.Parameter(torch.zeros(hidden))
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bag(ids, offsets) + self.bias)).squeeze(-1)


def bags(feature_lists: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Variable-length id lists -> (flat ids, start offsets) for EmbeddingBag."""
    lengths = np.array([len(f) for f in feature_lists], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    flat = np.concatenate(feature_lists) if feature_lists else np.zeros(0, np.int64)
    return torch.as_tensor(flat, dtype=torch.long), torch.as_tensor(offsets, dtype=torch.long)


class DMSOracle:
    """Scores full-length sequences of one protein; UNKNOWN outside the scan's support."""

    kind = OracleKind.APPROXIMATE

    def __init__(self, wild_type: np.ndarray, feature_index: np.ndarray, radius: int, model: SubstitutionMLP,
                 label_mean: float, label_std: float, quality: dict) -> None:
        self.wild_type = wild_type
        self.feature_index = feature_index  # (L, V) substitution id, -1 for unseen or wild type
        self.radius = radius
        self.model = model.eval()
        self.label_mean, self.label_std = label_mean, label_std
        self.quality = quality

    def __call__(self, codes: np.ndarray) -> OracleResult:
        codes = np.asarray(codes, dtype=np.int64)
        mutated = codes != self.wild_type[None]
        ids = np.where(mutated, self.feature_index[np.arange(codes.shape[1])[None], codes], -1)
        supported = (mutated.sum(1) <= self.radius) & ~np.any(mutated & (ids < 0), axis=1)
        scores = np.full(len(codes), np.nan)
        rows = np.flatnonzero(supported)
        if len(rows):
            flat, offsets = bags([ids[r][mutated[r]] for r in rows])
            with torch.no_grad():
                scores[rows] = self.model(flat, offsets).double().numpy() * self.label_std + self.label_mean
        status = np.where(supported, DesignStatus.OK.value, DesignStatus.UNKNOWN.value)
        return OracleResult(scores=scores, status=status)


def train_dms_oracle(wild_type: np.ndarray, variants: list[np.ndarray], scores: np.ndarray, vocab_size: int,
                     radius: int, seed: int = 0) -> DMSOracle:
    """Fit the substitution MLP on 90 % of the scan (seeded), measure it on the other 10 %.

    ``variants``: per row, the flat indices ``position * vocab_size + residue`` of its substitutions.
    """
    observed = np.unique(np.concatenate(variants))
    feature_index = np.full(len(wild_type) * vocab_size, -1, dtype=np.int64)
    feature_index[observed] = np.arange(len(observed))
    ids = [feature_index[v] for v in variants]
    y = np.asarray(scores, dtype=np.float64)
    mean, std = float(y.mean()), float(y.std() or 1.0)
    target = torch.as_tensor((y - mean) / std, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(round(len(y) * (1 - VALIDATION_FRACTION)))
    train, valid = order[:cut], order[cut:]
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = SubstitutionMLP(len(observed))
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        shuffled = train[torch.randperm(len(train), generator=generator).numpy()]
        for start in range(0, len(shuffled), BATCH):
            batch = shuffled[start:start + BATCH]
            flat, offsets = bags([ids[i] for i in batch])
            loss = torch.nn.functional.mse_loss(model(flat, offsets), target[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        flat, offsets = bags([ids[i] for i in valid])
        predicted = model(flat, offsets).double().numpy() * std + mean
    quality = {"validation_rows": int(len(valid)), "validation_spearman": spearman(predicted, y[valid]),
               "validation_pearson": float(np.corrcoef(predicted, y[valid])[0, 1]),
               "substitutions": int(len(observed))}
    return DMSOracle(wild_type, feature_index.reshape(len(wild_type), vocab_size), radius, model, mean, std, quality)
