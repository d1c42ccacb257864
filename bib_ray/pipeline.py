"""One design run end to end: load task and backbone, embed the offline set, fit the proxy,
train the auxiliary ensemble, optimise every seed's batch of designs, evaluate.

This is the single-process path; the Ray drivers reuse its pieces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from bib_ray.artifacts import LMIdentity, save_proxy_artifact
from bib_ray.backbones import build_backbone
from bib_ray.config import DesignConfig
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings, aux_training_rows
from bib_ray.core.design_variables import init_logits, mask_logits
from bib_ray.core.evolution import EvolutionResult, EvolutionSettings, ProxyScore, evolve
from bib_ray.core.ntk import ReluNTK
from bib_ray.core.ntk_proxy import NTKProxy, kernel_rows
from bib_ray.core.optimizer import BIBOptimiser, OptimiserSettings, TrajectoryResult
from bib_ray.core.proxy import BidirectionalProxy, DesignProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.core.support import SupportConstraints, SupportLevel, decode_designs, task_support
from bib_ray.devices import resolve_device
from bib_ray.embedding import SequenceEmbedder
from bib_ray.evaluation import evaluate_with_oracle, novelty
from bib_ray.scoring import score_codes
from bib_ray.tasks import Task, load_task


@dataclass
class FittedProxy:
    """Everything fitted on the offline set: the LM's identity, the statistics, the closed-form proxy,
    and the embeddings of the rows the auxiliary ensemble trains on (``aux_rows`` of task.x).
    ``embedder`` is the LM in this process; None on a Ray driver, whose LMs live on shard actors."""

    task: Task
    embedder: SequenceEmbedder | None
    lm: LMIdentity
    statistics: EmbeddingStatistics
    proxy: DesignProxy
    aux_rows: np.ndarray
    aux_phi: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)

    def aux_labels(self) -> torch.Tensor:
        """Standardised labels of the aux training rows."""
        y = torch.as_tensor(self.task.y[self.aux_rows], dtype=torch.float64)
        return (y - self.proxy.label_mean) / self.proxy.label_std


ProxyBuilder = Callable[[EmbeddingStatistics, torch.Tensor, torch.device], DesignProxy]  # (stats, phi of all rows)


def fit_proxy(task: Task, backbone_spec: str, beta_scale: float = 1e-6, device: str = "auto",
              batch_size: int = 512, progress: bool = False, aux_max_rows: int = AuxiliarySettings.max_rows,
              build_proxy: ProxyBuilder | None = None, dtype: str = "float32") -> FittedProxy:
    """Embed the offline set once and solve the proxy in closed form (the linear head unless
    ``build_proxy`` makes another from the statistics and the offline embeddings)."""
    target = resolve_device(device)
    started = time.perf_counter()
    backbone = build_backbone(backbone_spec, task.alphabet, task.read_length, dtype=dtype)
    embedder = SequenceEmbedder(backbone, task, target)
    loaded = time.perf_counter()
    statistics, phi = embedder.statistics(task.x, task.y, batch_size, progress)
    embedded = time.perf_counter()
    proxy = build_proxy(statistics, phi, target) if build_proxy is not None else \
        BidirectionalProxy(statistics, beta_scale=beta_scale, device=target)
    solved = time.perf_counter()
    aux_rows = aux_training_rows(len(task.y), aux_max_rows)
    return FittedProxy(task, embedder, LMIdentity.of(embedder, task), statistics, proxy, aux_rows, phi[aux_rows],
                       timings={
        "load_backbone_s": loaded - started, "embed_offline_s": embedded - loaded,
        "embed_rows_per_s": len(task.y) / max(embedded - loaded, 1e-9), "solve_proxy_s": solved - embedded})


def fit_ntk_proxy(task: Task, kernel: ReluNTK | None = None, max_rows: int = 5000, device: str = "auto",
                  beta_scale: float = 1e-6) -> FittedProxy:
    """The BDI-style baseline's fit: one-hot features (``onehot`` backbone, which the aux ensemble
    also uses) with the NTK proxy on at most ``max_rows`` offline rows in place of the linear head."""
    rows = kernel_rows(len(task.y), max_rows)

    def build(statistics: EmbeddingStatistics, phi: torch.Tensor, target: torch.device) -> NTKProxy:
        return NTKProxy(phi[rows], torch.as_tensor(task.y[rows]), statistics.label_mean, statistics.label_std,
                        kernel, beta_scale, device=target)

    return fit_proxy(task, "onehot", beta_scale, device, build_proxy=build)


def fit_for_config(task: Task, config: DesignConfig, progress: bool = False) -> FittedProxy:
    """The proxy ``config`` asks for, in this process: the NTK proxy on one-hot features on at most
    ``config.ntk_rows`` rows for backbone ``ntk`` (``fit_ntk_proxy``), else the LM's linear head."""
    if config.uses_ntk_proxy:
        return fit_ntk_proxy(task, max_rows=config.ntk_rows, device=config.device, beta_scale=config.beta_scale)
    return fit_proxy(task, config.backbone, config.beta_scale, config.device, config.embed_batch_size, progress,
                     config.aux_max_rows, dtype=config.dtype)


