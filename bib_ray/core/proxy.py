"""The bidirectional linear-head proxy and its closed-form losses.

With standardised labels and (G, b, s, N) from ``EmbeddingStatistics``:
    w_D   = (G + beta I)^-1 b,                 beta = beta_scale * trace(G) / N
    L_fwd = (phi(h) . w_D - y_h)^2
    L_bwd = (1/N) (c_h^2 phi(h)^T G phi(h) - 2 c_h phi(h)^T b + s),
    c_h   = y_h / (phi(h).phi(h) + beta_h),    beta_h = design_beta_scale * phi(h).phi(h)
Both are the primal forms of kernel ridge regression with K(x, x') = phi(x).phi(x'); each
costs O(d^2) per design, independent of N. Losses are computed in float64.

Proxies are ``torch.nn.Module``s whose tensors are buffers: ``.to(device)`` moves them in place
(use ``bib_ray.devices.detached_copy`` for a copy elsewhere) and ``state_dict()`` holds them all.

References:
    C. Chen, Y. Zhang, X. Liu, M. Coates. Bidirectional Learning for Offline Model-based
    Biological Sequence Design. ICML 2023.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from bib_ray.core.statistics import EmbeddingStatistics


class DesignProxy(nn.Module, ABC):
    """What the optimiser needs of a proxy: standardised predictions and the two per-design losses
    of designs given as features phi (B, d); labels are standardised with ``label_mean``/``label_std``.

    Subclasses keep every tensor as a buffer, so ``.to``, ``state_dict`` and pickling cover them."""

    label_mean: float
    label_std: float

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """``predict(phi)``."""
        return self.predict(phi)

    @abstractmethod
    def predict(self, phi: torch.Tensor) -> torch.Tensor:
        """Standardised score per design, shape (B,), float64."""

    @abstractmethod
    def backward_loss(self, phi: torch.Tensor, target: float) -> torch.Tensor:
        """Per-design L_bwd: error on D of the fit to the single pair (h, y_h), shape (B,)."""

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
    """Closed-form forward (D -> design) and backward (design -> D) mappings on frozen embeddings.

    Buffers (float64): ``weights`` w_D (d,), ``gram_mean`` G / N (d, d), ``b_mean`` b / N (d,), and the
    raw sums it was solved from (``statistics_gram``, ``statistics_phi_sum``, ``statistics_phi_y``,
    ``statistics_label_sums``), which ``statistics`` returns as an ``EmbeddingStatistics`` on the CPU.
    """

    weights: torch.Tensor
    gram_mean: torch.Tensor
    b_mean: torch.Tensor

    def __init__(
        self,
        statistics: EmbeddingStatistics,
        beta_scale: float = 1e-6,
        design_beta_scale: float = 1e-6,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if beta_scale <= 0 or design_beta_scale <= 0:
            raise ValueError("beta scales must be positive")
        gram, b, s, count = statistics.standardised()
        self.beta_scale = beta_scale
        self.design_beta_scale = design_beta_scale
        self.count = count
        self.beta = beta_scale * float(torch.trace(gram)) / count
        eye = torch.eye(gram.shape[0], dtype=torch.float64)
        self.register_buffer("weights", torch.linalg.solve(gram + self.beta * eye, b))
        self.register_buffer("gram_mean", gram / count)
        self.register_buffer("b_mean", b / count)
        for name, tensor in statistics.to_tensors().items():
            self.register_buffer(f"statistics_{name}", tensor.detach().to(torch.float64).clone())
        self.s_mean = s / count
        self.label_mean = statistics.label_mean
        self.label_std = statistics.label_std
        self.to(device)

    @property
    def statistics(self) -> EmbeddingStatistics:
        """The offline statistics the proxy was solved from (float64, on the CPU)."""
        prefix = "statistics_"
        return EmbeddingStatistics.from_tensors({name.removeprefix(prefix): tensor.cpu()
                                                 for name, tensor in self.named_buffers() if name.startswith(prefix)})

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

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
