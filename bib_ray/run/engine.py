"""One design run, written once: fit, then for every seed aux ensemble -> method -> decode -> score -> table,
and (``--batch``) the batch to order, pooled over the seeds.

``run_design`` is the only place the run's stages are sequenced. Where they execute is the
``Executor`` it is given (``bib_ray.run.executor``): this process, or Ray shard actors. Every
caller goes through it: ``bib-ray design`` (``--local`` and on Ray), a sweep trial (with a step
hook that reports to Tune), the benchmark suite's cells and the selection benchmark.

The method stage: a gradient method optimises ``designs`` trajectories per seed from initial
logits drawn on the driver (so the designs do not depend on where they ran) and decodes the final
logits under the task's support constraints; ``evolution`` evolves a population from the
``designs`` best offline rows within the same constraints.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.design_variables import init_logits, mask_logits
from bib_ray.core.evolution import EvolutionProblem, EvolutionResult
from bib_ray.core.optimizer import TrajectoryResult
from bib_ray.proxy.fitting import FittedProxy
from bib_ray.run.batch import CandidatePool, choose_batch, pool_parts
from bib_ray.run.config import DesignConfig
from bib_ray.run.constraints import decode_designs, evolution_support, kept_letters
from bib_ray.run.executor import Executor, StepHook
from bib_ray.run.results import DesignRun, SeedResult, design_table
from bib_ray.tasks.base import Task


def run_design(config: DesignConfig, task: Task, executor: Executor, fitted: FittedProxy | None = None,
               on_step: StepHook | None = None) -> DesignRun:
    """The design run ``config`` describes on ``task``, its stages on ``executor``.

    Args:
        config: the run's settings; ``steps`` unset is resolved for the task's alphabet here.
        task: the task (its oracle, if any, scores the designs for the tables only).
        executor: where the stages run.
        fitted: a proxy already fitted on ``task`` (a sweep's shared embedding pass, a suite's group);
            None fits one with ``executor.fit``.
        on_step: called after every optimisation step of a gradient method, as
            ``on_step(seed index, step, logits)`` (executors that run in this process only).
    """
    started = time.perf_counter()
    config = config.resolved_for(task.alphabet)
    fixed = config.fixed_positions(task.length)
    if fitted is None:
        fitted = executor.fit(task, config.proxy_settings())
    seeds = config.seeds
    fitted_at = time.perf_counter()
    trained = executor.train_aux(fitted, config.aux_settings(), seeds)
    auxes = [aux for aux, _ in trained]
    aux_done = time.perf_counter()
    trajectories = run_method(config, task, executor, fitted, auxes, fixed, on_step)
    optimised = time.perf_counter()
    scores = executor.score(fitted, auxes, [t.final_codes for t in trajectories], config.embed_batch_size)
    tables = [design_table(task, seed, trajectory, seed_scores)
              for seed, trajectory, seed_scores in zip(seeds, trajectories, scores)]
    finished = time.perf_counter()
    batch = None
    if config.batch is not None:
        batch = choose_batch(config.batch_settings(), task, seeds, executor, fitted, auxes,
                             candidate_pool(config, task, trajectories, fixed), config.aux_members,
                             config.embed_batch_size)
        batch.summary["seconds"] = time.perf_counter() - finished
    share = 1.0 / len(seeds)  # stages take every seed at once: each seed gets an equal share of their time
    timings = {"aux_fit_s": share * (aux_done - fitted_at), "optimise_s": share * (optimised - aux_done),
               "step_ms": share * 1000 * (optimised - aux_done) / config.resolved_steps,
               "evaluate_s": share * (finished - optimised)}
    results = [SeedResult(seed, trajectory, aux, metrics, table, summary, timings=dict(timings))
               for seed, trajectory, (aux, metrics), (table, summary) in zip(seeds, trajectories, trained, tables)]
    return DesignRun(config, fitted, results, time.perf_counter() - started, batch)


def run_method(config: DesignConfig, task: Task, executor: Executor, fitted: FittedProxy,
               auxes: list[AuxiliaryEnsemble], fixed: np.ndarray | None = None,
               on_step: StepHook | None = None) -> list[TrajectoryResult]:
    """Every seed's designs by ``config.method``, as trajectories whose final codes are the designs; no
    design changes a ``fixed`` (L,) position."""
    if not config.method.is_gradient:
        start = task.starting_designs(config.designs)
        support = evolution_support(task, config.support, config.max_mutations, config.observed_letters_only)
        problem = EvolutionProblem(start, len(task.alphabet), support, task.reference, fixed)
        evolved = executor.evolve(fitted, problem, config.evolution_settings(), config.seeds, config.embed_batch_size)
        return [evolution_trajectory(start, result, len(task.alphabet), fixed) for result in evolved]
    settings = config.optimiser_settings()
    logits = [initial_logits(task, config.designs, seed, settings.init_std, config.observed_letters_only, fixed)
              for seed in config.seeds]
    trajectories = executor.run_trajectories(fitted, [aux if settings.needs_aux else None for aux in auxes],
                                             settings, logits, config.trajectory_batch, on_step)
    return [decode_final(task, config, trajectory, fixed) for trajectory in trajectories]


def initial_logits(task: Task, designs: int, seed: int, init_std: float, observed_letters_only: bool = False,
                   fixed: np.ndarray | None = None) -> torch.Tensor:
    """Seed ``seed``'s starting logits for ``designs`` trajectories (the same wherever they then run);
    with ``observed_letters_only``, letters the offline data never shows at a position are masked, and at
    the ``fixed`` (L,) positions every letter but the start's (so no step moves them)."""
    starts = torch.as_tensor(task.starting_designs(designs))
    logits = init_logits(starts, len(task.alphabet), torch.Generator().manual_seed(seed), init_std)
    allowed = task.observed_letters() if observed_letters_only else None
    kept = kept_letters(starts.numpy(), len(task.alphabet), fixed)
    if kept is not None:
        allowed = kept if allowed is None else kept & allowed[None]
    return logits if allowed is None else mask_logits(logits, allowed)


