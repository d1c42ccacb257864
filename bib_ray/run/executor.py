"""Where a design run's stages execute: one interface (``Executor``), two implementations.

The run (``bib_ray.run.engine.run_design``) asks the place it runs to fit the proxy on the offline
rows, train each seed's auxiliary ensemble, optimise each seed's trajectories, evolve each seed's
population and score designs. Every stage takes all seeds at once, so an implementation may loop
over them (``LocalExecutor``: this process, its LM in ``fitted.embedder``) or spread them over
workers (``bib_ray.distributed.design.ShardExecutor``: Ray shard actors, each with an LM replica).
The results do not depend on where the stages ran.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings
from bib_ray.core.evolution import EvolutionProblem, EvolutionResult, EvolutionSettings, evolve
from bib_ray.core.optimizer import BIBOptimiser, OptimiserSettings, TrajectoryResult
from bib_ray.proxy.fitting import FittedProxy, ProxySettings, fit_aux_ensemble, fit_proxy
from bib_ray.proxy.scoring import proxy_scorer, score_codes
from bib_ray.tasks.base import Task

StepHook = Callable[[int, int, torch.Tensor], None]  # (seed index, step, logits (B, L, V)) after every step


class Executor(Protocol):
    """What a design run needs done; each stage takes every seed of the run (lists in seed order)."""

    def fit(self, task: Task, settings: ProxySettings) -> FittedProxy:
        """Embed the offline rows and solve the proxy."""

    def train_aux(self, fitted: FittedProxy, settings: AuxiliarySettings,
                  seeds: list[int]) -> list[tuple[AuxiliaryEnsemble, dict]]:
        """Each seed's auxiliary ensemble and its out-of-bag metrics."""

    def run_trajectories(self, fitted: FittedProxy, auxes: list[AuxiliaryEnsemble | None],
                         settings: OptimiserSettings, logits: list[torch.Tensor], batch_size: int,
                         on_step: StepHook | None = None) -> list[TrajectoryResult]:
        """Optimise each seed's initial ``logits`` (B, L, V) with its aux ensemble (None when the method
        needs none), at most ``batch_size`` trajectories per LM call."""

    def evolve(self, fitted: FittedProxy, problem: EvolutionProblem, settings: EvolutionSettings,
               seeds: list[int], batch_size: int) -> list[EvolutionResult]:
        """Method ``evolution`` for each seed, children scored by the proxy ``batch_size`` rows per LM call."""

    def score(self, fitted: FittedProxy, auxes: list[AuxiliaryEnsemble | None], codes: list[np.ndarray],
              batch_size: int) -> list[dict[str, np.ndarray]]:
        """``score_codes`` of each seed's designs ``codes[i]`` (B, L) with its aux ensemble."""


class LocalExecutor:
    """Every stage in this process, one seed after another, on the fitted proxy's LM.

    Args:
        device: where ``fit`` puts the LM (default: the settings' device, 'auto' taking a GPU if
            torch sees one); a Ray worker passes the device Ray granted it.
        progress: show progress bars.
        reuse_aux: keep trained aux ensembles and hand them out again for the same proxy, seed and
            settings (runs that differ only in the method share them, as the selection benchmark's do).
    """

    def __init__(self, device: torch.device | None = None, progress: bool = False, reuse_aux: bool = False) -> None:
        self.device = device
        self.progress = progress
        self.reuse_aux = reuse_aux
        self._aux: dict[tuple, tuple] = {}

    def fit(self, task: Task, settings: ProxySettings) -> FittedProxy:
        return fit_proxy(task, settings, self.progress, self.device)

    def train_aux(self, fitted: FittedProxy, settings: AuxiliarySettings,
                  seeds: list[int]) -> list[tuple[AuxiliaryEnsemble, dict]]:
        trained = []
        for seed in seeds:
            key = (id(fitted.statistics), seed, settings)
            kept = self._aux.get(key)
            if kept is None:
                aux, metrics = fit_aux_ensemble(fitted.statistics, fitted.aux_phi, fitted.aux_labels(), settings, seed)
                kept = (fitted.statistics, aux.to(fitted.lm.device), metrics)  # the statistics pin the key's id
                if self.reuse_aux:
                    self._aux[key] = kept
            trained.append(kept[1:])
        return trained

    def run_trajectories(self, fitted: FittedProxy, auxes: list[AuxiliaryEnsemble | None],
                         settings: OptimiserSettings, logits: list[torch.Tensor], batch_size: int,
                         on_step: StepHook | None = None) -> list[TrajectoryResult]:
        """As ``Executor.run_trajectories``; with ``on_step`` each seed's trajectories run in one LM batch,
        so that the hook sees all of them after every step."""
        from tqdm.auto import tqdm

        device = fitted.embedder.device
        chunks = [seed_logits.to(device).split(batch_size if on_step is None else max(len(seed_logits), 1))
                  for seed_logits in logits]
        results = []
        with tqdm(total=settings.steps * sum(map(len, chunks)), desc="optimising", unit="step",
                  disable=not self.progress, leave=False) as bar:
            for index, (aux, seed_chunks) in enumerate(zip(auxes, chunks)):
                optimiser = BIBOptimiser(fitted.embedder.embed_designs, fitted.proxy, settings, aux)

                def after_step(step: int, current: torch.Tensor, index: int = index) -> None:
                    bar.update()
                    if on_step is not None:
                        on_step(index, step, current)

                results.append(TrajectoryResult.concatenate([optimiser.run_from_logits(chunk, on_step=after_step)
                                                             for chunk in seed_chunks]))
        return results

    def evolve(self, fitted: FittedProxy, problem: EvolutionProblem, settings: EvolutionSettings,
               seeds: list[int], batch_size: int) -> list[EvolutionResult]:
        score = proxy_scorer(fitted.embedder, fitted.proxy, batch_size)
        return [evolve(problem, score, settings, seed) for seed in seeds]

    def score(self, fitted: FittedProxy, auxes: list[AuxiliaryEnsemble | None], codes: list[np.ndarray],
              batch_size: int) -> list[dict[str, np.ndarray]]:
        return [score_codes(fitted.embedder, fitted.proxy, aux, rows, batch_size) for aux, rows in zip(auxes, codes)]

