"""The bidirectional linear-head proxy and its closed-form losses (DESIGN.md section 2).

With standardised labels and (G, b, s, N) from ``EmbeddingStatistics``:
    w_D   = (G + beta I)^-1 b,                 beta = beta_scale * trace(G) / N
    L_fwd = (phi(h) . w_D - y_h)^2
    L_bwd = (1/N) (c_h^2 phi(h)^T G phi(h) - 2 c_h phi(h)^T b + s),
    c_h   = y_h / (phi(h).phi(h) + beta_h),    beta_h = design_beta_scale * phi(h).phi(h)
Both are the primal forms of kernel ridge regression with K(x, x') = phi(x).phi(x'); each
costs O(d^2) per design, independent of N. Losses are computed in float64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from bib_ray.core.statistics import EmbeddingStatistics


class DesignProxy(ABC):
    """What the optimiser needs of a proxy: standardised predictions and the two per-design losses
    of designs given as features phi (B, d); labels are standardised with ``label_mean``/``label_std``."""

    label_mean: float
    label_std: float

    @abstractmethod
    def predict(self, phi: torch.Tensor) -> torch.Tensor:
        """Standardised score per design, shape (B,), float64."""

    @abstractmethod
    def backward_loss(self, phi: torch.Tensor, target: float) -> torch.Tensor:
        """Per-design L_bwd: error on D of the fit to the single pair (h, y_h), shape (B,)."""

    @abstractmethod
    def to(self, device: torch.device | str) -> "DesignProxy":
        """Move the proxy's tensors to ``device`` (in place) and return it."""

    def predict_raw(self, phi: torch.Tensor) -> torch.Tensor:
        """Score in the original label units: mu + sigma * predict(phi)."""
        return self.label_mean + self.label_std * self.predict(phi)

    def forward_loss(self, phi: torch.Tensor, target: float) -> torch.Tensor:
        """Per-design L_fwd = (predict(phi) - y_h)^2, shape (B,)."""
        return (self.predict(phi) - target) ** 2

    def losses(self, phi: torch.Tensor, target: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predict, L_fwd, L_bwd) of one optimiser step; proxies whose two losses share work override it."""
        prediction = self.predict(phi)
        return prediction, (prediction - target) ** 2, self.backward_loss(phi, target)


class BidirectionalProxy(DesignProxy):
    """Closed-form forward (D -> design) and backward (design -> D) mappings on frozen embeddings."""

    def __init__(
        self,
        statistics: EmbeddingStatistics,
        beta_scale: float = 1e-6,
        design_beta_scale: float = 1e-6,
        device: torch.device | str = "cpu",
    ) -> None:
        if beta_scale <= 0 or design_beta_scale <= 0:
            raise ValueError("beta scales must be positive")
        gram, b, s, count = statistics.standardised()
        self.statistics = statistics
        self.beta_scale = beta_scale
        self.design_beta_scale = design_beta_scale
        self.count = count
        self.beta = beta_scale * float(torch.trace(gram)) / count
        eye = torch.eye(gram.shape[0], dtype=torch.float64)
        self.weights = torch.linalg.solve(gram + self.beta * eye, b).to(device)
        self.gram_mean = (gram / count).to(device)
        self.b_mean = (b / count).to(device)
        self.s_mean = s / count
        self.label_mean = statistics.label_mean
        self.label_std = statistics.label_std

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def to(self, device: torch.device | str) -> "BidirectionalProxy":
        self.weights = self.weights.to(device)
        self.gram_mean = self.gram_mean.to(device)
        self.b_mean = self.b_mean.to(device)
        return self

    def predict(self, phi: torch.Tensor) -> torch.Tensor:
        """Standardised score phi . w_D for rows of phi (B, d)."""
        return phi.to(torch.float64) @ self.weights

    def backward_loss(self, phi: torch.Tensor, target: float) -> torch.Tensor:
        """Per-design L_bwd: mean squared error on D of the ridge fit to the single pair (h, y_h)."""
        phi = phi.to(torch.float64)
        self_kernel = (phi * phi).sum(-1)
        coefficient = target / (self_kernel * (1.0 + self.design_beta_scale))
        quadratic = ((phi @ self.gram_mean) * phi).sum(-1)
        linear = phi @ self.b_mean
        return coefficient**2 * quadratic - 2.0 * coefficient * linear + self.s_mean