def train_aux(fitted: FittedProxy, settings: AuxiliarySettings, seed: int) -> tuple[AuxiliaryEnsemble, dict]:
    """An auxiliary ensemble for ``seed`` on the offline embeddings (standardised labels), on the LM's device."""
    aux, metrics = fit_aux_ensemble(fitted.statistics, fitted.aux_phi, fitted.aux_labels(), settings, seed)
    return aux.to(fitted.lm.device), metrics


def fit_aux_ensemble(statistics: EmbeddingStatistics, phi: torch.Tensor, labels: torch.Tensor,
                     settings: AuxiliarySettings, seed: int) -> tuple[AuxiliaryEnsemble, dict]:
    """The ensemble for ``seed`` trained on rows ``phi`` with standardised ``labels`` (on the CPU; a shard
    actor runs this for a Ray design run)."""
    mean, std = statistics.feature_moments()
    aux = AuxiliaryEnsemble(statistics.dim, settings, seed, mean, std)
    return aux, aux.fit(phi, labels)


@dataclass
class SeedResult:
    seed: int
    trajectory: TrajectoryResult
    aux: AuxiliaryEnsemble
    aux_metrics: dict
    designs: pd.DataFrame
    oracle_summary: dict | None
    timings: dict[str, float]


def design_table(task: Task, seed: int, trajectory: TrajectoryResult,
                 scores: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict | None]:
    """One row per final design: sequence, proxy/aux ``scores`` (from ``score_codes``), oracle scores, novelty."""
    final, start = trajectory.final_codes, trajectory.start_codes
    table = pd.DataFrame({"seed": seed, "design": np.arange(len(final)),
                          "sequence": task.sequences(final), "start_sequence": task.sequences(start)})
    for key, values in scores.items():
        table[key] = values
    evaluation = evaluate_with_oracle(task, final)
    if evaluation is not None:
        starts = evaluate_with_oracle(task, start).summary
        evaluation.summary.update(start_p100=starts["p100"], start_p50=starts["p50"],
                                  offline_best=float(task.normalise(task.y.max())))
        table["oracle_score"] = evaluation.scores
        table["oracle_status"] = evaluation.status
        table["normalised_score"] = evaluation.normalised
    for key, values in novelty(task, start, final).items():
        table[key] = values
    return table, None if evaluation is None else evaluation.summary


def initial_logits(task: Task, designs: int, seed: int, init_std: float,
                   observed_letters_only: bool = False) -> torch.Tensor:
    """Seed ``seed``'s starting logits for ``designs`` trajectories (the same wherever they then run);
    with ``observed_letters_only``, letters the offline data never shows at a position are masked."""
    starts = torch.as_tensor(task.starting_designs(designs))
    logits = init_logits(starts, len(task.alphabet), torch.Generator().manual_seed(seed), init_std)
    return mask_logits(logits, task.observed_letters()) if observed_letters_only else logits


