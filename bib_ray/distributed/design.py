"""``bib-ray design`` on Ray: fit the proxy on shard actors, run the trajectories on them.

Same results as the single-process ``bib_ray.pipeline.run_design`` for the same config and
seeds (the driver draws every trajectory's initial logits, the shards only compute).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from bib_ray.backbones import build_backbone
from bib_ray.config import DesignConfig, RaySettings
from bib_ray.core.aux_ensemble import aux_training_rows
from bib_ray.core.proxy import BidirectionalProxy
from bib_ray.distributed.runtime import connect
from bib_ray.distributed.shards import ShardPool, ShardResources, default_shard_count
from bib_ray.embedding import SequenceEmbedder
from bib_ray.pipeline import DesignRun, FittedProxy, resolve_device, run_seed
from bib_ray.tasks import Task, load_task


def shard_resources(settings: RaySettings) -> ShardResources:
    """Resolve defaults against the connected cluster: one shard per GPU, else per CPU."""
    import ray

    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = settings.gpus_per_shard if settings.gpus_per_shard is not None else (1.0 if has_gpus else 0.0)
    return ShardResources(count=settings.shards or default_shard_count(), cpus=settings.cpus_per_shard, gpus=gpus,
                          max_restarts=settings.max_restarts, max_task_retries=settings.max_restarts)


def fit_proxy_on_shards(task: Task, config: DesignConfig, pool: ShardPool, progress: bool = False) -> FittedProxy:
    """Embed the offline set on the shards, reduce the statistics, solve the proxy on the driver."""
    started = time.perf_counter()
    aux_rows = aux_training_rows(len(task.y), config.aux_max_rows)
    statistics, aux_phi = pool.embed_statistics(task.x, task.y, aux_rows, progress)
    embedded = time.perf_counter()
    device = resolve_device("cpu" if config.device == "auto" else config.device)
    embedder = SequenceEmbedder(build_backbone(config.backbone, task.alphabet, task.read_length), task, device)
    proxy = BidirectionalProxy(statistics, beta_scale=config.beta_scale, device=device)
    return FittedProxy(task, embedder, statistics, proxy, aux_rows, aux_phi, timings={
        "embed_offline_s": embedded - started, "embed_rows_per_s": len(task.y) / max(embedded - started, 1e-9),
        "shards": len(pool.actors), "solve_proxy_s": time.perf_counter() - embedded})


def add_rows(fitted: FittedProxy, pool: ShardPool, codes: np.ndarray, y: np.ndarray) -> FittedProxy:
    """The proxy refitted with extra offline rows; only the new rows are embedded."""
    statistics, _ = pool.embed_statistics(codes, np.asarray(y, dtype=np.float64), np.zeros(0, dtype=np.int64))
    grown = dataclasses.replace(fitted.task, x=np.concatenate([fitted.task.x, codes]),
                                y=np.concatenate([fitted.task.y, y]))
    merged = fitted.statistics + statistics
    proxy = BidirectionalProxy(merged, fitted.proxy.beta_scale, fitted.proxy.design_beta_scale,
                               fitted.embedder.device)
    return FittedProxy(grown, fitted.embedder, merged, proxy, fitted.aux_rows, fitted.aux_phi, dict(fitted.timings))


def trajectory_batch_for(config: DesignConfig, shards: int) -> int:
    """Designs per Ray task: the configured batch, but small enough to give every shard work."""
    return max(1, min(config.trajectory_batch, math.ceil(config.designs / shards)))


def run_design_on_ray(config: DesignConfig, settings: RaySettings, progress: bool = False) -> DesignRun:
    """The whole design run with the LM work on Ray shard actors."""
    started = time.perf_counter()
    where = connect(settings.address)
    task = load_task(config.task, config.data_dir, config.alphabet)
    pool = ShardPool(config.backbone, task, shard_resources(settings), config.embed_batch_size)
    try:
        fitted = fit_proxy_on_shards(task, config, pool, progress)
        batch = trajectory_batch_for(config, len(pool.actors))

        def runner(fitted_: FittedProxy, aux, optimiser_settings, logits: torch.Tensor, _batch: int,
                   show: bool):
            return pool.run_trajectories(fitted_.proxy, aux, optimiser_settings, logits, batch, show)

        results = [run_seed(fitted, config, seed, progress, runner) for seed in config.seeds]
    finally:
        pool.shutdown()
    fitted.timings["ray"] = where
    return DesignRun(config, fitted, results, time.perf_counter() - started)
