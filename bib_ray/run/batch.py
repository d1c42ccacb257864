"""The batch to order: N sequences chosen from everything the run's trajectories passed through.

Candidates: each trajectory's design decoded under the support constraints at ``checkpoints`` points
along the trajectory and at its end (for ``evolution``: its population at those rounds and at the
end), pooled over the run's seeds. Dropped: duplicates, the offline sequences (and the wild type),
and the task's excluded sequences (``--exclude``). Each remaining candidate is scored by the proxy
and by its seed's auxiliary ensemble (M members); over those M + 1 predictions (label units)

    bound = mean - kappa * std

is what the run believes of it with some safety. The batch is chosen greedily by the bound: a
candidate joins unless it lies within ``min_distance - 1`` substitutions of a chosen design or its
start already has ``per_start`` designs in the batch. Fewer than N come out when the candidates run
out (``BatchResult.summary["short_by"]``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from bib_ray.core.optimizer import TrajectoryResult
from bib_ray.tasks.base import Task
from bib_ray.tasks.evaluation import evaluate_with_oracle, nearest_hamming

#: chosen on seeds 5-7 of the batch benchmark (``python -m bib_ray.bench.batch --grid``; docs/batch.md): of 192
#: settings, these met the target on the most task x backbone rows (16 of 18), then had the largest margins
DEFAULT_KAPPA = 0.5
DEFAULT_MIN_DISTANCE = 1
DEFAULT_PER_START = 4
DEFAULT_CHECKPOINTS = 9


@dataclass(frozen=True)
class BatchSettings:
    """A batch of ``size`` designs; the bound's ``kappa``, the diversity rule (``min_distance`` between
    chosen designs, at most ``per_start`` per starting sequence, None: no cap) and the ``checkpoints``
    along each trajectory whose designs join the candidates."""

    size: int
    kappa: float = DEFAULT_KAPPA
    min_distance: int = DEFAULT_MIN_DISTANCE
    per_start: int | None = DEFAULT_PER_START
    checkpoints: int = DEFAULT_CHECKPOINTS

    def __post_init__(self) -> None:
        if self.size < 1 or self.kappa < 0 or self.min_distance < 1 or self.checkpoints < 0:
            raise ValueError("size >= 1, kappa >= 0, min_distance >= 1 and checkpoints >= 0")
        if self.per_start is not None and self.per_start < 1:
            raise ValueError("per_start must be >= 1 (or None)")

    def checkpoint_steps(self, steps: int) -> tuple[int, ...]:
        """The 1-based steps (or rounds) before the last whose designs are candidates: ``checkpoints``
        evenly spaced points of ``steps``."""
        return tuple(sorted({round(steps * i / (self.checkpoints + 1)) for i in range(1, self.checkpoints + 1)}
                            - {0, steps}))


@dataclass
class CandidatePool:
    """Candidate designs (P, L) with, per row, the start (P, L), seed index, trajectory and step they came from."""

    codes: np.ndarray
    starts: np.ndarray
    seed_index: np.ndarray
    trajectory: np.ndarray
    step: np.ndarray

    @classmethod
    def of(cls, parts: list[tuple[int, int, np.ndarray, np.ndarray]]) -> "CandidatePool":
        """From (seed index, step, designs (B, L), starts (B, L)) parts."""
        return cls(codes=np.concatenate([codes for _, _, codes, _ in parts]),
                   starts=np.concatenate([starts for _, _, _, starts in parts]),
                   seed_index=np.concatenate([np.full(len(codes), seed) for seed, _, codes, _ in parts]),
                   trajectory=np.concatenate([np.arange(len(codes)) for _, _, codes, _ in parts]),
                   step=np.concatenate([np.full(len(codes), step) for _, step, codes, _ in parts]))

    def __len__(self) -> int:
        return len(self.codes)

    def subset(self, rows: np.ndarray) -> "CandidatePool":
        return CandidatePool(self.codes[rows], self.starts[rows], self.seed_index[rows], self.trajectory[rows],
                             self.step[rows])


@dataclass
class ScoredCandidates:
    """The candidates left after dropping known and excluded sequences, each seed's distinct ones once,
    with their proxy and aux scores (label units), and how many the pool had at each stage (``counts``)."""

    pool: CandidatePool
    scores: dict[str, np.ndarray]
    counts: dict[str, int]

    def at_steps(self, steps: set[int]) -> "ScoredCandidates":
        """Only the candidates from these steps (the end included if it is among them)."""
        rows = np.flatnonzero(np.isin(self.pool.step, sorted(steps)))
        return ScoredCandidates(self.pool.subset(rows), {k: v[rows] for k, v in self.scores.items()}, self.counts)


@dataclass
class BatchResult:
    """The batch (one row per chosen design, best bound first), what the run records of it, and the
    scored candidates it was chosen from."""

    table: pd.DataFrame
    summary: dict
    candidates: ScoredCandidates


def lower_bound(proxy: np.ndarray, aux_mean: np.ndarray, aux_std: np.ndarray, members: int,
                kappa: float) -> np.ndarray:
    """mean - kappa * std over M + 1 predictions: the proxy's and the M aux members' (whose mean and
    sample std are ``aux_mean``, ``aux_std``); the std is the sample std of the M + 1."""
    mean = (proxy + members * aux_mean) / (members + 1)
    spread = ((members - 1) * aux_std ** 2 + members * (aux_mean - mean) ** 2 + (proxy - mean) ** 2) / members
    return mean - kappa * np.sqrt(spread)


def _rows_in(codes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(P,) bool: whether each row of ``codes`` is a row of ``known``."""
    if not len(known):
        return np.zeros(len(codes), dtype=bool)
    seen = {row.tobytes() for row in np.ascontiguousarray(known, dtype=np.int64)}
    return np.array([row.tobytes() in seen for row in np.ascontiguousarray(codes, dtype=np.int64)], dtype=bool)


