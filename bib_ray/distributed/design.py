"""``bib-ray design`` on Ray: fit the proxy on shard actors, then train every seed's auxiliary
ensemble, run every seed's trajectories (or, for method ``evolution``, every seed's evolution)
and score the final designs on them too.

A run on the NTK proxy (backbone ``ntk``, method ``bdi`` among others) has no LM to shard: its
kernel is an M x M solve on one-hot rows, so the whole run is one Ray task (``run_design``).

Same results as the single-process ``bib_ray.pipeline.run_design`` for the same config and
seeds (the driver draws every trajectory's initial logits, the shards only compute). The
driver holds no LM: it reduces the shards' statistics, solves the proxy, dispatches all
seeds' work at once, and scores the designs with the task's oracle.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from bib_ray.config import DesignConfig, RaySettings
from bib_ray.core.aux_ensemble import aux_training_rows
from bib_ray.core.proxy import BidirectionalProxy
from bib_ray.distributed.runtime import connect
from bib_ray.distributed.shards import ShardPool, ShardResources, default_shard_count
from bib_ray.pipeline import (DesignRun, FittedProxy, SeedResult, decode_final, design_table, evolution_constraints,
                              evolution_settings, evolution_trajectory, initial_logits, run_design)
from bib_ray.tasks import Task, load_task


def shard_resources(settings: RaySettings) -> ShardResources:
    """Resolve defaults against the connected cluster: one shard per GPU, else per CPU."""
    import ray

    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = settings.gpus_per_shard if settings.gpus_per_shard is not None else (1.0 if has_gpus else 0.0)
    return ShardResources(count=settings.shards or default_shard_count(), cpus=settings.cpus_per_shard, gpus=gpus,
                          max_restarts=settings.max_restarts, max_task_retries=settings.max_restarts,
                          placement_timeout_s=settings.placement_timeout_s)


def fit_proxy_on_shards(task: Task, config: DesignConfig, pool: ShardPool, progress: bool = False) -> FittedProxy:
    """Embed the offline set on the shards, reduce their statistics, solve the proxy on the driver (CPU)."""
    started = time.perf_counter()
    aux_rows = aux_training_rows(len(task.y), config.aux_max_rows)
    statistics, aux_phi = pool.embed_statistics(task.x, task.y, aux_rows, progress)
    embedded = time.perf_counter()
    proxy = BidirectionalProxy(statistics, beta_scale=config.beta_scale, device="cpu")
    return FittedProxy(task, None, pool.lm_identity(task), statistics, proxy, aux_rows, aux_phi, timings={
        "embed_offline_s": embedded - started, "embed_rows_per_s": len(task.y) / max(embedded - started, 1e-9),
        "shards": len(pool.actors), "solve_proxy_s": time.perf_counter() - embedded})


def add_rows(fitted: FittedProxy, pool: ShardPool, codes: np.ndarray, y: np.ndarray) -> FittedProxy:
    """The proxy refitted with extra offline rows; only the new rows are embedded."""
    statistics, _ = pool.embed_statistics(codes, np.asarray(y, dtype=np.float64), np.zeros(0, dtype=np.int64))
    grown = dataclasses.replace(fitted.task, x=np.concatenate([fitted.task.x, codes]),
                                y=np.concatenate([fitted.task.y, y]))
    merged = fitted.statistics + statistics
    proxy = BidirectionalProxy(merged, fitted.proxy.beta_scale, fitted.proxy.design_beta_scale, "cpu")
    return dataclasses.replace(fitted, task=grown, statistics=merged, proxy=proxy, timings=dict(fitted.timings))


def trajectory_batch_for(config: DesignConfig, shards: int) -> int:
    """Designs per Ray task: at most the configured batch, small enough to give every shard work, and,
    where a few more pieces per seed allow it, a number of tasks over all seeds that the shards share evenly."""
    seeds = len(config.seeds)
    fewest = max(math.ceil(config.designs / config.trajectory_batch), math.ceil(shards / seeds))
    pieces = next((n for n in range(fewest, fewest + shards) if (n * seeds) % shards == 0), fewest)
    return max(1, math.ceil(config.designs / min(pieces, config.designs)))


def run_seeds_on_shards(fitted: FittedProxy, config: DesignConfig, pool: ShardPool,
                        progress: bool = False) -> list[SeedResult]:
    """All seeds at once: aux ensembles, then every trajectory batch (or every seed's evolution), then
    the scoring, each spread over the shards; the driver only decodes and scores the designs with the oracle."""
    seeds, task = config.seeds, fitted.task
    started = time.perf_counter()
    trained = pool.train_aux(fitted.statistics, fitted.aux_phi, fitted.aux_labels(), config.aux_settings(), seeds,
                             progress)
    auxes = [aux for aux, _ in trained]
    aux_done = time.perf_counter()
    if config.method.is_gradient:
        settings = config.optimiser_settings()
        logits = [initial_logits(task, config.designs, seed, settings.init_std, config.observed_letters_only)
                  for seed in seeds]
        batch = trajectory_batch_for(config, len(pool.actors))
        trajectories = pool.run_seeds(fitted.proxy, [aux if settings.needs_aux else None for aux in auxes],
                                      settings, logits, batch, progress)
        trajectories = [decode_final(task, config, trajectory) for trajectory in trajectories]
    else:
        start = task.starting_designs(config.designs)
        evolved = pool.evolve_seeds(fitted.proxy, start, evolution_settings(config), seeds, config.designs,
                                    evolution_constraints(task, config), task.reference, progress)
        trajectories = [evolution_trajectory(start, result, len(task.alphabet)) for result in evolved]
    optimised = time.perf_counter()
    scores = pool.score(fitted.proxy, auxes, [t.final_codes for t in trajectories], config.embed_batch_size)
    scored = time.perf_counter()
    share = 1.0 / len(seeds)  # the seeds ran together: each gets an equal share of each stage's wall time
    timings = {"aux_fit_s": share * (aux_done - started), "optimise_s": share * (optimised - aux_done),
               "step_ms": share * 1000 * (optimised - aux_done) / config.resolved_steps,
               "evaluate_s": share * (scored - optimised)}
    results = []
    for seed, (aux, metrics), trajectory, seed_scores in zip(seeds, trained, trajectories, scores):
        table, oracle_summary = design_table(task, seed, trajectory, seed_scores)
        results.append(SeedResult(seed, trajectory, aux, metrics, table, oracle_summary, timings=dict(timings)))
    return results


def run_design_on_ray(config: DesignConfig, settings: RaySettings, progress: bool = False,
                      task: Task | None = None) -> DesignRun:
    """The whole design run with the LM work on Ray shard actors; on the NTK proxy (no LM), the
    single-process ``run_design`` as one Ray task of ``settings.cpus_per_shard`` CPUs and no GPU.
    The task is loaded here, on the driver (unless given), and shipped: workers need no data files."""
    started = time.perf_counter()
    task = task if task is not None else load_task(config.task, config.data_dir, config.alphabet)
    config = config.resolved_for(task.alphabet)
    where = connect(settings.address)
    if config.uses_ntk_proxy:
        import ray

        run = ray.get(ray.remote(num_cpus=settings.cpus_per_shard, num_gpus=0, max_retries=settings.max_restarts)(
            run_design).remote(config, False, task))
        run.fitted.timings["ray"] = where
        run.total_s = time.perf_counter() - started
        return run
    pool = ShardPool(config.backbone, task, shard_resources(settings), config.embed_batch_size, config.dtype)
    try:
        fitted = fit_proxy_on_shards(task, config, pool, progress)
        results = run_seeds_on_shards(fitted, config, pool, progress)
        fitted.timings["shard_busy_s_by_node"] = pool.busy_by_node()
    finally:
        pool.shutdown()
    fitted.timings["ray"] = where
    fitted.timings["driver_cpu_s"] = round(time.process_time(), 2)
    return DesignRun(config, fitted, results, time.perf_counter() - started)
