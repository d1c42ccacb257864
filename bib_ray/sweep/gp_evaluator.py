"""A Gaussian-process evaluator on sequences: calibrated uncertainty that grows away from the offline data.

Kernel on codes x, x' (length L): k(x, x') = exp(-h(x, x') / l), h the Hamming distance. It is a product
over positions of kernels that equal 1 for the same letter and exp(-1/l) otherwise (each positive
semi-definite), so it is one too; it is the exponentiated Hamming kernel of Gaussian-process models of
fitness landscapes. Labels are standardised; the prior variance is 1 and the noise variance is a fraction
of it. l and the noise are chosen by the log marginal likelihood over a small grid, on at most
``max_rows`` rows (the best quarter of them by label, the rest at random: the top of the data is where
designs go). The posterior standard deviation is then scaled by s, the variance-scaling factor that makes
the z-scores of a held-back slice of the rows unit-variance (Levi et al. 2022), as the ensembles of
``bib_ray.sweep.selection`` are.

Far from every row the posterior returns to the prior (mean 0, standard deviation s): a design the data
say nothing about is scored as unknown, not extrapolated (the failure of the MLP ensembles on sparse,
low-scoring data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

LENGTHSCALES = (0.5, 1.0, 2.0, 4.0, 8.0)
NOISE_FRACTIONS = (0.01, 0.05, 0.2, 0.5)


def one_hot64(codes: np.ndarray, vocab_size: int) -> torch.Tensor:
    """codes (N, L) -> one-hot (N, L * V) float64."""
    return torch.nn.functional.one_hot(torch.as_tensor(np.asarray(codes), dtype=torch.long),
                                       vocab_size).flatten(1).double()


def hamming_kernel(a: torch.Tensor, b: torch.Tensor, length: int, lengthscale: float) -> torch.Tensor:
    """exp(-h / l) between one-hot rows a (N, L*V) and b (M, L*V): h = L - a b^T."""
    return torch.exp(-(length - a @ b.T) / lengthscale)


def evaluator_rows(z: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """At most ``max_rows`` row indices: the best quarter by label, the rest a seeded random draw."""
    if len(z) <= max_rows:
        return np.arange(len(z))
    top = np.argsort(-z, kind="stable")[: max_rows // 4]
    rest = np.setdiff1d(np.arange(len(z)), top)
    drawn = np.random.default_rng(seed).choice(rest, max_rows - len(top), replace=False)
    return np.sort(np.concatenate([top, drawn]))


@dataclass
class HammingGP:
    """A fitted exact GP (zero mean on standardised labels, prior variance 1) on one-hot rows."""

    rows: torch.Tensor  # (N, L*V) one-hot training rows
    length: int
    vocab_size: int
    lengthscale: float
    noise: float
    cholesky: torch.Tensor  # of K + noise I
    alpha: torch.Tensor  # (K + noise I)^-1 z
    scale: float = 1.0  # variance-scaling factor of the posterior standard deviation

    @classmethod
    def fit(cls, codes: np.ndarray, z: np.ndarray, vocab_size: int, lengthscale: float, noise: float,
            distances: torch.Tensor | None = None) -> "HammingGP":
        """The GP on rows ``codes`` (N, L) with labels z (N,); ``distances``: their Hamming distances if known."""
        rows = one_hot64(codes, vocab_size)
        length = np.asarray(codes).shape[1]
        if distances is None:
            distances = length - rows @ rows.T
        gram = torch.exp(-distances / lengthscale) + noise * torch.eye(len(rows), dtype=torch.float64)
        cholesky = torch.linalg.cholesky(gram)
        alpha = torch.cholesky_solve(torch.as_tensor(z, dtype=torch.float64)[:, None], cholesky)[:, 0]
        return cls(rows, length, vocab_size, lengthscale, noise, cholesky, alpha)

    def log_marginal_likelihood(self, z: np.ndarray) -> float:
        z = torch.as_tensor(z, dtype=torch.float64)
        return float(-0.5 * z @ self.alpha - torch.log(torch.diagonal(self.cholesky)).sum()
                     - 0.5 * len(z) * math.log(2 * math.pi))

    def posterior(self, codes: np.ndarray, covariance: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of the latent f at codes (B, L): mean (B,) and, scaled by ``scale``, the standard
        deviation (B,) or (``covariance``) the covariance (B, B)."""
        query = one_hot64(codes, self.vocab_size)
        cross = hamming_kernel(self.rows, query, self.length, self.lengthscale)  # (N, B)
        mean = cross.T @ self.alpha
        v = torch.linalg.solve_triangular(self.cholesky, cross, upper=False)
        if covariance:
            prior = hamming_kernel(query, query, self.length, self.lengthscale)
            return mean, self.scale ** 2 * (prior - v.T @ v)
        variance = torch.clamp(1.0 - (v * v).sum(0), min=0.0)
        return mean, self.scale * torch.sqrt(variance)

    def sample_maxima(self, codes: np.ndarray, draws: int, seed: int) -> np.ndarray:
        """max_b f(x_b) for ``draws`` joint posterior samples of f over the distinct codes (draws,)."""
        distinct = np.unique(np.asarray(codes), axis=0)
        mean, cov = self.posterior(distinct, covariance=True)
        jitter = 1e-8 * torch.eye(len(distinct), dtype=torch.float64)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov + jitter)
        root = eigenvectors * torch.sqrt(torch.clamp(eigenvalues, min=0.0))
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(len(distinct), draws, generator=generator, dtype=torch.float64)
        return (mean[:, None] + root @ noise).max(0).values.numpy()


def fit_hamming_gp(codes: np.ndarray, z: np.ndarray, vocab_size: int, max_rows: int = 2000,
                   calibration: float = 0.2, seed: int = 0) -> HammingGP:
    """A ``HammingGP`` on (at most ``max_rows`` of) the rows: lengthscale and noise by log marginal
    likelihood over ``LENGTHSCALES`` x ``NOISE_FRACTIONS``, the posterior spread scaled so that a held-back
    ``calibration`` slice of the rows has unit-variance z-scores (predictive variance: latent + noise)."""
    codes, z = np.asarray(codes), np.asarray(z, dtype=np.float64)
    chosen = evaluator_rows(z, max_rows, seed)
    codes, z = codes[chosen], z[chosen]
    rows = one_hot64(codes, vocab_size)
    distances = codes.shape[1] - rows @ rows.T
    best, best_likelihood = None, -math.inf
    for lengthscale in LENGTHSCALES:
        for noise in NOISE_FRACTIONS:
            fit = HammingGP.fit(codes, z, vocab_size, lengthscale, noise, distances)
            likelihood = fit.log_marginal_likelihood(z)
            if likelihood > best_likelihood:
                best, best_likelihood = fit, likelihood
    order = np.random.default_rng(seed + 1).permutation(len(z))
    held = max(2, int(round(calibration * len(z))))
    probe = HammingGP.fit(codes[order[held:]], z[order[held:]], vocab_size, best.lengthscale, best.noise)
    mean, sd = probe.posterior(codes[order[:held]])
    predictive = torch.sqrt(sd ** 2 + best.noise).numpy()
    best.scale = float(np.sqrt(np.mean(((z[order[:held]] - mean.numpy()) / predictive) ** 2)))
    return best