def decode_final(task: Task, config: DesignConfig, trajectory: TrajectoryResult,
                 fixed: np.ndarray | None = None) -> TrajectoryResult:
    """The trajectory with its final designs decoded from the final logits under the config's support
    constraints and edit limit, ``fixed`` positions kept (``bib_ray.run.constraints.decode_designs``)."""
    return replace(trajectory, final_codes=decode_designs(task, trajectory.start_codes, trajectory.final_logits,
                                                          config.support, config.max_mutations, fixed))


def nearest_starts(codes: np.ndarray, start: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
    """For each design (B, L), its nearest starting sequence in ``start`` (S, L) by Hamming distance, among
    those with the design's letters at the ``fixed`` positions when any does."""
    distance = (codes[:, None, :] != start[None, :, :]).sum(-1)
    if fixed is not None:
        differs = (codes[:, None, fixed] != start[None, :, fixed]).any(-1)
        distance = np.where(differs & ~differs.all(1, keepdims=True), distance + codes.shape[1] + 1, distance)
    return start[distance.argmin(1)]


def evolution_trajectory(start: np.ndarray, result: EvolutionResult, vocab_size: int,
                         fixed: np.ndarray | None = None) -> TrajectoryResult:
    """An ``evolve`` result in the gradient methods' form: each final design's start is its nearest
    starting sequence (``nearest_starts``), its final logits are its one-hot codes, and the history holds
    per round the population's proxy scores (``proxy_score``) and sequences (``codes``); no gamma or eta."""
    final = result.final_codes
    return TrajectoryResult(start_codes=nearest_starts(final, start, fixed), final_codes=final,
                            final_logits=np.eye(vocab_size, dtype=np.float32)[final],
                            history={"proxy_score": result.round_scores,
                                     "codes": result.round_codes.astype(np.int16)},
                            cotangents="none")


def candidate_pool(config: DesignConfig, task: Task, trajectories: list[TrajectoryResult],
                   fixed: np.ndarray | None) -> CandidatePool:
    """The batch's candidates: every seed's designs at the checkpoints (gradient methods: the checkpoint
    logits decoded as the final ones are; ``evolution``: the population at those rounds) and at the end."""
    steps = config.resolved_steps
    parts = []
    for index, trajectory in enumerate(trajectories):
        if config.method.is_gradient and trajectory.checkpoint_steps:
            kept, starts = trajectory.checkpoint_logits, trajectory.start_codes
            decoded = decode_designs(task, np.tile(starts, (len(kept), 1)), kept.reshape(-1, *kept.shape[2:]),
                                     config.support, config.max_mutations, fixed).reshape(len(kept), *starts.shape)
            checkpoints = [(step, codes, starts) for step, codes in zip(trajectory.checkpoint_steps, decoded)]
        elif config.method.is_gradient:
            checkpoints = []
        else:
            start = task.starting_designs(config.designs)
            rounds = trajectory.history["codes"].astype(np.int64)
            checkpoints = [(step, rounds[step - 1], nearest_starts(rounds[step - 1], start, fixed))
                           for step in config.batch_settings().checkpoint_steps(steps)]
        parts += pool_parts(trajectory, checkpoints, index, steps)
    return CandidatePool.of(parts)
