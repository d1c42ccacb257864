"""Auxiliary model for the adaptive modules: an ensemble of small MLP regressors on phi.

Each member is an independent two-layer MLP, standardised-phi -> hidden -> 1, with its own
initialisation seed and its own bootstrap resample of the offline rows. Members are stored
as stacked weights and trained together with batched matmuls, but their parameters and
losses never interact. f_aux(phi) is the member mean (standardised label units); the
member spread is the ensemble's uncertainty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class AuxiliarySettings:
    members: int = 5
    hidden: int = 64
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_rows: int = 20000  # offline rows the members train on (see aux_training_rows)


def aux_training_rows(count: int, max_rows: int) -> np.ndarray:
    """The offline rows the auxiliary ensemble trains on: all of them, or a fixed random subset
    of ``max_rows`` (the same for every seed and every way of sharding the data), sorted."""
    if count <= max_rows:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, size=max_rows, replace=False))


class AuxiliaryEnsemble(nn.Module):
    """Independent MLP regressors on standardised embeddings; ``forward`` returns (members, B)."""

    def __init__(self, dim: int, settings: AuxiliarySettings, seed: int,
                 feature_mean: torch.Tensor, feature_std: torch.Tensor) -> None:
        super().__init__()
        self.settings = settings
        self.seed = seed
        self.register_buffer("feature_mean", feature_mean.to(torch.float32).clone())
        self.register_buffer("feature_std", feature_std.to(torch.float32).clone())
        m, h = settings.members, settings.hidden
        self.w1 = nn.Parameter(torch.empty(m, dim, h))
        self.b1 = nn.Parameter(torch.empty(m, 1, h))
        self.w2 = nn.Parameter(torch.empty(m, h, 1))
        self.b2 = nn.Parameter(torch.empty(m, 1, 1))
        with torch.no_grad():
            for member in range(m):  # each member gets its own generator: independent initialisation
                gen = torch.Generator().manual_seed(seed * 1_000_003 + member)
                bound1, bound2 = dim**-0.5, h**-0.5
                self.w1[member].uniform_(-bound1, bound1, generator=gen)
                self.b1[member].uniform_(-bound1, bound1, generator=gen)
                self.w2[member].uniform_(-bound2, bound2, generator=gen)
                self.b2[member].uniform_(-bound2, bound2, generator=gen)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """Member predictions (members, B) for phi (B, d), in standardised label units."""
        z = ((phi.to(self.w1.dtype) - self.feature_mean) / self.feature_std).unsqueeze(0)
        hidden = torch.relu(torch.matmul(z, self.w1) + self.b1)
        return (torch.matmul(hidden, self.w2) + self.b2).squeeze(-1)

    def mean(self, phi: torch.Tensor) -> torch.Tensor:
        """f_aux(phi): the ensemble mean, shape (B,)."""
        return self.forward(phi).mean(0)

    def fit(self, phi: torch.Tensor, z: torch.Tensor) -> dict:
        """Train every member on its own bootstrap resample of (phi, z); returns out-of-bag metrics."""
        s = self.settings
        rng = np.random.default_rng(self.seed)
        phi, z = phi.to(torch.float32), z.to(torch.float32)
        n = phi.shape[0]
        bootstrap = torch.as_tensor(rng.integers(0, n, size=(s.members, n)))
        optimiser = torch.optim.Adam(self.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        self.train()
        for _ in range(s.epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, s.batch_size):
                idx = bootstrap[:, order[start:start + s.batch_size]]  # (members, b): each member's own rows
                prediction = self._forward_member_rows(phi[idx])
                loss = ((prediction - z[idx]) ** 2).mean(1).sum()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        self.eval()
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self._out_of_bag_metrics(phi, z, bootstrap)

    def _forward_member_rows(self, phi_rows: torch.Tensor) -> torch.Tensor:
        """phi_rows (members, b, d): each member predicts its own rows -> (members, b)."""
        z = (phi_rows - self.feature_mean) / self.feature_std
        hidden = torch.relu(torch.bmm(z, self.w1) + self.b1)
        return (torch.bmm(hidden, self.w2) + self.b2).squeeze(-1)

    @torch.no_grad()
    def _out_of_bag_metrics(self, phi: torch.Tensor, z: torch.Tensor, bootstrap: torch.Tensor) -> dict:
        predictions = self.forward(phi)  # (members, n)
        in_bag = torch.zeros(predictions.shape, dtype=torch.bool)
        in_bag.scatter_(1, bootstrap, True)
        out_of_bag = ~in_bag
        squared = ((predictions - z) ** 2)[out_of_bag]
        rmse = float(squared.mean().sqrt()) if squared.numel() else float("nan")
        return {"members": self.settings.members, "oob_rmse_standardised": rmse,
                "oob_rows": int(out_of_bag.sum()), "train_rows": int(phi.shape[0])}

    def config(self) -> dict:
        return {"settings": asdict(self.settings), "seed": self.seed, "dim": int(self.w1.shape[1])}

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "AuxiliaryEnsemble":
        """Rebuild from ``config()`` and ``state_dict()`` (e.g. read back from safetensors)."""
        settings = AuxiliarySettings(**config["settings"])
        model = cls(config["dim"], settings, config["seed"], tensors["feature_mean"], tensors["feature_std"])
        model.load_state_dict(tensors)
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model
