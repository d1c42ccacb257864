"""``bib-ray sweep``: a Ray Tune search over BIB's outer hyper-parameters.

Each trial is a full design run (one seed) whose metric -- ``selection_score`` -- comes from an
offline selection metric (``bib_ray.sweep.selection``, chosen by the sweep YAML's ``metric:``) that
never sees the oracle. Every metric but ``aux`` needs rows held out from every trial: a fixed
random ``holdout_fraction`` of the offline set, which the trials' proxies and aux ensembles never
see. The metric is fitted once on the driver and shipped to the trials. The oracle's percentiles
are logged beside it as ``oracle_p100_reporting_only`` / ``oracle_p50_reporting_only`` and play no
part in the search. Trials report every ``report_every`` steps, so ASHA can stop weak ones early.
The trial copied to ``best/`` is chosen by ``bib_ray.sweep.choice``: the metric's best unless other
trials cannot be told apart from it by the metric's spread (``tie_margin``).

The offline set is embedded once per backbone in the space (on shard actors) and shared with
every trial through the object store; trials re-solve the proxy for their beta (backbone ``ntk``:
the pass also forms the kernel matrix of its ``ntk_rows`` rows on the shards, and each trial solves
the NTK proxy from a copy of it).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bib_ray.core.aux_ensemble import aux_training_rows
from bib_ray.core.ntk import ReluNTK
from bib_ray.core.ntk_proxy import kernel_rows
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.distributed.design import shard_resources
from bib_ray.distributed.runtime import STOP_SIGNALS, Stopped
from bib_ray.distributed.settings import RaySettings
from bib_ray.distributed.shards import ShardPool
from bib_ray.errors import UserError
from bib_ray.run.config import DesignConfig
from bib_ray.run.constraints import beyond_radius_note
from bib_ray.sweep.choice import Choice, choose_trial, settings_changed
from bib_ray.sweep.config import Distribution, SweepConfig
from bib_ray.sweep.selection import (METRICS, Candidate, RowEmbeddings, SelectionMetric, draws_from_json,
                                     draws_to_json, fit_metrics, needs_split, split_offline, top_rows)
from bib_ray.tasks import Task
from bib_ray.tasks.evaluation import nearest_hamming

METRIC = "selection_score"
DRAWS = "selection_draws_json"  # the metric's paired draws of a trial's final designs (bib_ray.sweep.choice)


@dataclass
class PreparedBackbone:
    """What a trial needs from the embedding pass: statistics and aux rows of the training split,
    and the held-out (and top training) rows' embeddings for the metrics that read them (None if none does)."""

    statistics: EmbeddingStatistics
    aux_rows: np.ndarray
    aux_phi: torch.Tensor
    rows: RowEmbeddings | None
    kernel_rows: np.ndarray | None = None  # backbone ntk: the offline rows in the NTK proxy's kernel,
    kernel_phi: torch.Tensor | None = None  # their one-hot features
    kernel_gram: torch.Tensor | None = None  # and their kernel matrix, formed once on the shards


def prepare(sweep: SweepConfig, train: Task, holdout: Task | None, settings: RaySettings,
            progress: bool, needs: frozenset[str] = frozenset()) -> dict[str, PreparedBackbone]:
    """Embed the training rows once per backbone on shard actors (one-hot features for ``ntk``, keeping its
    kernel's rows), and the held-out rows (``needs`` "held") and the training split's top rows (``needs``
    "top") for the metric."""
    base = sweep.base_config()
    top = top_rows(train.y, sweep.selection_settings().top_rows) if "top" in needs else None
    prepared = {}
    for backbone in sweep.trial_backbones():
        proxy_settings = DesignConfig.model_validate({**sweep.base, "backbone": backbone}).proxy_settings()
        pool = ShardPool(proxy_settings.feature_backbone, train, shard_resources(settings), base.embed_batch_size,
                         proxy_settings.feature_dtype, progress)
        try:
            aux_rows = aux_training_rows(len(train.y), base.aux_max_rows)
            ntk_rows = kernel_rows(len(train.y), proxy_settings.ntk_rows) if proxy_settings.uses_ntk_proxy else None
            extra = [rows for rows in (top, ntk_rows) if rows is not None]
            rows_wanted = np.union1d(aux_rows, np.concatenate(extra)) if extra else aux_rows
            statistics, phi = pool.embed_statistics(train.x, train.y, rows_wanted)
            kernel_phi = None if ntk_rows is None else phi[np.searchsorted(rows_wanted, ntk_rows)]
            gram = None if kernel_phi is None else pool.kernel_gram(ReluNTK(), kernel_phi)
            rows = None
            if needs:
                held_phi = pool.embed_statistics(holdout.x, holdout.y, np.arange(len(holdout.y)))[1] \
                    if "held" in needs else None
                top_phi = phi[np.searchsorted(rows_wanted, top)] if top is not None else None
                rows = RowEmbeddings(held=held_phi, top=top_phi)
        finally:
            pool.shutdown()
        prepared[backbone] = PreparedBackbone(statistics, aux_rows, phi[np.searchsorted(rows_wanted, aux_rows)], rows,
                                              ntk_rows, kernel_phi, gram)
    return prepared


