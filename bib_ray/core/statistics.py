"""Mergeable sufficient statistics of the offline set in embedding space.

For rows (phi_i, y_i), i = 1..N, we keep raw sums that add across shards and across
batches of new rows:
    gram = sum phi_i phi_i^T,  phi_sum = sum phi_i,  phi_y = sum y_i phi_i,
    y_sum = sum y_i,  y_sq_sum = sum y_i^2,  count = N.
With labels standardised by the pooled mean mu and std sigma, z_i = (y_i - mu) / sigma,
    G = gram,  b = Phi^T z = (phi_y - mu phi_sum) / sigma,  s = z^T z = N,
which is all the closed-form forward and backward losses need.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EmbeddingStatistics:
    """Raw sums over embedded rows; ``a + b`` pools two disjoint sets of rows (float64)."""

    gram: torch.Tensor
    phi_sum: torch.Tensor
    phi_y: torch.Tensor
    y_sum: float
    y_sq_sum: float
    count: int

    @classmethod
    def empty(cls, dim: int) -> "EmbeddingStatistics":
        zeros = torch.zeros(dim, dtype=torch.float64)
        return cls(torch.zeros(dim, dim, dtype=torch.float64), zeros, zeros.clone(), 0.0, 0.0, 0)

    @classmethod
    def from_rows(cls, phi: torch.Tensor, y: torch.Tensor) -> "EmbeddingStatistics":
        """Statistics of rows phi (n, d) with raw labels y (n,)."""
        phi = phi.detach().to("cpu", torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1).cpu()
        if phi.ndim != 2 or phi.shape[0] != y.shape[0]:
            raise ValueError(f"phi {tuple(phi.shape)} and y {tuple(y.shape)} do not describe the same rows")
        return cls(
            gram=phi.T @ phi,
            phi_sum=phi.sum(0),
            phi_y=phi.T @ y,
            y_sum=float(y.sum()),
            y_sq_sum=float((y * y).sum()),
            count=int(y.shape[0]),
        )

    def __add__(self, other: "EmbeddingStatistics") -> "EmbeddingStatistics":
        if self.dim != other.dim:
            raise ValueError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        return EmbeddingStatistics(
            self.gram + other.gram,
            self.phi_sum + other.phi_sum,
            self.phi_y + other.phi_y,
            self.y_sum + other.y_sum,
            self.y_sq_sum + other.y_sq_sum,
            self.count + other.count,
        )

    def __sub__(self, other: "EmbeddingStatistics") -> "EmbeddingStatistics":
        """The statistics of ``self``'s rows without ``other``'s (``other`` must be a subset of them)."""
        if self.dim != other.dim:
            raise ValueError(f"cannot subtract statistics of dimension {other.dim} from {self.dim}")
        if other.count >= self.count:
            raise ValueError(f"cannot remove {other.count} rows from {self.count}: nothing would be left")
        return EmbeddingStatistics(
            self.gram - other.gram,
            self.phi_sum - other.phi_sum,
            self.phi_y - other.phi_y,
            self.y_sum - other.y_sum,
            self.y_sq_sum - other.y_sq_sum,
            self.count - other.count,
        )

    @property
    def dim(self) -> int:
        return int(self.phi_sum.shape[0])

    @property
    def label_mean(self) -> float:
        return self.y_sum / self.count

    @property
    def label_std(self) -> float:
        """Population std of the raw labels; 1.0 when all labels are equal (nothing to scale)."""
        variance = max(self.y_sq_sum / self.count - self.label_mean**2, 0.0)
        return variance**0.5 if variance > 1e-24 else 1.0

    def standardised(self) -> tuple[torch.Tensor, torch.Tensor, float, int]:
        """(G, b, s, N) for labels standardised with the pooled mean and std."""
        if self.count == 0:
            raise ValueError("no rows: the offline set is empty")
        mean, std = self.label_mean, self.label_std
        b = (self.phi_y - mean * self.phi_sum) / std
        s = (self.y_sq_sum - 2 * mean * self.y_sum + self.count * mean**2) / std**2
        return self.gram, b, s, self.count

    def feature_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-feature mean and std of phi over the rows (for input scaling of small models)."""
        mean = self.phi_sum / self.count
        variance = (torch.diagonal(self.gram) / self.count - mean**2).clamp_min(0.0)
        return mean, variance.sqrt().clamp_min(1e-8)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict for safetensors."""
        scalars = torch.tensor([self.y_sum, self.y_sq_sum, float(self.count)], dtype=torch.float64)
        return {"gram": self.gram, "phi_sum": self.phi_sum, "phi_y": self.phi_y, "label_sums": scalars}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "EmbeddingStatistics":
        y_sum, y_sq_sum, count = tensors["label_sums"].tolist()
        return cls(tensors["gram"], tensors["phi_sum"], tensors["phi_y"], y_sum, y_sq_sum, int(count))
