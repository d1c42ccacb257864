"""The batched BIB optimiser: many independent design trajectories in one LM call per step.

Objective per design h: L = gamma L_fwd + (1 - gamma) L_bwd, minimised over logits Z with a
per-trajectory Adam (step size eta). Modes fix gamma (forward: 1, backward: 0,
bidirectional: gamma_init) or adapt it (Adaptive-gamma, one gamma per trajectory):
    d f_aux(Z') / d gamma = -eta_t < grad_Z f_aux(Z), grad_Z L_fwd - grad_Z L_bwd >,
with Z' = Z - eta_t (gamma grad_Z L_fwd + (1 - gamma) grad_Z L_bwd) the one-step look-ahead,
ascended with its own Adam state (step size ``gamma_lr``, 0.1 as in the reference code), gamma
clipped to [0, 1]. Adaptive-eta (any mode) keeps eta_0 on the first step and from the second on sets
    eta_t = clip(eta_0 - eta_meta_lr < grad_Z f_aux(Z), u_t >, eta_min, eta_max),
with u_t the Adam direction of the combined gradient (the design moves by -eta_t u_t), as the
reference code does. f_aux is in standardised label units (the reference uses raw label units).
The gradients the adaptive modules need are vector-Jacobian products of the same LM Jacobian:
their cotangents at phi are stacked and pushed back through one batched backward pass.

References:
    Chen, Zhang, Liu, Coates. Bidirectional Learning for Offline Model-based Biological Sequence
    Design. ICML 2023, PMLR 202:5351-5366.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.design_variables import init_logits, straight_through
from bib_ray.core.proxy import DesignProxy

EmbedFn = Callable[[torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor], None]


class Mode(str, Enum):
    FORWARD = "forward"
    BACKWARD = "backward"
    BIDIRECTIONAL = "bidirectional"
    ADAPTIVE_GAMMA = "adaptive-gamma"


class CotangentBatching(str, Enum):
    """How several gradients through the LM are taken: one vmapped backward, or one backward each."""

    BATCHED = "batched"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True)
class OptimiserSettings:
    """Settings of one batch of trajectories; defaults are the reference code's (DNA: T = 100).

    ``init_std`` is the standard deviation of the initial logits' noise, ``gamma_lr`` the step size
    of gamma's Adam, ``eta_meta_lr`` the coefficient of Adaptive-eta (see the module docstring).
    """

    mode: Mode = Mode.ADAPTIVE_GAMMA
    adaptive_eta: bool = False
    steps: int = 100
    lr: float = 0.1
    target: float = 10.0  # y_h in standardised label units
    gamma_init: float = 0.5
    gamma_lr: float = 0.1
    eta_meta_lr: float = 0.01
    eta_min: float = 1e-4
    eta_max: float = 0.5
    init_std: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    cotangents: CotangentBatching = CotangentBatching.SEQUENTIAL  # measured faster on CPU (bench.engine_speed)
    checkpoint_steps: tuple[int, ...] = ()  # 1-based steps after which the logits are kept (a batch's candidates)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0:
            raise ValueError("steps must be >= 1 and lr > 0")
        if self.gamma_lr <= 0 or self.init_std <= 0 or not 0 < self.eta_min <= self.eta_max:
            raise ValueError("gamma_lr and init_std must be > 0 and 0 < eta_min <= eta_max")
        if not 0 <= self.gamma_init <= 1:
            raise ValueError("gamma_init must be in [0, 1]")
        if any(not 1 <= step <= self.steps for step in self.checkpoint_steps):
            raise ValueError(f"checkpoint_steps must lie in 1..{self.steps}")

    @property
    def needs_aux(self) -> bool:
        return self.mode is Mode.ADAPTIVE_GAMMA or self.adaptive_eta

    def fixed_gamma(self) -> float:
        return {Mode.FORWARD: 1.0, Mode.BACKWARD: 0.0}.get(self.mode, self.gamma_init)


@dataclass
class TrajectoryResult:
    """Final designs and per-step history: arrays of shape (steps, B), and under ``codes`` the
    argmax designs after every step, (steps, B, L) int16."""

    start_codes: np.ndarray
    final_codes: np.ndarray
    final_logits: np.ndarray  # (B, L, V) float32: the design variables at the last step
    history: dict[str, np.ndarray]
    cotangents: str
    checkpoint_logits: np.ndarray | None = None  # (K, B, L, V) float32 after each of ``checkpoint_steps``
    checkpoint_steps: tuple[int, ...] = ()

    @classmethod
    def concatenate(cls, parts: list["TrajectoryResult"]) -> "TrajectoryResult":
        """Batches of trajectories (in order) as one result."""
        kept = parts[0].checkpoint_logits is not None
        return cls(start_codes=np.concatenate([p.start_codes for p in parts]),
                   final_codes=np.concatenate([p.final_codes for p in parts]),
                   final_logits=np.concatenate([p.final_logits for p in parts]),
                   history={key: np.concatenate([p.history[key] for p in parts], axis=1) for key in parts[0].history},
                   cotangents=parts[0].cotangents,
                   checkpoint_logits=np.concatenate([p.checkpoint_logits for p in parts], axis=1) if kept else None,
                   checkpoint_steps=parts[0].checkpoint_steps)


class _BatchedAdam:
    """Adam over a batch of independent problems, each with its own step size."""

    def __init__(self, like: torch.Tensor, beta1: float, beta2: float, eps: float) -> None:
        self.m = torch.zeros_like(like)
        self.v = torch.zeros_like(like)
        self.t = 0
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """Update moments with ``grad`` and return u_t = m_hat / (sqrt(v_hat) + eps)."""
        self.t += 1
        self.m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return m_hat / (v_hat.sqrt() + self.eps)


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-design inner product over all but the first axis."""
    return (a * b).flatten(1).sum(1)