def fit_metric(sweep: SweepConfig, train: Task, holdout: Task | None,
               prepared: dict[str, PreparedBackbone]) -> SelectionMetric:
    """The sweep's selection metric, fitted once (on the driver) on the offline rows (``aux``, which holds
    nothing out, on the training rows alone)."""
    base = sweep.base_config()
    embeddings = {backbone: p.rows for backbone, p in prepared.items() if p.rows is not None}
    return fit_metrics([sweep.metric], train, train if holdout is None else holdout, embeddings,
                       sweep.selection_settings(), base.aux_settings(), base.seeds[0])[sweep.metric]


def run_trial(hyperparameters: dict, sweep: SweepConfig, train_task: Task,
              prepared: dict[str, PreparedBackbone], metric: SelectionMetric) -> None:
    """One Tune trial: a single-seed design run (``run_design`` in the trial's process, on the proxy
    solved from the shared embedding pass: the linear head for the trial's beta, or the NTK proxy on the
    pass's kernel rows), reporting ``selection_score`` (the fitted ``metric`` of its
    designs, decoded as the final decode would) every ``report_every`` steps and at the end."""
    from ray import tune

    from bib_ray.backbones import build_backbone
    from bib_ray.devices import granted_device
    from bib_ray.proxy.artifacts import LMIdentity
    from bib_ray.proxy.embedding import SequenceEmbedder
    from bib_ray.proxy.fitting import FittedProxy
    from bib_ray.run.constraints import decode_designs
    from bib_ray.run.engine import run_design
    from bib_ray.run.executor import LocalExecutor
    from bib_ray.run.report import write_run_directory

    started = time.perf_counter()
    config = DesignConfig.model_validate({**sweep.base, **hyperparameters})
    device = granted_device("auto")  # the GPU Tune granted this trial (resources.gpu), else the CPU
    own = prepared[config.backbone]
    proxy_settings = config.proxy_settings()
    backbone = build_backbone(proxy_settings.feature_backbone, train_task.alphabet, train_task.read_length,
                              dtype=proxy_settings.feature_dtype)
    embedder = SequenceEmbedder(backbone, train_task, device)
    lm = LMIdentity.of(embedder, train_task)
    if own.kernel_rows is not None:
        fitted = FittedProxy.ntk(train_task, lm, own.statistics, own.kernel_rows, own.kernel_phi, own.aux_rows,
                                 own.aux_phi, config.beta_scale, embedder, device,
                                 gram=own.kernel_gram.clone())  # the solve overwrites its matrix
    else:
        fitted = FittedProxy.linear_head(train_task, lm, own.statistics, own.aux_rows, own.aux_phi,
                                         config.beta_scale, embedder, device)
    executor = LocalExecutor(device, reuse_aux=True)  # the ensemble trained here is the run's own
    (aux, _), = executor.train_aux(fitted, config.aux_settings(), config.seeds)
    starts = train_task.starting_designs(config.designs)

    def score(designs: np.ndarray) -> float:
        return metric.score(Candidate(designs, config.backbone, fitted.proxy, aux, embedder.embed_codes))

    def report(_: int, step: int, logits: torch.Tensor) -> None:
        if (step + 1) % sweep.report_every == 0 and step + 1 < config.resolved_steps:
            designs = decode_designs(train_task, starts, logits.detach().cpu().numpy(), config.support,
                                     config.max_mutations)
            tune.report({METRIC: score(designs), "step": step + 1})

    run = run_design(config, train_task, executor, fitted=fitted, on_step=report)
    result = run.seeds[0]
    final = result.trajectory.final_codes
    final_score, draws = metric.evaluate(Candidate(final, config.backbone, fitted.proxy, aux, embedder.embed_codes))
    metrics = {METRIC: final_score, "step": config.resolved_steps,
               "design_distance": float(nearest_hamming(final, train_task.x).mean()),
               DRAWS: draws_to_json(draws)}
    if result.oracle_summary is not None:
        metrics.update(oracle_p100_reporting_only=result.oracle_summary["p100"],
                       oracle_p50_reporting_only=result.oracle_summary["p50"])
    run.total_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bib-ray-trial-") as run_dir:  # on the trial's node; Tune uploads it
        write_run_directory(run, Path(run_dir))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(run_dir))