def merge_trajectories(parts: list[TrajectoryResult]) -> TrajectoryResult:
    """Concatenate batches of trajectories (in order) into one result."""
    return TrajectoryResult(
        start_codes=np.concatenate([p.start_codes for p in parts]),
        final_codes=np.concatenate([p.final_codes for p in parts]),
        final_logits=np.concatenate([p.final_logits for p in parts]),
        history={key: np.concatenate([p.history[key] for p in parts], axis=1) for key in parts[0].history},
        cotangents=parts[0].cotangents)


TrajectoryRunner = Callable[[FittedProxy, "AuxiliaryEnsemble | None", OptimiserSettings, torch.Tensor, int, bool],
                            TrajectoryResult]


def run_trajectories_locally(fitted: FittedProxy, aux: AuxiliaryEnsemble | None, settings: OptimiserSettings,
                             logits: torch.Tensor, batch_size: int, progress: bool) -> TrajectoryResult:
    """Optimise ``logits`` (B, L, V) in this process, ``batch_size`` trajectories per LM call."""
    from tqdm.auto import tqdm

    optimiser = BIBOptimiser(fitted.embedder.embed_designs, fitted.proxy, settings, aux)
    chunks = logits.to(fitted.embedder.device).split(batch_size)
    with tqdm(total=settings.steps * len(chunks), desc="optimising", unit="step", disable=not progress,
              leave=False) as bar:
        return merge_trajectories([optimiser.run_from_logits(chunk, on_step=lambda *_: bar.update())
                                   for chunk in chunks])


def decode_final(task: Task, config: DesignConfig, trajectory: TrajectoryResult) -> TrajectoryResult:
    """The trajectory with its final designs decoded from the final logits under the config's support
    constraints and edit limit (``bib_ray.core.support``)."""
    return replace(trajectory, final_codes=decode_designs(task, trajectory.start_codes, trajectory.final_logits,
                                                          config.support, config.max_mutations))


def evolution_settings(config: DesignConfig) -> EvolutionSettings:
    """``evolution``'s settings for ``config``: ``steps`` rounds, a population of ``designs`` and four
    children per member each round."""
    return EvolutionSettings(rounds=config.resolved_steps, population=config.designs,
                             children_per_round=4 * config.designs)


def evolution_constraints(task: Task, config: DesignConfig) -> SupportConstraints:
    """The support constraints ``evolution``'s children obey: those of the gradient methods' final decode
    (``config.support``, ``config.max_mutations``); with ``observed_letters_only`` at least the letters."""
    level = config.support
    if config.observed_letters_only and level is SupportLevel.NONE:
        level = SupportLevel.LETTERS
    return task_support(task, level, config.max_mutations)


def proxy_scorer(embedder: SequenceEmbedder, proxy: DesignProxy, batch_size: int) -> ProxyScore:
    """codes (B, L) -> the proxy's standardised scores (B,), float64 on the CPU."""
    @torch.no_grad()
    def score(codes: np.ndarray) -> np.ndarray:
        phi = embedder.embed_codes(codes, batch_size).to(embedder.device)
        return proxy.predict(phi).cpu().numpy()

    return score


def evolution_trajectory(start: np.ndarray, result: EvolutionResult, vocab_size: int) -> TrajectoryResult:
    """An ``evolve`` result in the gradient methods' form: each final design's start is its nearest
    starting sequence, its final logits are its one-hot codes, and the history holds per round the
    population's proxy scores (``proxy_score``) and sequences (``codes``); no gamma or eta."""
    final = result.final_codes
    nearest = (final[:, None, :] != start[None, :, :]).sum(-1).argmin(1)
    return TrajectoryResult(start_codes=start[nearest], final_codes=final,
                            final_logits=np.eye(vocab_size, dtype=np.float32)[final],
                            history={"proxy_score": result.round_scores,
                                     "codes": result.round_codes.astype(np.int16)},
                            cotangents="none")


