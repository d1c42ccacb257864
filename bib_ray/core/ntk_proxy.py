"""BDI-style proxy: the bidirectional losses in the kernel (dual) form with an infinite-width NTK.

Unlike the LM proxy, the NTK has no finite feature map, so the losses use the M x M kernel of
the offline rows X (one-hot, flattened) directly, with standardised labels y:
    alpha = (K_XX + beta I)^-1 y,                 beta = beta_scale * trace(K_XX) / M
    L_fwd(h) = (K_hX alpha - y_h)^2
    L_bwd(h) = (1/M) sum_i (c_h K(x_i, h) - y_i)^2,  c_h = y_h / (K(h, h) (1 + design_beta_scale))
Forming K_XX costs O(M^2) memory and its solve O(M^3), so at most ``max_rows`` offline rows
(a fixed random subset) enter the kernel; each step then costs O(B M d).
"""

from __future__ import annotations

import numpy as np
import torch

from bib_ray.core.ntk import ReluNTK
from bib_ray.core.proxy import DesignProxy


def kernel_rows(count: int, max_rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the offline rows that enter the kernel: all, or a fixed random subset."""
    if count <= max_rows:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=max_rows, replace=False))


class NTKProxy(DesignProxy):
    """Kernel ridge regression with ``kernel`` on rows ``x`` (M, d) and raw labels ``y`` (M,).

    Buffers (float64): ``x`` (M, d), standardised labels ``y`` (M,) and dual weights ``alpha`` (M,);
    the kernel is a plain (tensor-free) attribute.
    """

    x: torch.Tensor
    y: torch.Tensor
    alpha: torch.Tensor

    def __init__(self, x: torch.Tensor, y: torch.Tensor, label_mean: float, label_std: float,
                 kernel: ReluNTK | None = None, beta_scale: float = 1e-6, design_beta_scale: float = 1e-6,
                 device: torch.device | str = "cpu") -> None:
        if beta_scale <= 0 or design_beta_scale <= 0:
            raise ValueError("beta scales must be positive")
        super().__init__()
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"need matching, non-empty rows and labels, got {x.shape[0]} and {y.shape[0]}")
        self.kernel = kernel or ReluNTK()
        self.label_mean, self.label_std = float(label_mean), float(label_std)
        self.register_buffer("x", x.detach().to(torch.float64).clone())
        self.register_buffer("y", (y.detach().to(torch.float64) - self.label_mean) / self.label_std)
        self.beta_scale, self.design_beta_scale = beta_scale, design_beta_scale
        gram = self.kernel(self.x, self.x)
        self.beta = beta_scale * float(torch.trace(gram)) / len(self.y)
        eye = torch.eye(len(self.y), dtype=torch.float64, device=self.x.device)
        self.register_buffer("alpha", torch.linalg.solve(gram + self.beta * eye, self.y))
        self.to(device)

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def predict(self, phi: torch.Tensor) -> torch.Tensor:
        """Standardised score K_hX alpha for designs phi (B, d)."""
        return self.kernel(phi.to(torch.float64), self.x) @ self.alpha

    def backward_loss(self, phi: torch.Tensor, target: float) -> torch.Tensor:
        """Per-design L_bwd = mean_i (c_h K(x_i, h) - y_i)^2, shape (B,)."""
        phi = phi.to(torch.float64)
        return self._backward_from_cross(phi, self.kernel(phi, self.x), target)

    def losses(self, phi: torch.Tensor, target: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predict, L_fwd, L_bwd) from one evaluation of the cross kernel K_hX (the step's main cost)."""
        phi = phi.to(torch.float64)
        cross = self.kernel(phi, self.x)
        prediction = cross @ self.alpha
        return prediction, (prediction - target) ** 2, self._backward_from_cross(phi, cross, target)

    def _backward_from_cross(self, phi: torch.Tensor, cross: torch.Tensor, target: float) -> torch.Tensor:
        coefficient = target / (self.kernel.self_kernel(phi) * (1.0 + self.design_beta_scale))
        return ((coefficient[:, None] * cross - self.y) ** 2).mean(-1)