def tune_distribution(distribution: Distribution):
    """The Tune search-space object of one ``space:`` entry."""
    from ray import tune

    kind, values = distribution.kind, getattr(distribution, distribution.kind)
    if kind == "grid":
        return tune.grid_search(list(values))
    if kind == "randint":
        return tune.randint(values[0], values[1] + 1)
    if kind == "choice":
        return tune.choice(list(values))
    return {"uniform": tune.uniform, "loguniform": tune.loguniform}[kind](*values)


SEARCH_PACKAGES = {"optuna": "optuna", "hyperopt": "hyperopt"}  # search.algorithm -> the package it needs


def _search_algorithm(sweep: SweepConfig):
    """The Tune searcher of ``search.algorithm``, seeded with ``search.seed`` (so a sweep draws the
    same trials when run again) and running at most ``search.max_concurrent`` trials at once."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    algorithm, seed, at_once = sweep.search.algorithm, sweep.search.seed, sweep.search.max_concurrent
    if algorithm in ("random", "grid"):
        return BasicVariantGenerator(random_state=seed, max_concurrent=at_once)
    package = SEARCH_PACKAGES[algorithm]
    if importlib.util.find_spec(package) is None:
        raise UserError(f"search algorithm {algorithm!r} needs its package: pip install {package} (or the "
                        "project's 'search' extra)")
    if algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(seed=seed), max_concurrent=at_once)
    from ray.tune.search.hyperopt import HyperOptSearch

    return ConcurrencyLimiter(HyperOptSearch(random_state_seed=seed), max_concurrent=at_once)


def _scheduler(sweep: SweepConfig):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if sweep.scheduler.kind == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(max_t=max(sweep.max_reports(), sweep.scheduler.grace_period),
                         grace_period=sweep.scheduler.grace_period,
                         reduction_factor=sweep.scheduler.reduction_factor)


def _first_line(error: BaseException | None) -> str:
    lines = [line for line in str(error or "").splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else ""


def trial_draws(metrics: dict) -> np.ndarray | None:
    """The metric draws a trial reported (None when it reported none, or its metric has no spread)."""
    return draws_from_json(metrics.get(DRAWS))


def results_table(grid, sweep: SweepConfig) -> pd.DataFrame:
    """One row per trial (labelled by its position in ``grid``): hyper-parameters, the metric and its spread,
    the designs' distance from the training rows, the oracle (reporting only), status, error."""
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        draws = trial_draws(metrics)
        row = {"trial": metrics.get("trial_id", ""), **{k: result.config.get(k) for k in sweep.space},
               METRIC: metrics.get(METRIC), "selection_spread": None if draws is None else float(draws.std()),
               "design_distance": metrics.get("design_distance"), "reports": metrics.get("training_iteration"),
               "oracle_p100_reporting_only": metrics.get("oracle_p100_reporting_only"),
               "oracle_p50_reporting_only": metrics.get("oracle_p50_reporting_only"),
               "status": "error" if result.error else ("stopped early" if metrics.get("step") != (
                   result.config.get("steps") or sweep.base_config().steps) else "completed"),
               "error": _first_line(result.error)}
        rows.append(row)
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame, grid, sweep: SweepConfig) -> Choice | None:
    """``choose_trial`` among the completed trials with a metric; adds the columns ``margin_sd`` (the
    metric's best over this trial, in sd of their paired draws), ``tied`` and ``chosen`` to ``table``."""
    done = table[(table.status == "completed") & table[METRIC].notna()]
    table["margin_sd"], table["tied"], table["chosen"] = np.nan, False, False
    if done.empty:
        return None
    draws = {label: trial_draws(grid[label].metrics or {}) for label in done.index}
    defaults = sweep.base_config().model_dump()
    changed = settings_changed(done, list(sweep.space), defaults)
    choice = choose_trial(done, METRIC, draws, changed, done.design_distance.astype(float), sweep.tie_margin,
                          sweep.tie_break)
    for label, margin in choice.margins.items():
        table.loc[label, "margin_sd"] = margin
    table.loc[choice.tied, "tied"] = True
    table.loc[choice.chosen, "chosen"] = True
    return choice


