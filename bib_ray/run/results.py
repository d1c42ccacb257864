"""What a design run leaves: per seed the trajectories, the aux ensemble and the design table; for the
run its config, the fitted proxy and the wall time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.optimizer import TrajectoryResult
from bib_ray.proxy.fitting import FittedProxy
from bib_ray.run.batch import BatchResult
from bib_ray.run.config import DesignConfig
from bib_ray.tasks.base import Task
from bib_ray.tasks.evaluation import evaluate_with_oracle, novelty


@dataclass
class SeedResult:
    seed: int
    trajectory: TrajectoryResult
    aux: AuxiliaryEnsemble
    aux_metrics: dict
    designs: pd.DataFrame
    oracle_summary: dict | None
    timings: dict[str, float]


@dataclass
class DesignRun:
    config: DesignConfig
    fitted: FittedProxy
    seeds: list[SeedResult]
    total_s: float
    batch: BatchResult | None = None

    @property
    def designs(self) -> pd.DataFrame:
        return pd.concat([result.designs for result in self.seeds], ignore_index=True)


def design_table(task: Task, seed: int, trajectory: TrajectoryResult,
                 scores: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict | None]:
    """One row per final design: sequence, mutations (from the wild type, else the start), proxy/aux
    ``scores`` (``score_codes``), oracle scores, novelty; and the oracle's summary of the designs (None
    without an oracle)."""
    final, start = trajectory.final_codes, trajectory.start_codes
    table = pd.DataFrame({"seed": seed, "design": np.arange(len(final)), "sequence": task.sequences(final),
                          "mutations": task.mutations(final, start), "start_sequence": task.sequences(start)})
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
