"""BDI-style proxy: the bidirectional losses in the kernel (dual) form with an infinite-width NTK.

Unlike the LM proxy, the NTK has no finite feature map, so the losses use the M x M kernel of
the offline rows X (one-hot, flattened) directly, with standardised labels y:
    alpha = (K_XX + beta I)^-1 y,                 beta = beta_scale * trace(K_XX) / M
    L_fwd(h) = (K_hX alpha - y_h)^2
    L_bwd(h) = (1/M) sum_i (c_h K(x_i, h) - y_i)^2,  c_h = y_h / (K(h, h) (1 + design_beta_scale))
Forming K_XX costs O(M^2) memory and its solve O(M^3), so at most ``max_rows`` offline rows
(a fixed random subset) enter the kernel; each step then costs O(B M d). K_XX is formed in row
blocks and factorised by Cholesky (K_XX + beta I is positive definite) in its place, so fitting holds
at most two M x M float64 matrices (the factorisation's work buffer): 0.4 GB at M = 5,000, 6.4 GB at
20,000, 17 GB at 32,898.
"""

from __future__ import annotations

import numpy as np
import torch

from bib_ray.core.ntk import ReluNTK
from bib_ray.core.proxy import DesignProxy
from bib_ray.errors import UserError

KERNEL_BLOCK_ROWS = 512  # rows of K_XX per kernel call: bounds the kernel's M-wide temporaries


def kernel_rows(count: int, max_rows: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of the offline rows that enter the kernel: all, or a fixed random subset."""
    if count <= max_rows:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=max_rows, replace=False))


def kernel_matrix(kernel: ReluNTK, x: torch.Tensor, block_rows: int = KERNEL_BLOCK_ROWS) -> torch.Tensor:
    """kernel(x, x) (M, M), float64, filled ``block_rows`` rows at a time."""
    x = x.to(torch.float64)
    gram = torch.empty(len(x), len(x), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), block_rows):
        gram[start:start + block_rows] = kernel(x[start:start + block_rows], x)
    return gram


def solve_positive_definite(matrix: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """matrix^-1 rhs for a symmetric positive definite ``matrix`` (M, M) by its Cholesky factor, which takes
    the matrix's place (torch works in a second M x M buffer while it factorises)."""
    factor, info = torch.linalg.cholesky_ex(matrix, out=(matrix, torch.empty(0, dtype=torch.int32,
                                                                               device=matrix.device)))
    if int(info) != 0:
        raise torch.linalg.LinAlgError(f"leading minor {int(info)} is not positive definite")
    return torch.cholesky_solve(rhs[:, None], factor)[:, 0]


class NTKProxy(DesignProxy):
    """Kernel ridge regression with ``kernel`` on rows ``x`` (M, d) and raw labels ``y`` (M,).

    Buffers (float64): ``x`` (M, d), standardised labels ``y`` (M,) and dual weights ``alpha`` (M,);
    the kernel is a plain (tensor-free) attribute. ``gram``: K_XX when it was computed elsewhere
    (row blocks on shard actors, ``bib_ray.distributed.shards.ShardPool.kernel_gram``); the solve
    overwrites it.
    """

    x: torch.Tensor
    y: torch.Tensor
    alpha: torch.Tensor

    def __init__(self, x: torch.Tensor, y: torch.Tensor, label_mean: float, label_std: float,
                 kernel: ReluNTK | None = None, beta_scale: float = 1e-6, design_beta_scale: float = 1e-6,
                 device: torch.device | str = "cpu", gram: torch.Tensor | None = None) -> None:
        if beta_scale <= 0 or design_beta_scale <= 0:
            raise ValueError("beta scales must be positive")
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"need matching, non-empty rows and labels, got {x.shape[0]} and {y.shape[0]}")
        if gram is not None and gram.shape != (x.shape[0], x.shape[0]):
            raise ValueError(f"gram has shape {tuple(gram.shape)}, rows need {(x.shape[0], x.shape[0])}")
        x = x.detach().to(torch.float64)
        standard = (y.detach().to(torch.float64) - float(label_mean)) / float(label_std)
        kernel = kernel or ReluNTK()
        gram = kernel_matrix(kernel, x) if gram is None else gram.to(device=x.device, dtype=torch.float64)
        beta = beta_scale * float(torch.trace(gram)) / len(standard)
        gram.diagonal().add_(beta)  # K_XX + beta I in place: no second M x M matrix
        try:
            alpha = solve_positive_definite(gram, standard)
        except torch.linalg.LinAlgError:
            raise UserError(f"the NTK proxy's kernel matrix of {len(standard)} rows is not numerically positive "
                            f"definite at beta_scale {beta_scale:g}: raise --beta-scale (e.g. to "
                            f"{beta_scale * 100:g})") from None
        del gram
        self._assemble(x, standard, alpha, float(label_mean), float(label_std), kernel, beta, beta_scale,
                       design_beta_scale)
        self.to(device)

    @classmethod
    def from_dual(cls, x: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, label_mean: float, label_std: float,
                  kernel: ReluNTK, beta: float, beta_scale: float, design_beta_scale: float,
                  device: torch.device | str = "cpu") -> "NTKProxy":
        """A fitted proxy from its parts (standardised labels ``y``, dual weights ``alpha``), no solve: what
        an artifact stores (``bib_ray.proxy.artifacts``), so that a loaded proxy scores exactly as the saved one."""
        proxy = cls.__new__(cls)
        proxy._assemble(x.to(torch.float64), y.to(torch.float64), alpha.to(torch.float64), label_mean, label_std,
                        kernel, beta, beta_scale, design_beta_scale)
        return proxy.to(device)

    def _assemble(self, x: torch.Tensor, y: torch.Tensor, alpha: torch.Tensor, label_mean: float, label_std: float,
                  kernel: ReluNTK, beta: float, beta_scale: float, design_beta_scale: float) -> None:
        DesignProxy.__init__(self)
        self.kernel = kernel
        self.label_mean, self.label_std = float(label_mean), float(label_std)
        self.beta, self.beta_scale, self.design_beta_scale = float(beta), float(beta_scale), float(design_beta_scale)
        self.register_buffer("x", x.clone())
        self.register_buffer("y", y.clone())
        self.register_buffer("alpha", alpha.clone())

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