def chosen_against_completed(table: pd.DataFrame) -> str | None:
    """One line for the report: the chosen trial's (the completed trial with the best metric, whose outputs
    go to ``best/``) oracle 100th percentile (reporting only) against the median over the completed trials;
    None when no completed trial has a metric and an oracle score."""
    done = table[(table.status == "completed") & table.oracle_p100_reporting_only.notna() & table[METRIC].notna()]
    if done.empty or not done.chosen.any():
        return None
    chosen = done[done.chosen].iloc[0]
    p100, median = chosen.oracle_p100_reporting_only, float(done.oracle_p100_reporting_only.median())
    verdict = "at or above" if p100 >= median else "below"
    return (f"chosen trial {chosen.trial}: oracle 100th percentile {p100:.3f} (reporting only), {verdict} the median "
            f"{median:.3f} of the {len(done)} completed trials")


@dataclass
class SweepOutcome:
    """What ``run_sweep`` leaves: the table, where it wrote it, the best trial's fetched outputs, and
    the trials that failed (``failure`` says why the sweep as a whole failed, None when it did not)."""

    table: pd.DataFrame
    out_dir: Path
    experiment: str
    best_dir: Path | None
    failure: str | None
    choice: Choice | None = None


def experiment_location(storage: str, name: str) -> str:
    """``storage``/``name``: a URI (s3://, gs://, ...) joined with '/', or an absolute local path."""
    if "://" in storage:
        return storage.rstrip("/") + "/" + name
    return str(Path(storage).expanduser().resolve() / name)


def stop_hint(experiment: str) -> str:
    """What a user who stopped the sweep can do next: resume once Tune has written the experiment at
    ``experiment``; before that (Ray starting, embedding, the metric's fit) there is nothing to resume."""
    from ray import tune

    try:
        started = tune.Tuner.can_restore(experiment)
    except OSError:  # storage unreachable: say what resuming needs
        started = True
    if started:
        return "the trials' results so far are kept with the experiment: continue it with the same command and --resume"
    return "no trial had started, so there is nothing to resume: run the same command again"


def failure_summary(table: pd.DataFrame) -> str | None:
    """None when every trial ran (completed or stopped early by the scheduler); else what failed."""
    errored = table[table.status == "error"]
    finished = table[table.status != "error"]
    if errored.empty and not finished.empty:
        return None
    reasons = errored.error.value_counts()
    lines = [f"{len(errored)} of {len(table)} trials failed" if len(table) else "no trial ran"]
    lines += [f"  {count} x {reason}" for reason, count in reasons.items()]
    if errored.error.str.contains("storage_path", regex=False).any():
        lines.append("  (trials on other nodes cannot reach the storage: pass --storage with a URI or shared "
                     "folder that every node sees, e.g. s3://bucket/sweeps or an NFS mount)")
    return "\n".join(lines)