def first_of_each(codes: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the first row of each distinct (key, codes) (within each key when ``keys`` is given)."""
    rows = codes if keys is None else np.concatenate([keys[:, None], codes], axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    return np.sort(first)


def greedy(codes: np.ndarray, starts: np.ndarray, bound: np.ndarray, settings: BatchSettings) -> list[int]:
    """Rows chosen in order of ``bound``, each at least ``min_distance`` from every row chosen before and
    within its start's ``per_start`` cap, until ``size`` are chosen or none is left."""
    chosen: list[int] = []
    per_start: dict[bytes, int] = {}
    for row in np.argsort(-bound, kind="stable"):
        key = starts[row].tobytes()
        if settings.per_start is not None and per_start.get(key, 0) >= settings.per_start:
            continue
        if settings.min_distance > 1 and chosen and \
                (codes[chosen] != codes[row]).sum(1).min() < settings.min_distance:
            continue
        chosen.append(int(row))
        per_start[key] = per_start.get(key, 0) + 1
        if len(chosen) == settings.size:
            break
    return chosen


def known_sequences(task: Task) -> np.ndarray:
    """The sequences a batch must not contain: the offline rows and the wild type (both measured)."""
    known = task.x if task.wild_type is None else np.concatenate([task.x, task.wild_type[None]])
    return known.astype(np.int64)


def batch_table(task: Task, pool: CandidatePool, seeds: list[int], scores: dict[str, np.ndarray],
                bound: np.ndarray, chosen: list[int]) -> tuple[pd.DataFrame, dict | None]:
    """The batch's rows (rank order) and, on an oracle task, the oracle's summary of them."""
    picked = pool.subset(np.asarray(chosen, dtype=np.int64))
    table = pd.DataFrame({
        "rank": np.arange(1, len(chosen) + 1), "sequence": task.sequences(picked.codes),
        "mutations": task.mutations(picked.codes, picked.starts), "start_sequence": task.sequences(picked.starts),
        "seed": np.asarray(seeds)[picked.seed_index], "trajectory": picked.trajectory, "step": picked.step,
        **{key: values[chosen] for key, values in scores.items()}, "bound": bound[chosen],
        "hamming_to_start": (picked.codes != picked.starts).sum(1),
        "hamming_to_offline": nearest_hamming(picked.codes, task.x)})
    evaluation = evaluate_with_oracle(task, picked.codes) if len(chosen) else None
    if evaluation is None:
        return table, None
    table["oracle_score"] = evaluation.scores
    table["oracle_status"] = evaluation.status
    table["normalised_score"] = evaluation.normalised
    return table, evaluation.summary


def batch_summary(settings: BatchSettings, counts: dict[str, int], oracle: dict | None) -> dict:
    """The settings, how the candidates were whittled down, and the oracle's percentiles of the batch."""
    return {"settings": asdict(settings), "bound": "mean - kappa * std over the proxy and the aux members",
            **counts, "short_by": settings.size - counts["chosen"], "oracle": oracle}


def pool_parts(trajectory: TrajectoryResult, checkpoints: list[tuple[int, np.ndarray, np.ndarray]], seed_index: int,
               final_step: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """One seed's candidates: its (step, designs, starts) checkpoints and its final designs."""
    return [(seed_index, step, codes, starts) for step, codes, starts in checkpoints] + \
        [(seed_index, final_step, trajectory.final_codes, trajectory.start_codes)]


def score_candidates(task: Task, seeds: list[int], executor, fitted, auxes: list, pool: CandidatePool,
                     batch_size: int) -> ScoredCandidates:
    """Drop the known (``known_sequences``) and excluded candidates and each seed's repeats, and score the
    rest on ``executor`` with the proxy and each seed's aux ensemble (``auxes``)."""
    distinct = first_of_each(pool.codes)
    offline = _rows_in(pool.codes[distinct], known_sequences(task))
    excluded = _rows_in(pool.codes[distinct], task.excluded) if task.excluded is not None else np.zeros_like(offline)
    counts = {"candidates": len(pool), "distinct": len(distinct), "offline_dropped": int(offline.sum()),
              "excluded_dropped": int((excluded & ~offline).sum())}
    dropped = pool.codes[distinct][offline | excluded]
    pool = pool.subset(first_of_each(pool.codes, pool.seed_index))  # each seed scores its own candidates once
    pool = pool.subset(np.flatnonzero(~_rows_in(pool.codes, dropped)))
    rows = [np.flatnonzero(pool.seed_index == index) for index in range(len(seeds))]
    busy = [index for index, seed_rows in enumerate(rows) if len(seed_rows)]
    scored = executor.score(fitted, [auxes[i] for i in busy], [pool.codes[rows[i]] for i in busy], batch_size) \
        if busy else []
    scores = {key: np.empty(len(pool)) for key in ("proxy_score", "aux_mean", "aux_std")}
    for index, part in zip(busy, scored):
        for key in scores:
            scores[key][rows[index]] = part[key]
    return ScoredCandidates(pool, scores, counts)


def select_batch(candidates: ScoredCandidates, settings: BatchSettings, task: Task, seeds: list[int],
                 members: int) -> BatchResult:
    """The batch from scored candidates: by the bound (aux ensembles of ``members`` members), greedily
    under the diversity rule; a sequence several seeds reached counts once, as its best-bound copy."""
    pool, scores = candidates.pool, candidates.scores
    bound = lower_bound(scores["proxy_score"], scores["aux_mean"], scores["aux_std"], members, settings.kappa)
    best_copy = np.zeros(len(pool), dtype=bool)
    order = np.argsort(-bound, kind="stable")
    best_copy[order[first_of_each(pool.codes[order])]] = True
    kept = np.flatnonzero(best_copy)
    chosen = kept[greedy(pool.codes[kept], pool.starts[kept], bound[kept], settings)].tolist()
    table, oracle = batch_table(task, pool, seeds, scores, bound, chosen)
    return BatchResult(table, batch_summary(settings, {**candidates.counts, "chosen": len(chosen)}, oracle),
                       candidates)


def choose_batch(settings: BatchSettings, task: Task, seeds: list[int], executor, fitted, auxes: list,
                 pool: CandidatePool, members: int, batch_size: int) -> BatchResult:
    """The batch from ``pool`` (see the module docstring): candidates scored on ``executor``
    (``score_candidates``), then chosen (``select_batch``)."""
    return select_batch(score_candidates(task, seeds, executor, fitted, auxes, pool, batch_size), settings, task,
                        seeds, members)