def evolve_designs(task: Task, embedder: SequenceEmbedder, proxy: DesignProxy, config: DesignConfig,
                   seed: int) -> TrajectoryResult:
    """Method ``evolution`` for ``seed`` in this process: mutate-and-select from the task's
    ``config.designs`` best offline rows on ``proxy``, within ``evolution_constraints``."""
    start = task.starting_designs(config.designs)
    result = evolve(start, proxy_scorer(embedder, proxy, config.embed_batch_size), len(task.alphabet),
                    evolution_settings(config), seed, config.designs, evolution_constraints(task, config),
                    task.reference)
    return evolution_trajectory(start, result, len(task.alphabet))


def run_seed(fitted: FittedProxy, config: DesignConfig, seed: int, progress: bool = False,
             runner: TrajectoryRunner = run_trajectories_locally,
             trained_aux: tuple[AuxiliaryEnsemble, dict] | None = None) -> SeedResult:
    """Train this seed's aux ensemble (unless ``trained_aux`` gives it with its metrics), run
    ``config.method`` and evaluate (in this process, with ``fitted.embedder``). A gradient method
    optimises ``config.designs`` trajectories with ``runner`` and decodes the final logits under the
    support constraints (``decode_final``); ``evolution`` runs ``evolve_designs``."""
    started = time.perf_counter()
    aux, aux_metrics = trained_aux or train_aux(fitted, config.aux_settings(), seed)
    aux_done = time.perf_counter()
    if config.method.is_gradient:
        settings = config.optimiser_settings()
        logits = initial_logits(fitted.task, config.designs, seed, settings.init_std, config.observed_letters_only)
        trajectory = runner(fitted, aux if settings.needs_aux else None, settings, logits, config.trajectory_batch,
                            progress)
        trajectory = decode_final(fitted.task, config, trajectory)
    else:
        trajectory = evolve_designs(fitted.task, fitted.embedder, fitted.proxy, config, seed)
    optimised = time.perf_counter()
    scores = score_codes(fitted.embedder, fitted.proxy, aux, trajectory.final_codes)
    table, oracle_summary = design_table(fitted.task, seed, trajectory, scores)
    finished = time.perf_counter()
    return SeedResult(seed, trajectory, aux, aux_metrics, table, oracle_summary, timings={
        "aux_fit_s": aux_done - started, "optimise_s": optimised - aux_done,
        "step_ms": 1000 * (optimised - aux_done) / config.resolved_steps, "evaluate_s": finished - optimised})


@dataclass
class DesignRun:
    config: DesignConfig
    fitted: FittedProxy
    seeds: list[SeedResult]
    total_s: float

    @property
    def designs(self) -> pd.DataFrame:
        return pd.concat([result.designs for result in self.seeds], ignore_index=True)


def run_design(config: DesignConfig, progress: bool = False, task: Task | None = None) -> DesignRun:
    """The whole single-process design run described by ``config`` (on ``task`` when the caller has
    loaded it already, else on ``config.task``)."""
    started = time.perf_counter()
    task = task if task is not None else load_task(config.task, config.data_dir, config.alphabet)
    config = config.resolved_for(task.alphabet)
    fitted = fit_for_config(task, config, progress)
    results = [run_seed(fitted, config, seed, progress) for seed in config.seeds]
    return DesignRun(config, fitted, results, time.perf_counter() - started)


def fit_and_save_proxy(task: Task, backbone_spec: str, out: Path, aux_settings: AuxiliarySettings | None = None,
                       seed: int = 0, device: str = "auto", beta_scale: float = 1e-6) -> Path:
    """Fit the proxy and one aux ensemble on ``task`` and write the scoring artifact (no design run)."""
    settings = aux_settings or AuxiliarySettings()
    fitted = fit_proxy(task, backbone_spec, beta_scale, device, aux_max_rows=settings.max_rows)
    aux, _ = train_aux(fitted, settings, seed)
    return save_proxy_artifact(out, task, fitted.lm, fitted.proxy, aux)