def run_sweep(sweep: SweepConfig, settings: RaySettings, out: Path, resume: bool = False,
              progress: bool = False, storage: str | None = None) -> SweepOutcome:
    """Run (or resume) the sweep; Tune keeps the experiment and each trial's outputs (a checkpoint)
    under ``storage``/<name> (default ``out``, fine on one node); the table and the best trial's
    checkpoint, fetched with ``Checkpoint.to_directory``, go to ``out``/<name>."""
    from ray import tune

    from bib_ray.distributed.runtime import connect

    experiment = experiment_location(storage or str(out), sweep.name)
    out_dir = out.expanduser().resolve() / sweep.name
    connect(settings.address)
    if resume and not tune.Tuner.can_restore(experiment):
        raise UserError(f"nothing to resume at {experiment}")
    if not resume and tune.Tuner.can_restore(experiment):
        raise UserError(f"{experiment} holds a sweep already: pass --resume to continue it or choose another "
                        f"--out / --storage")
    base = sweep.base_config()
    task = base.load_task()
    note = beyond_radius_note(task, sweep.edit_limits())
    if note is not None:
        print(note, file=sys.stderr, flush=True)
    sweep = sweep.resolved_for(task.alphabet)
    train, holdout = split_offline(task, sweep.holdout_fraction) if needs_split(sweep.metric) else (task, None)
    needs = METRICS[sweep.metric].needs_embeddings
    prepared = prepare(sweep, train, holdout, settings, progress, needs)
    metric = fit_metric(sweep, train, holdout, prepared)
    request_trial_resources(sweep)
    trainable = tune.with_resources(tune.with_parameters(run_trial, sweep=sweep, train_task=train, prepared=prepared,
                                                         metric=metric),
                                    {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu})
    if resume:
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={name: tune_distribution(distribution) for name, distribution in sweep.space.items()},
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=sweep.search.num_samples,
                                        search_alg=_search_algorithm(sweep), scheduler=_scheduler(sweep)),
            run_config=tune.RunConfig(name=sweep.name, storage_path=storage_root(storage or str(out)),
                                      failure_config=tune.FailureConfig(max_failures=sweep.trial_retries),
                                      verbose=1 if progress else 0))
    with graceful_stop() as stops:
        grid = tuner.fit()
    if stops:
        raise Stopped(stops[0])
    table = results_table(grid, sweep)
    choice = choose(table, grid, sweep)
    table = table.sort_values(METRIC, ascending=False, na_position="last")
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "sweep_results.csv", index=False)
    best_dir = None
    if choice is not None and grid[choice.chosen].checkpoint is not None:
        best_dir = out_dir / "best"
        if best_dir.exists():
            shutil.rmtree(best_dir)
        grid[choice.chosen].checkpoint.to_directory(str(best_dir))
    return SweepOutcome(table, out_dir, experiment, best_dir, failure_summary(table), choice)


@contextmanager
def graceful_stop():
    """While a sweep runs: the first SIGTERM or SIGINT asks Tune to stop gracefully (SIGUSR1: it saves the
    experiment's state, so ``--resume`` continues it) and is recorded in the list this yields; a second
    one stops at once. Tune's own SIGINT handler is off meanwhile, so both signals behave alike."""
    stops: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield stops
        return

    def stop(signum: int, _frame) -> None:
        if stops:
            raise Stopped(signum)
        stops.append(signum)
        os.kill(os.getpid(), signal.SIGUSR1)

    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    disabled = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    try:
        yield stops
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if disabled is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER")
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = disabled


def request_trial_resources(sweep: SweepConfig) -> None:
    """Ask the autoscaler for ``max_concurrent`` trials' resources, so a ``ray up`` cluster scales to them."""
    from ray.autoscaler.sdk import request_resources

    bundle = {"CPU": sweep.resources.cpu, **({"GPU": sweep.resources.gpu} if sweep.resources.gpu > 0 else {})}
    request_resources(bundles=[bundle] * sweep.search.max_concurrent)


def storage_root(storage: str) -> str:
    """Tune's ``storage_path``: the URI as given, or a local folder as an absolute path."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())
