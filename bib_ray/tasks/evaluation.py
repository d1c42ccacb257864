"""Scoring designs against a task's oracle: normalised percentiles and novelty.

Every percentile (100th = max, 50th = median) is reported twice:

- ``p100`` / ``p50``: over all designs, each design the oracle cannot score (UNKNOWN or
  INFEASIBLE) counted at the task's minimum score (normalised 0). A method that leaves the
  data's support pays for it here.
- ``p100_scored`` / ``p50_scored``: over the designs the oracle could score: OK designs, plus
  infeasible ones at the task's ``infeasible_score`` when the task defines one. UNKNOWN designs
  are excluded and counted; NaN when nothing was scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bib_ray.tasks.base import DesignStatus, Task


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: Pearson correlation of the (average-tie) ranks of ``a`` and ``b``."""
    import pandas as pd

    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance between equally shaped code arrays (B, L)."""
    return (np.asarray(a) != np.asarray(b)).sum(1)


def nearest_hamming(designs: np.ndarray, reference: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each design, the Hamming distance to its nearest row of ``reference`` (N, L)."""
    best = np.full(designs.shape[0], designs.shape[1], dtype=np.int64)
    for start in range(0, reference.shape[0], chunk):
        block = reference[start:start + chunk]
        distances = (designs[:, None, :] != block[None, :, :]).sum(-1)
        best = np.minimum(best, distances.min(1))
    return best


@dataclass
class OracleEvaluation:
    """Per-design oracle outcome and the percentile summary of one batch of designs."""

    scores: np.ndarray  # raw oracle score, NaN unless OK
    status: np.ndarray
    normalised: np.ndarray  # NaN unless OK
    summary: dict


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    return float(np.max(values)), float(np.percentile(values, 50))


def evaluate_with_oracle(task: Task, codes: np.ndarray) -> OracleEvaluation | None:
    """Oracle scores of ``codes`` (B, L) and their percentiles, over all designs (unscorable ones at
    the task's minimum) and over the scored ones; None when the task has no oracle."""
    if task.oracle is None:
        return None
    result = task.oracle(codes)
    status = np.asarray(result.status)
    ok = status == DesignStatus.OK.value
    infeasible = status == DesignStatus.INFEASIBLE.value
    counted = result.scores[ok]
    if task.infeasible_score is not None:
        counted = np.concatenate([counted, np.full(int(infeasible.sum()), task.infeasible_score)])
    p100_scored, p50_scored = _percentiles(counted)
    p100, p50 = _percentiles(np.where(ok, result.scores, task.score_range[0]))
    summary = {
        "p100_raw": p100, "p50_raw": p50,
        "p100": float(task.normalise(p100)), "p50": float(task.normalise(p50)),
        "p100_scored_raw": p100_scored, "p50_scored_raw": p50_scored,
        "p100_scored": float(task.normalise(p100_scored)), "p50_scored": float(task.normalise(p50_scored)),
        "designs": int(len(codes)), "ok": int(ok.sum()),
        "unknown": int((status == DesignStatus.UNKNOWN.value).sum()), "infeasible": int(infeasible.sum()),
    }
    normalised = np.where(ok, task.normalise(np.where(ok, result.scores, 0.0)), np.nan)
    return OracleEvaluation(result.scores, status, normalised, summary)


def oracle_trace(task: Task, step_codes: np.ndarray, points: int = 20) -> dict[str, np.ndarray] | None:
    """Oracle percentiles of the argmax designs along a run, at about ``points`` evenly spaced steps
    (always the last): ``step_codes`` (steps, B, L) -> {"step" (1-based), "p100", "p50"} over all
    designs (unscorable at the task's minimum, see ``evaluate_with_oracle``); None without an oracle."""
    if task.oracle is None:
        return None
    total = step_codes.shape[0]
    every = max(1, total // points)
    steps = np.unique(np.append(np.arange(every - 1, total, every), total - 1))
    summaries = [evaluate_with_oracle(task, step_codes[s].astype(np.int64)).summary for s in steps]
    return {"step": steps + 1, "p100": np.array([s["p100"] for s in summaries]),
            "p50": np.array([s["p50"] for s in summaries])}


def novelty(task: Task, start_codes: np.ndarray, final_codes: np.ndarray) -> dict[str, np.ndarray]:
    """Hamming distance of each design to its seed and to the nearest offline sequence."""
    return {"hamming_to_start": hamming(final_codes, start_codes),
            "hamming_to_offline": nearest_hamming(final_codes, task.x)}