class BIBOptimiser:
    """Runs B trajectories of the BIB objective together; the LM is called once per step."""

    def __init__(self, embed: EmbedFn, proxy: DesignProxy, settings: OptimiserSettings,
                 aux: AuxiliaryEnsemble | None = None) -> None:
        if settings.needs_aux and aux is None:
            raise ValueError("adaptive-gamma / adaptive-eta need an auxiliary model")
        self.embed = embed
        self.proxy = proxy
        self.settings = settings
        self.aux = aux

    def _cotangents(self, phi: torch.Tensor, gamma: torch.Tensor) -> tuple[list[torch.Tensor], dict]:
        """Cotangents at phi for the gradients this step needs, plus the step's scalar records."""
        s = self.settings
        head = phi.detach().to(torch.float64).requires_grad_(True)
        with torch.enable_grad():
            prediction, loss_fwd, loss_bwd = self.proxy.losses(head, s.target)
            outputs = []
            if s.mode is Mode.ADAPTIVE_GAMMA:
                outputs += [loss_fwd.sum(), loss_bwd.sum()]
            else:
                outputs.append((gamma * loss_fwd + (1 - gamma) * loss_bwd).sum())
            aux_score = self.aux.mean(head) if s.needs_aux else None
            if aux_score is not None:
                outputs.append(aux_score.sum())
            cotangents = [torch.autograd.grad(out, head, retain_graph=True)[0] for out in outputs]
        records = {
            "proxy_score": prediction.detach(),
            "loss_forward": loss_fwd.detach(),
            "loss_backward": loss_bwd.detach(),
        }
        if aux_score is not None:
            records["aux_score"] = aux_score.detach()
        return [c.to(phi.dtype) for c in cotangents], records

    def _vector_jacobian_products(self, phi: torch.Tensor, logits: torch.Tensor,
                                  cotangents: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(cotangents) == 1:
            return [torch.autograd.grad(phi, logits, cotangents[0])[0]]
        if self.settings.cotangents is CotangentBatching.BATCHED:
            stacked = torch.autograd.grad(phi, logits, torch.stack(cotangents), is_grads_batched=True)[0]
            return list(stacked.unbind(0))
        last = len(cotangents) - 1
        return [torch.autograd.grad(phi, logits, c, retain_graph=i < last)[0] for i, c in enumerate(cotangents)]

    def run(self, start_codes: torch.Tensor, vocab_size: int, generator: torch.Generator,
            on_step: StepCallback | None = None) -> TrajectoryResult:
        """Optimise B designs starting from ``start_codes`` (B, L); deterministic given ``generator``."""
        logits = init_logits(start_codes, vocab_size, generator, self.settings.init_std)
        return self.run_from_logits(logits, on_step)

    def run_from_logits(self, logits: torch.Tensor, on_step: StepCallback | None = None) -> TrajectoryResult:
        """Optimise from given initial logits; the start designs are their argmax.

        Args:
            logits: (B, L, V) initial design logits Z_0, one trajectory per row.
            on_step: called as ``on_step(step, logits)`` after every step with the updated
                logits (B, L, V) (read-only).

        Returns:
            The start and final argmax codes (B, L), the final logits (B, L, V), the per-step
            history and the logits after each of ``settings.checkpoint_steps`` (K, B, L, V) (see
            ``TrajectoryResult``).
        """
        s = self.settings
        batch = logits.shape[0]
        start_codes = logits.argmax(-1)
        adam = _BatchedAdam(logits, s.adam_beta1, s.adam_beta2, s.adam_eps)
        device, dtype = logits.device, logits.dtype
        gamma = torch.full((batch,), s.fixed_gamma(), dtype=torch.float64, device=device)
        gamma_adam = _BatchedAdam(gamma, s.adam_beta1, s.adam_beta2, s.adam_eps)
        eta = torch.full((batch,), s.lr, dtype=dtype, device=device)
        history: dict[str, list[torch.Tensor]] = {}
        kept: list[np.ndarray] = []
        for step in range(s.steps):
            logits.requires_grad_(True)
            with torch.enable_grad():
                phi = self.embed(straight_through(logits))
                cotangents, records = self._cotangents(phi, gamma)
                grads = self._vector_jacobian_products(phi, logits, cotangents)
            logits = logits.detach()
            if s.mode is Mode.ADAPTIVE_GAMMA:
                grad_fwd, grad_bwd, grad_aux = grads
                meta_grad = -eta.to(torch.float64) * _batch_dot(grad_aux, grad_fwd - grad_bwd).to(torch.float64)
                gamma = (gamma + s.gamma_lr * gamma_adam.direction(meta_grad)).clamp(0.0, 1.0)
                weight = gamma.to(dtype)[:, None, None]
                grad = weight * grad_fwd + (1 - weight) * grad_bwd
            else:
                grad = grads[0]
                grad_aux = grads[1] if s.adaptive_eta else None
            records["gamma"] = gamma.clone()
            direction = adam.direction(grad)
            if s.adaptive_eta and step >= 1:
                eta = (s.lr - s.eta_meta_lr * _batch_dot(grad_aux, direction)).clamp(s.eta_min, s.eta_max)
            records["eta"] = eta.clone()
            logits = logits - eta[:, None, None] * direction
            for key, value in records.items():
                history.setdefault(key, []).append(value.detach().to("cpu", torch.float64))
            history.setdefault("codes", []).append(logits.argmax(-1).to("cpu", torch.int16))
            if step + 1 in s.checkpoint_steps:
                kept.append(logits.detach().float().cpu().numpy())
            if on_step is not None:
                on_step(step, logits)
        return TrajectoryResult(
            start_codes=start_codes.cpu().numpy(),
            final_codes=logits.argmax(-1).cpu().numpy(),
            final_logits=logits.detach().float().cpu().numpy(),
            history={key: torch.stack(values).numpy() for key, values in history.items()},
            cotangents=s.cotangents.value,
            checkpoint_logits=np.stack(kept) if s.checkpoint_steps else None,
            checkpoint_steps=tuple(s.checkpoint_steps),
        )
