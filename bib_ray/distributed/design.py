"""``bib-ray design`` on Ray: the run's stages (``bib_ray.run.engine.run_design``) on shard actors.

``ShardExecutor`` is the run's ``Executor`` over a ``ShardPool``: the shards embed the offline
set (the driver reduces their statistics and solves the proxy), train every seed's auxiliary
ensemble, run every seed's trajectory batches (or evolutions) and score the designs; the driver
holds no LM. Same results as the single-process run for the same config and seeds: the driver
draws every trajectory's initial logits and decodes the designs, the shards only compute.

A run on the NTK proxy (backbone ``ntk``; method ``bdi`` among others) uses the same shards with
one-hot features for an LM: they embed the offline rows, compute the kernel's M x M matrix in row
blocks (``ShardPool.kernel_gram``), and run the trajectories, each step's design-side kernel
K(h, X) on the shard that holds the batch; the driver solves for the dual weights once.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings, aux_training_rows
from bib_ray.core.evolution import EvolutionProblem, EvolutionResult, EvolutionSettings
from bib_ray.core.ntk import ReluNTK
from bib_ray.core.ntk_proxy import kernel_rows
from bib_ray.core.optimizer import OptimiserSettings, TrajectoryResult
from bib_ray.core.proxy import BidirectionalProxy
from bib_ray.distributed.runtime import connect
from bib_ray.distributed.settings import RaySettings
from bib_ray.distributed.shards import ShardPool, ShardResources, default_shard_count
from bib_ray.proxy.fitting import FittedProxy, ProxySettings
from bib_ray.run.config import DesignConfig
from bib_ray.run.engine import run_design
from bib_ray.run.executor import StepHook
from bib_ray.run.results import DesignRun
from bib_ray.tasks import Task


def shard_resources(settings: RaySettings) -> ShardResources:
    """Resolve defaults against the connected cluster: one shard per GPU, else per CPU."""
    import ray

    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = settings.gpus_per_shard if settings.gpus_per_shard is not None else (1.0 if has_gpus else 0.0)
    return ShardResources(count=settings.shards or default_shard_count(), cpus=settings.cpus_per_shard, gpus=gpus,
                          max_restarts=settings.max_restarts, max_task_retries=settings.max_restarts,
                          placement_timeout_s=settings.placement_timeout_s)


def trajectory_batch_for(designs: int, seeds: int, batch: int, shards: int) -> int:
    """Designs per Ray task: at most ``batch``, small enough to give every shard work, and, where a few
    more pieces per seed allow it, a number of tasks over all seeds that the shards share evenly."""
    fewest = max(math.ceil(designs / batch), math.ceil(shards / seeds))
    pieces = next((n for n in range(fewest, fewest + shards) if (n * seeds) % shards == 0), fewest)
    return max(1, math.ceil(designs / min(pieces, designs)))


def fit_proxy_on_shards(task: Task, settings: ProxySettings, pool: ShardPool) -> FittedProxy:
    """Embed the offline set on the shards of ``pool`` (an LM, or one-hot features for the NTK proxy) and
    reduce their statistics; the linear head is solved on the driver (CPU) from them, the NTK proxy from
    the kernel matrix of its ``ntk_rows`` rows, computed in row blocks on the shards."""
    started = time.perf_counter()
    aux_rows = aux_training_rows(len(task.y), settings.aux_max_rows)
    rows = kernel_rows(len(task.y), settings.ntk_rows) if settings.uses_ntk_proxy else np.zeros(0, dtype=np.int64)
    kept = np.union1d(aux_rows, rows)
    statistics, kept_phi = pool.embed_statistics(task.x, task.y, kept)
    aux_phi = kept_phi[np.searchsorted(kept, aux_rows)]
    seconds = time.perf_counter() - started
    timings = {"embed_offline_s": seconds, "embed_rows_per_s": len(task.y) / max(seconds, 1e-9),
               "shards": len(pool.actors)}
    if not settings.uses_ntk_proxy:
        return FittedProxy.linear_head(task, pool.lm_identity(task), statistics, aux_rows, aux_phi,
                                       settings.beta_scale, timings=timings)
    phi = kept_phi[np.searchsorted(kept, rows)]
    started = time.perf_counter()
    gram = pool.kernel_gram(ReluNTK(), phi)
    timings["kernel_on_shards_s"] = time.perf_counter() - started
    return FittedProxy.ntk(task, pool.lm_identity(task), statistics, rows, phi, aux_rows, aux_phi,
                           settings.beta_scale, gram=gram, timings=timings)


class ShardExecutor:
    """The run's stages on a pool of shard actors: ``pool`` when given, else one made for the task's
    backbone when the proxy is fitted (a context manager that removes the actors it made on exit)."""

    def __init__(self, resources: ShardResources | None = None, progress: bool = False,
                 pool: ShardPool | None = None) -> None:
        if (resources is None) == (pool is None):
            raise ValueError("give the shards' resources or an existing pool")
        self.resources = resources
        self.progress = progress
        self.pool = pool
        self._owns_pool = pool is None

    def __enter__(self) -> "ShardExecutor":
        return self

    def __exit__(self, *_) -> None:
        if self._owns_pool and self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def fit(self, task: Task, settings: ProxySettings) -> FittedProxy:
        if self.pool is None:
            self.pool = ShardPool(settings.feature_backbone, task, self.resources, settings.embed_batch_size,
                                  settings.feature_dtype, self.progress)
        return fit_proxy_on_shards(task, settings, self.pool)

    def train_aux(self, fitted: FittedProxy, settings: AuxiliarySettings,
                  seeds: list[int]) -> list[tuple[AuxiliaryEnsemble, dict]]:
        return self._pool().train_aux(fitted.statistics, fitted.aux_phi, fitted.aux_labels(), settings, seeds)

    def run_trajectories(self, fitted: FittedProxy, auxes: list[AuxiliaryEnsemble | None],
                         settings: OptimiserSettings, logits: list[torch.Tensor], batch_size: int,
                         on_step: StepHook | None = None) -> list[TrajectoryResult]:
        """As ``Executor.run_trajectories``, in batches that share the shards evenly (``trajectory_batch_for``)."""
        if on_step is not None:
            raise ValueError("a step hook runs in the driver's process: use LocalExecutor for it")
        pool = self._pool()
        batch = trajectory_batch_for(len(logits[0]), len(logits), batch_size, len(pool.actors))
        return pool.run_seeds(fitted.proxy, auxes, settings, logits, batch)

    def evolve(self, fitted: FittedProxy, problem: EvolutionProblem, settings: EvolutionSettings,
               seeds: list[int], batch_size: int) -> list[EvolutionResult]:
        """As ``Executor.evolve``, one seed per shard call (children scored at the pool's embedding batch)."""
        return self._pool().evolve_seeds(fitted.proxy, problem, settings, seeds)

    def score(self, fitted: FittedProxy, auxes: list[AuxiliaryEnsemble | None], codes: list[np.ndarray],
              batch_size: int) -> list[dict[str, np.ndarray]]:
        return self._pool().score(fitted.proxy, auxes, codes, batch_size)

    def _pool(self) -> ShardPool:
        if self.pool is None:
            raise RuntimeError("fit the proxy on the shards first (ShardExecutor.fit)")
        return self.pool


def add_rows(fitted: FittedProxy, pool: ShardPool, codes: np.ndarray, y: np.ndarray) -> FittedProxy:
    """The linear-head proxy refitted with extra offline rows; only the new rows are embedded."""
    if not isinstance(fitted.proxy, BidirectionalProxy):
        raise ValueError("only the linear-head proxy grows by its statistics; refit the NTK proxy")
    statistics, _ = pool.embed_statistics(codes, np.asarray(y, dtype=np.float64), np.zeros(0, dtype=np.int64))
    grown = dataclasses.replace(fitted.task, x=np.concatenate([fitted.task.x, codes]),
                                y=np.concatenate([fitted.task.y, y]))
    merged = fitted.statistics + statistics
    proxy = BidirectionalProxy(merged, fitted.proxy.beta_scale, fitted.proxy.design_beta_scale, "cpu")
    return dataclasses.replace(fitted, task=grown, statistics=merged, proxy=proxy, timings=dict(fitted.timings))


def run_design_on_ray(config: DesignConfig, settings: RaySettings, progress: bool = False,
                      task: Task | None = None) -> DesignRun:
    """The whole design run with the LM (or, for the NTK proxy, the kernel) work on Ray shard actors. The task
    is loaded here, on the driver (unless given), and shipped: workers need no data files."""
    started = time.perf_counter()
    task = task if task is not None else config.load_task()
    config = config.resolved_for(task.alphabet)
    where = connect(settings.address)
    with ShardExecutor(shard_resources(settings), progress) as executor:
        run = run_design(config, task, executor)
        run.fitted.timings["shard_busy_s_by_node"] = executor.pool.busy_by_node()
    run.fitted.timings["driver_cpu_s"] = round(time.process_time(), 2)
    run.fitted.timings["ray"] = where
    run.total_s = time.perf_counter() - started
    return run
