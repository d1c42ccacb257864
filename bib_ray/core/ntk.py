"""Closed-form neural tangent kernel of an infinitely wide fully connected ReLU network.

Network (NTK parameterisation): Dense -> [ReLU -> Dense] x depth, weight std sigma_w, bias std
sigma_b. With Sigma_1(x, x') = sigma_w^2 x.x' / d + sigma_b^2 and Theta_1 = Sigma_1, each ReLU +
Dense layer maps, with theta = arccos(Sigma(x, x') / sqrt(Sigma(x, x) Sigma(x', x'))):
    Sigma_{l+1} = sigma_w^2 sqrt(Sigma(x, x) Sigma(x', x')) (sin theta + (pi - theta) cos theta) / (2 pi)
                  + sigma_b^2
    Theta_{l+1} = Sigma_{l+1} + sigma_w^2 (pi - theta) / (2 pi) Theta_l
and the kernel is Theta after the last layer (the arc-cosine recursion of Jacot et al. 2018 and
Arora et al. 2019). BDI (Chen et al., NeurIPS 2022) uses depth 5, sigma_w 1, sigma_b 0. The
kernel is differentiable in both arguments; where a design coincides with a data row the true
gradient is infinite (theta = 0), so the angle's value is exact but its gradient is taken at
cos theta clamped to 1 - 1e-9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_COS_LIMIT = 1.0 - 1e-9


def _arccos_finite_gradient(cosine: torch.Tensor) -> torch.Tensor:
    """arccos(cosine) exactly, differentiated as arccos(clamp(cosine, -1 + 1e-9, 1 - 1e-9))."""
    clamped = torch.arccos(cosine.clamp(-_COS_LIMIT, _COS_LIMIT))
    return torch.arccos(cosine).detach() + clamped - clamped.detach()


@dataclass(frozen=True)
class ReluNTK:
    depth: int = 5
    weight_std: float = 1.0
    bias_std: float = 0.0

    def __post_init__(self) -> None:
        if self.depth < 1 or self.weight_std <= 0 or self.bias_std < 0:
            raise ValueError("ReluNTK needs depth >= 1, weight_std > 0, bias_std >= 0")

    def _input_layer(self, dot: torch.Tensor, dim: int) -> torch.Tensor:
        return self.weight_std**2 * dot / dim + self.bias_std**2

    def self_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """Theta(x, x) for rows of x (n, d), shape (n,)."""
        sigma = self._input_layer((x * x).sum(-1), x.shape[-1])
        theta = sigma
        w2, b2 = self.weight_std**2, self.bias_std**2
        for _ in range(self.depth):  # theta = 0 on the diagonal: T = Sigma / 2, T' = 1/2
            sigma = w2 * sigma / 2 + b2
            theta = sigma + w2 * theta / 2
        return theta

    def __call__(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Theta(x1_i, x2_j), shape (n1, n2), for inputs x1 (n1, d) and x2 (n2, d)."""
        if x1.shape[-1] != x2.shape[-1]:
            raise ValueError(f"input widths differ: {x1.shape[-1]} vs {x2.shape[-1]}")
        dim = x1.shape[-1]
        w2, b2 = self.weight_std**2, self.bias_std**2
        sigma = self._input_layer(x1 @ x2.T, dim)
        diag1 = self._input_layer((x1 * x1).sum(-1), dim)
        diag2 = self._input_layer((x2 * x2).sum(-1), dim)
        theta = sigma
        for _ in range(self.depth):
            norms = torch.sqrt(diag1[:, None] * diag2[None, :])
            cosine = (sigma / norms).clamp(-1.0, 1.0)
            angle = _arccos_finite_gradient(cosine)
            sigma = w2 * norms * (torch.sin(angle) + (math.pi - angle) * cosine) / (2 * math.pi) + b2
            theta = sigma + w2 * (math.pi - angle) / (2 * math.pi) * theta
            diag1, diag2 = w2 * diag1 / 2 + b2, w2 * diag2 / 2 + b2
        return theta
