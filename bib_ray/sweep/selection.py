"""Offline model selection: metrics that rank a sweep's configurations without the oracle.

A sweep runs one design per configuration (a *trial*) and must say which configuration to
trust. Every metric here scores a trial from offline data only:

- ``SelectionData``: the rows the trials were fitted on (``train``), rows held out from every
  trial (``held``: a fixed random split, see ``split_offline``) and, per backbone, those rows'
  embeddings when a metric needs them;
- ``Candidate``: one trial's final designs and its own fitted models (proxy, aux ensemble, LM).

Neither holds a ``Task``, so no metric can reach an oracle. A metric is fitted once per sweep
(``fit``: train its evaluators on ``SelectionData``) and then scores each trial (``score``:
higher is better). The metrics (``METRICS``; the sweep YAML's ``metric:``):

- ``holdout``: mean score of the designs under an MLP ensemble trained on the held-out rows in
  the trial's own embedding space (the sweep's metric before issue 13; each backbone is judged
  by a different evaluator, trained with the aux ensemble's settings).
- ``aux``: mean score of the designs under the trial's own aux ensemble (trained on ``train``).
- ``pessimistic``: mean over designs of mu - k * s * sigma under one evaluator shared by every
  trial: a bootstrap ensemble of MLPs on one-hot sequences, trained on all held-out rows, whose
  spread sigma is recalibrated by the factor s that makes the z-scores of a calibration slice
  of unit variance (variance scaling, Levi et al. 2022; pessimism as in MOPO, Yu et al. 2020,
  and COMs, Trabucco et al. 2021).
- ``pessimistic-top``: the same per-design lower bound, averaged over the best ``top_designs``
  fraction of the designs (an offline stand-in for the 100th percentile).
- ``expected-max`` (the default): the expected best design of the trial, E_m[max_b f_m(x_b)] over the
  members m of a calibrated one-hot MLP ensemble (16 members; spread widened by s as above) trained on
  every offline row, the training split included: an offline stand-in for the 100th percentile that
  rewards a batch for holding at least one design the evaluator rates highly or is unsure about (the
  expected maximum of Thompson samples; cf. batch expected improvement, Ginsbourger et al. 2010). With
  the 5 members it had before issue 23 its pick was mostly the members' noise; with 16 and the radius
  rule below it had the lowest regret of the candidates on each held-aside split (docs/selection.md).
- ``mean-top``: the mean prediction mu(x) = E_m[f_m(x)] of the same kind of ensemble, averaged over the
  trial's best ``top_designs`` fraction of designs; no spread enters the score (the default during
  issue 23).
- ``gp-max``: the expected best design E[max_b f(x_b)] under the joint posterior of a Gaussian process
  with the exponentiated Hamming kernel on every offline row (``bib_ray.sweep.gp_evaluator``:
  hyper-parameters by marginal likelihood, spread calibrated by variance scaling). Unlike the MLP
  ensembles, its uncertainty grows with the distance from the data and its mean returns to the
  data's mean there, so designs far from every row are scored as unknown, not extrapolated.
- ``gp-lcb``: the same posterior's lower bound mu - k * sigma per design, averaged over the best
  ``top_designs`` fraction of the designs (pessimism that grows with the distance from the data).
- ``proxy-rank``: Spearman correlation of the trial's proxy with the labels of the held-out
  rows (rank-based model validation, Tan et al. 2025).
- ``top-rank``: validation on the top of the data: the trial's proxy is refitted without the best
  ``top_rows`` fraction of its training rows (a closed-form downdate of its statistics) and
  scored by the Spearman correlation of its predictions with the labels over those rows and the
  held-out rows, i.e. whether it ranks better sequences than it has seen at the top (the
  extrapolation split of Beckham et al. 2024; PRIME's held-out-top validation, Kumar et al. 2022).
- ``agreement``: three evaluators of different kinds (additive ridge, MLP ensemble, Hamming
  nearest neighbours) each trained on its own third of the held-out rows; the trial scores the
  mean of their mean design scores minus their spread (Beckham et al. 2024's agreement, across
  independently trained evaluators).

The one-hot ensembles (``pessimistic``, ``pessimistic-top``, ``expected-max``, ``mean-top``) score a design
past the task's mutation radius (more substitutions from its reference than the offline rows reach;
``Task.mutation_radius``) as unknown: every member predicts the lowest label they were trained on, as a
benchmark's oracle scores it (``SelectionSettings.unknown_past_radius``). An MLP fitted on singles and
doubles only extrapolates to triples, and rated them above every design inside the radius (issue 23).

References:
    D. Ginsbourger, R. Le Riche, L. Carraro. Kriging is well-suited to parallelize optimization.
    Computational Intelligence in Expensive Optimization Problems, 2010.
    Y. Yu et al. MOPO: Model-based Offline Policy Optimization. NeurIPS 2020.
    B. Trabucco, A. Kumar, X. Geng, S. Levine. Conservative Objective Models for Effective
    Offline Model-Based Optimization. ICML 2021.
    D. Levi, L. Gispan, N. Giladi, E. Fetaya. Evaluating and Calibrating Uncertainty Prediction in
    Regression Tasks. Sensors 2022.
    A. Kumar, A. Yazdanbakhsh, M. Hashemi, K. Swersky, S. Levine. Data-Driven Offline Optimization
    for Architecting Hardware Accelerators (PRIME). ICLR 2022.
    C. Beckham, A. Piche, D. Vazquez, C. Pal. Exploring validation metrics for offline model-based
    optimisation with diffusion models. TMLR 2024.
    R.-X. Tan et al. Offline Model-Based Optimization by Learning to Rank. ICLR 2025.
"""

from __future__ import annotations

import dataclasses
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings
from bib_ray.core.proxy import BidirectionalProxy, DesignProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.tasks.base import Task
from bib_ray.tasks.evaluation import spearman

HOLDOUT_SEED_OFFSET = 10_007  # the ``holdout`` evaluator's seed is the trial seed plus this


def split_offline(task: Task, fraction: float) -> tuple[Task, Task]:
    """(train, held-out) split of the offline rows, fixed (seed 0) so every trial sees the same one.
    Copies of one sequence stay on the same side, so nothing held out is seen in training."""
    _, group = np.unique(task.x, axis=0, return_inverse=True)
    groups = np.random.default_rng(0).permutation(group.max() + 1)
    held_groups = groups[: int(round(len(groups) * fraction))]
    held = np.isin(group.reshape(-1), held_groups)
    return (dataclasses.replace(task, x=task.x[~held], y=task.y[~held]),
            dataclasses.replace(task, x=task.x[held], y=task.y[held]))


def standardised(labels: np.ndarray) -> np.ndarray:
    """(y - mean) / std as float64 (std 1 when the labels are constant)."""
    labels = np.asarray(labels, dtype=np.float64)
    std = float(labels.std())
    return (labels - labels.mean()) / (std if std > 0 else 1.0)


def past_radius(designs: np.ndarray, reference: np.ndarray | None, radius: int | None) -> np.ndarray:
    """(B,) bool: designs (B, L) with more than ``radius`` substitutions from ``reference`` (L,); none
    when there is no radius."""
    designs = np.asarray(designs)
    if radius is None:
        return np.zeros(len(designs), dtype=bool)
    return (designs != reference[None, :]).sum(1) > radius


def top_rows(y: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the best ``fraction`` of the rows by label (at least 2, leaving at least 2), sorted."""
    count = len(y)
    if count < 4:
        raise ValueError(f"top-of-data validation needs at least 4 training rows, got {count}")
    size = min(max(2, math.ceil(fraction * count)), count - 2)
    return np.sort(np.argsort(-np.asarray(y), kind="stable")[:size])


@dataclass(frozen=True)
class SelectionSettings:
    """Settings of the metrics' evaluators (shared by all metrics; each reads what it uses).

    Attributes:
        pessimism: k in mu - k * s * sigma (``pessimistic``, ``pessimistic-top``).
        top_designs: fraction of a trial's designs that ``mean-top``, ``pessimistic-top`` and ``gp-lcb``
            average (its best ones; 0.25: at 0.1 the best designs of every good trial sat at the evaluator's
            ceiling on TFBind8 and ``mean-top`` could not tell them apart, issue 23).
        top_rows: fraction of the training rows ``top-rank`` holds out from the refitted proxy.
        members: MLP ensemble members. hidden: their hidden width.
        train_steps: minibatch steps each evaluator trains for (at least one epoch).
        calibration: fraction of the held-out rows that calibrates the ensemble's spread.
        neighbours: k of the nearest-neighbour evaluator (``agreement``).
        gp_rows: rows the Gaussian process is fitted on at most (``gp-max``, ``gp-lcb``).
        draws: posterior samples (``gp-max``) and design resamples (bootstrap spreads).
        seed: seed of every evaluator and split here.
        unknown_past_radius: the one-hot ensembles score designs past the task's mutation radius as the
            lowest offline label (``OneHotEvaluator``); False: as their members extrapolate.
    """

    pessimism: float = 1.0
    top_designs: float = 0.25
    top_rows: float = 0.1
    members: int = 16
    hidden: int = 64
    train_steps: int = 1000
    calibration: float = 0.2
    neighbours: int = 5
    gp_rows: int = 2000
    draws: int = 256
    seed: int = 0
    unknown_past_radius: bool = True

    def __post_init__(self) -> None:
        if self.pessimism < 0:
            raise ValueError("pessimism must be >= 0")
        if not 0 < self.top_designs <= 1:
            raise ValueError("top_designs must be in (0, 1] (1: every design)")
        for name in ("top_rows", "calibration"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1)")
        if self.members < 2 or self.hidden < 1 or self.train_steps < 1 or self.neighbours < 1:
            raise ValueError("members must be >= 2 and hidden, train_steps, neighbours >= 1")
        if self.gp_rows < 4 or self.draws < 2:
            raise ValueError("gp_rows must be >= 4 and draws >= 2")
        if not isinstance(self.unknown_past_radius, bool):
            raise ValueError("unknown_past_radius must be true or false")


@dataclass(frozen=True)
class RowEmbeddings:
    """One backbone's embeddings of the held-out rows (H, d) and, for ``top-rank``, of the training
    split's top rows (T, d) (``top_rows(train_y, settings.top_rows)``)."""

    held: torch.Tensor
    top: torch.Tensor | None = None


@dataclass(frozen=True)
class SelectionData:
    """The offline data a metric may read: training rows, held-out rows (codes (N, L), raw labels
    (N,)), per backbone spec the ``RowEmbeddings`` the metrics that need them read, and the task's
    reference (L,) and mutation radius (the substitutions from it the offline rows reach), if any."""

    vocab_size: int
    train_x: np.ndarray
    train_y: np.ndarray
    held_x: np.ndarray
    held_y: np.ndarray
    embeddings: Mapping[str, RowEmbeddings] = field(default_factory=dict)
    reference: np.ndarray | None = None
    mutation_radius: int | None = None

    def __post_init__(self) -> None:
        if len(self.held_y) < 4:
            raise ValueError(f"offline model selection needs at least 4 held-out rows, got {len(self.held_y)}")
        if len(self.train_x) != len(self.train_y) or len(self.held_x) != len(self.held_y):
            raise ValueError("codes and labels must describe the same rows")
        if (self.reference is None) != (self.mutation_radius is None):
            raise ValueError("a mutation radius needs its reference, and a reference its radius")

    @classmethod
    def from_tasks(cls, train: Task, held: Task, embeddings: Mapping[str, RowEmbeddings] | None = None
                   ) -> "SelectionData":
        """The offline rows of a (train, held-out) split and the task's mutation radius; the tasks' oracles
        are not kept."""
        radius = train.mutation_radius
        return cls(len(train.alphabet), train.x, train.y, held.x, held.y, dict(embeddings or {}),
                   None if radius is None else train.reference, radius)

    def held_z(self) -> np.ndarray:
        """Held-out labels standardised by their own mean and std."""
        return standardised(self.held_y)

    def all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Codes and standardised labels of every offline row (training split, then held-out rows)."""
        return (np.concatenate([self.train_x, self.held_x]),
                standardised(np.concatenate([self.train_y, self.held_y])))

    def embeddings_of(self, backbone: str, metric: str) -> RowEmbeddings:
        if backbone not in self.embeddings:
            raise ValueError(f"metric {metric} needs the held-out rows embedded with backbone {backbone!r}")
        return self.embeddings[backbone]


@dataclass
class Candidate:
    """One trial as a metric sees it: its final designs (B, L) and its own models. ``embed`` maps
    codes (N, L) to the trial's LM embeddings (N, d) on the CPU; ``proxy`` and ``aux`` are the
    trial's fitted proxy and aux ensemble (None when the metric does not need them)."""

    designs: np.ndarray
    backbone: str
    proxy: DesignProxy | None = None
    aux: AuxiliaryEnsemble | None = None
    embed: Callable[[np.ndarray], torch.Tensor] | None = None

    def needs(self, name: str, metric: str):
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"metric {metric} needs the trial's {name}")
        return value


def one_hot(codes: np.ndarray, vocab_size: int) -> torch.Tensor:
    """codes (N, L) -> flattened one-hot features (N, L * V), float32."""
    return torch.nn.functional.one_hot(torch.as_tensor(np.asarray(codes), dtype=torch.long),
                                       vocab_size).flatten(1).float()


def fit_onehot_ensemble(codes: np.ndarray, z: np.ndarray, vocab_size: int, settings: SelectionSettings,
                        seed: int, members: int | None = None) -> AuxiliaryEnsemble:
    """A bootstrap ensemble of MLPs on raw one-hot features (no input scaling, so letters never seen
    at a position cannot blow up), trained for about ``settings.train_steps`` minibatch steps."""
    phi = one_hot(codes, vocab_size)
    batches = math.ceil(len(z) / 256)
    aux = AuxiliarySettings(members=members or settings.members, hidden=settings.hidden, batch_size=256,
                            epochs=max(1, math.ceil(settings.train_steps / batches)), max_rows=len(z))
    ensemble = AuxiliaryEnsemble(phi.shape[1], aux, seed, torch.zeros(phi.shape[1]), torch.ones(phi.shape[1]))
    ensemble.fit(phi, torch.as_tensor(z, dtype=torch.float32))
    return ensemble


def spread_scale(members: np.ndarray, z: np.ndarray) -> float:
    """Variance scaling: s with mean(((z - mu) / (s sigma))^2) = 1 for member predictions (M, N) of
    labels z (N,), so that s * sigma is calibrated on these rows."""
    mean, sigma = members.mean(0), np.maximum(members.std(0), 1e-6)
    return float(np.sqrt(np.mean(((z - mean) / sigma) ** 2)))


def fit_calibrated_ensemble(codes: np.ndarray, z: np.ndarray, vocab_size: int, settings: SelectionSettings
                            ) -> tuple[AuxiliaryEnsemble, float]:
    """A one-hot MLP ensemble on all rows and its spread scale s (``spread_scale``), measured by a
    probe ensemble fitted without a ``settings.calibration`` slice of the rows, on that slice."""
    order = np.random.default_rng(settings.seed).permutation(len(z))
    calibration = max(2, int(round(settings.calibration * len(z))))
    fit_rows, check_rows = order[calibration:], order[:calibration]
    probe = fit_onehot_ensemble(codes[fit_rows], z[fit_rows], vocab_size, settings, settings.seed)
    with torch.no_grad():
        scale = spread_scale(member_predictions(probe, codes[check_rows], vocab_size), z[check_rows])
    return fit_onehot_ensemble(codes, z, vocab_size, settings, settings.seed + 1), scale


def hamming_neighbours_mean(designs: np.ndarray, rows: np.ndarray, z: np.ndarray, k: int,
                            chunk: int = 2048) -> np.ndarray:
    """For each design, the mean label of the rows at most as far (Hamming) as its k-th nearest row
    (ties included, so the answer does not depend on row order)."""
    designs, rows = np.asarray(designs), np.asarray(rows)
    distances = np.concatenate([(designs[:, None, :] != rows[None, start:start + chunk, :]).sum(-1)
                                for start in range(0, len(rows), chunk)], axis=1)
    k = min(k, distances.shape[1])
    radius = np.partition(distances, k - 1, axis=1)[:, k - 1:k]
    within = distances <= radius
    return (within * z[None, :]).sum(1) / within.sum(1)


def additive_ridge(codes: np.ndarray, z: np.ndarray, vocab_size: int, penalty: float = 1.0
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """Ridge regression on one-hot features (the additive site model) -> codes (N, L) -> predictions."""
    phi = one_hot(codes, vocab_size).double()
    mean_phi, mean_z = phi.mean(0), float(z.mean())
    centred = phi - mean_phi
    gram = centred.T @ centred + penalty * torch.eye(phi.shape[1], dtype=torch.float64)
    weights = torch.linalg.solve(gram, centred.T @ torch.as_tensor(z - mean_z, dtype=torch.float64))

    def predict(x: np.ndarray) -> np.ndarray:
        return ((one_hot(x, vocab_size).double() - mean_phi) @ weights + mean_z).numpy()

    return predict


def rank_correlation(prediction: np.ndarray, labels: np.ndarray) -> float:
    """Spearman's rho; 0 (no information) when either side is constant."""
    prediction, labels = np.asarray(prediction, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if np.ptp(prediction) == 0 or np.ptp(labels) == 0:
        return 0.0
    value = spearman(prediction, labels)
    return 0.0 if math.isnan(value) else value


class SelectionMetric(ABC):
    """Scores trials from offline data: ``fit`` once per sweep on ``SelectionData``, then ``score``
    each trial's ``Candidate`` (higher is better). ``needs_embeddings``: which ``RowEmbeddings`` the
    data must carry for each backbone ("held", "top"); the others need only codes and labels.
    ``reads_trial``: whether ``score`` reads the trial's models (proxy, aux, embedding) or only its
    designs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    needs_embeddings: ClassVar[frozenset[str]] = frozenset()
    reads_trial: ClassVar[bool] = False

    def __init__(self, settings: SelectionSettings | None = None) -> None:
        self.settings = settings or SelectionSettings()
        self.fitted = False

    def fit(self, data: SelectionData) -> "SelectionMetric":
        self._fit(data)
        self.fitted = True
        return self

    def score(self, candidate: Candidate) -> float:
        if not self.fitted:
            raise RuntimeError(f"metric {self.name}: call fit before score")
        with torch.no_grad():
            return float(self._score(candidate))

    def draws(self, candidate: Candidate) -> np.ndarray | None:
        """Draws of the trial's score (D,) whose spread is the metric's uncertainty about it, paired across
        trials (the same evaluator members, posterior seed or design resamples for every trial), so that
        differences of two trials' draws measure how well the metric tells them apart; None when the
        metric has no such spread."""
        if not self.fitted:
            raise RuntimeError(f"metric {self.name}: call fit before draws")
        with torch.no_grad():
            return self._draws(candidate)

    def evaluate(self, candidate: Candidate) -> tuple[float, np.ndarray | None]:
        """(``score``, ``draws``) of one trial, evaluating the designs once where the two share that work."""
        if not self.fitted:
            raise RuntimeError(f"metric {self.name}: call fit before evaluate")
        with torch.no_grad():
            score, draws = self._evaluate(candidate)
        return float(score), draws

    def _draws(self, candidate: Candidate) -> np.ndarray | None:
        return None

    def _evaluate(self, candidate: Candidate) -> tuple[float, np.ndarray | None]:
        return self._score(candidate), self._draws(candidate)

    @abstractmethod
    def _fit(self, data: SelectionData) -> None: ...

    @abstractmethod
    def _score(self, candidate: Candidate) -> float: ...


class DrawMeanMetric(SelectionMetric):
    """A metric whose score is the mean of its draws (each draw one evaluator member or posterior sample)."""

    @abstractmethod
    def _draws(self, candidate: Candidate) -> np.ndarray: ...

    def _score(self, candidate: Candidate) -> float:
        return float(self._draws(candidate).mean())

    def _evaluate(self, candidate: Candidate) -> tuple[float, np.ndarray]:
        draws = self._draws(candidate)
        return float(draws.mean()), draws


class LowerBoundMetric(SelectionMetric):
    """A metric that scores per-design lower bounds (``lower_bounds``): their mean over all designs, or
    (``top_only``) over the best ``top_designs`` fraction; draws: the same over resamples of the designs."""

    top_only: ClassVar[bool] = False

    @abstractmethod
    def lower_bounds(self, designs: np.ndarray) -> np.ndarray: ...

    def _score(self, candidate: Candidate) -> float:
        return aggregate(self.lower_bounds(candidate.designs), self.top_only, self.settings.top_designs)

    def _draws(self, candidate: Candidate) -> np.ndarray:
        return bootstrap(self.lower_bounds(candidate.designs), self.top_only, self.settings)

    def _evaluate(self, candidate: Candidate) -> tuple[float, np.ndarray]:
        bounds = self.lower_bounds(candidate.designs)
        return aggregate(bounds, self.top_only, self.settings.top_designs), bootstrap(bounds, self.top_only,
                                                                                      self.settings)


def draws_to_json(draws: np.ndarray | None) -> str:
    """A metric's draws as the JSON list a trial reports and the benchmark saves (6 decimals; null for none)."""
    return json.dumps(None if draws is None else [round(float(v), 6) for v in draws])


def draws_from_json(text: str | None) -> np.ndarray | None:
    """``draws_to_json``'s inverse (None for null or no text)."""
    values = json.loads(text or "null")
    return None if values is None else np.asarray(values, dtype=np.float64)


def member_predictions(evaluator: AuxiliaryEnsemble, designs: np.ndarray, vocab_size: int) -> np.ndarray:
    """Each member's prediction for each design (M, B), float64, from one-hot features."""
    return evaluator(one_hot(designs, vocab_size)).double().numpy()


@dataclass(frozen=True)
class OneHotEvaluator:
    """A one-hot MLP ensemble as the metrics read it, fitted on rows with standardised labels ``z``. Designs
    with more than ``radius`` substitutions from ``reference`` are unknown: every member predicts
    ``floor`` = min(z) for them, so they neither lift a trial's score nor widen its spread (no radius: none
    are unknown)."""

    ensemble: AuxiliaryEnsemble
    vocab_size: int
    floor: float
    reference: np.ndarray | None = None
    radius: int | None = None

    @classmethod
    def fitted(cls, ensemble: AuxiliaryEnsemble, z: np.ndarray, data: SelectionData,
               settings: SelectionSettings) -> "OneHotEvaluator":
        """``ensemble`` with the data's radius when ``settings.unknown_past_radius``, else none."""
        if not settings.unknown_past_radius:
            return cls(ensemble, data.vocab_size, float(np.min(z)))
        return cls(ensemble, data.vocab_size, float(np.min(z)), data.reference, data.mutation_radius)

    def members(self, designs: np.ndarray) -> np.ndarray:
        """Each member's prediction for each design (M, B), float64; ``floor`` for the unknown designs."""
        members = member_predictions(self.ensemble, designs, self.vocab_size)
        members[:, past_radius(designs, self.reference, self.radius)] = self.floor
        return members


class HoldoutMetric(SelectionMetric):
    """Mean design score under an MLP ensemble trained on the held-out rows in the trial's own
    embedding space (one evaluator per backbone), in label units."""

    name = "holdout"
    reads_trial = True
    summary = "held-out MLP ensemble in the trial's embedding space (mean design score; pre-issue-13 default)"
    needs_embeddings = frozenset({"held"})

    def __init__(self, settings: SelectionSettings | None = None, aux: AuxiliarySettings | None = None,
                 seed: int = 0) -> None:
        super().__init__(settings)
        self.aux_settings = aux or AuxiliarySettings()
        self.seed = seed

    def _fit(self, data: SelectionData) -> None:
        self.evaluators = {}
        for backbone, rows in data.embeddings.items():
            statistics = EmbeddingStatistics.from_rows(rows.held, torch.as_tensor(data.held_y))
            mean, std = statistics.feature_moments()
            evaluator = AuxiliaryEnsemble(statistics.dim, self.aux_settings, self.seed + HOLDOUT_SEED_OFFSET, mean, std)
            z = (torch.as_tensor(data.held_y) - statistics.label_mean) / statistics.label_std
            with torch.enable_grad():
                evaluator.fit(rows.held, z)
            self.evaluators[backbone] = (evaluator, statistics.label_mean, statistics.label_std)

    def _score(self, candidate: Candidate) -> float:
        if candidate.backbone not in self.evaluators:
            raise ValueError(f"metric holdout has no evaluator for backbone {candidate.backbone!r}")
        evaluator, mean, std = self.evaluators[candidate.backbone]
        phi = candidate.needs("embed", self.name)(candidate.designs)
        return mean + std * float(evaluator.mean(phi.to(evaluator.w1.device)).mean())


class AuxMetric(SelectionMetric):
    """Mean design score under the trial's own aux ensemble (standardised training labels)."""

    name = "aux"
    reads_trial = True
    summary = "the trial's own aux ensemble, trained on the same rows as its proxy (mean design score)"

    def _fit(self, data: SelectionData) -> None:
        pass

    def _score(self, candidate: Candidate) -> float:
        aux = candidate.needs("aux", self.name)
        phi = candidate.needs("embed", self.name)(candidate.designs)
        return float(aux.mean(phi.to(aux.w1.device)).mean())


class PessimisticMetric(LowerBoundMetric):
    """Lower confidence bound mu - k * s * sigma per design under one calibrated one-hot MLP
    ensemble trained on all held-out rows, averaged over all designs (``top_designs`` None) or over
    the best ``top_designs`` fraction; in standardised held-out label units."""

    name = "pessimistic"
    summary = "calibrated one-hot MLP ensemble on the held-out rows, mean - k std (mean over designs)"

    def _fit(self, data: SelectionData) -> None:
        z = data.held_z()
        ensemble, self.scale = fit_calibrated_ensemble(data.held_x, z, data.vocab_size, self.settings)
        self.evaluator = OneHotEvaluator.fitted(ensemble, z, data, self.settings)

    def lower_bounds(self, designs: np.ndarray) -> np.ndarray:
        """mu - k * s * sigma of each design (B,)."""
        members = self.evaluator.members(designs)
        return members.mean(0) - self.settings.pessimism * self.scale * members.std(0)


class PessimisticTopMetric(PessimisticMetric):
    name = "pessimistic-top"
    summary = "the same lower bound, averaged over the best top_designs fraction of the designs"
    top_only = True


class ExpectedMaxMetric(DrawMeanMetric):
    """E_m[max_b f_m(x_b)]: the expected best design of the batch, each member's predictions
    f_m = mu + s (f_m - mu) widened by the calibrated spread scale s, under one one-hot MLP ensemble
    trained on every offline row (training split and held-out rows); standardised label units."""

    name = "expected-max"
    summary = "expected best design under a calibrated one-hot MLP ensemble trained on all offline rows"

    def _fit(self, data: SelectionData) -> None:
        codes, z = data.all_rows()
        ensemble, self.scale = fit_calibrated_ensemble(codes, z, data.vocab_size, self.settings)
        self.evaluator = OneHotEvaluator.fitted(ensemble, z, data, self.settings)

    def _draws(self, candidate: Candidate) -> np.ndarray:
        """Each member's best design (M,), members widened by the calibrated spread scale."""
        members = self.evaluator.members(candidate.designs)
        mean = members.mean(0)
        return (mean + self.scale * (members - mean)).max(1)


class MeanTopMetric(DrawMeanMetric):
    """mean over the best ``top_designs`` fraction of the designs (ranked by mu) of mu(x_b) = E_m[f_m(x_b)],
    under a one-hot MLP ensemble trained on every offline row; standardised label units. No spread enters
    the score: the members only average out one network's noise. Draws: each member's mean over the same
    designs (so the score is their mean)."""

    name = "mean-top"
    summary = "mean prediction of a one-hot MLP ensemble on all offline rows over the trial's best designs"

    def _fit(self, data: SelectionData) -> None:
        codes, z = data.all_rows()
        ensemble = fit_onehot_ensemble(codes, z, data.vocab_size, self.settings, self.settings.seed + 1)
        self.evaluator = OneHotEvaluator.fitted(ensemble, z, data, self.settings)

    def _draws(self, candidate: Candidate) -> np.ndarray:
        """Each member's mean over the designs the ensemble mean ranks in the top ``top_designs`` (M,)."""
        members = self.evaluator.members(candidate.designs)
        best = np.argsort(-members.mean(0), kind="stable")[:top_count(self.settings.top_designs, members.shape[1])]
        return members[:, best].mean(1)


class GPMaxMetric(DrawMeanMetric):
    """E[max_b f(x_b)] over joint posterior samples of a Hamming-kernel Gaussian process fitted on every
    offline row (standardised labels; the same posterior seed for every trial)."""

    name = "gp-max"
    summary = "expected best design under a Hamming-kernel Gaussian process on all offline rows"

    def _fit(self, data: SelectionData) -> None:
        from bib_ray.sweep.gp_evaluator import fit_hamming_gp

        codes, z = data.all_rows()
        self.gp = fit_hamming_gp(codes, z, data.vocab_size, self.settings.gp_rows, self.settings.calibration,
                                 self.settings.seed)

    def _draws(self, candidate: Candidate) -> np.ndarray:
        return self.gp.sample_maxima(candidate.designs, self.settings.draws, self.settings.seed)


class GPLowerBoundMetric(LowerBoundMetric, GPMaxMetric):
    """mu - k * sigma per design under the same Gaussian process (``GPMaxMetric``'s fit), averaged over the
    best ``top_designs`` fraction of the designs."""

    name = "gp-lcb"
    summary = "lower bound mu - k sigma of the Gaussian process, averaged over the best designs"
    top_only = True

    def lower_bounds(self, designs: np.ndarray) -> np.ndarray:
        mean, sd = self.gp.posterior(designs)
        return (mean - self.settings.pessimism * sd).numpy()


def top_count(fraction: float, designs: int) -> int:
    """How many designs are the best ``fraction`` of ``designs`` (at least one)."""
    return max(1, math.ceil(fraction * designs))


def aggregate(values: np.ndarray, top_only: bool, top_fraction: float) -> float:
    """Mean of per-design values, or (``top_only``) of the best ``top_fraction`` of them."""
    if top_only:
        values = np.sort(values)[-top_count(top_fraction, len(values)):]
    return float(np.mean(values))


def bootstrap(values: np.ndarray, top_only: bool, settings: SelectionSettings) -> np.ndarray:
    """``aggregate`` over ``settings.draws`` resamples of the designs (the same resamples for every trial
    with as many designs)."""
    picks = np.random.default_rng(settings.seed).integers(0, len(values), (settings.draws, len(values)))
    resamples = values[picks]  # (draws, B)
    if top_only:
        resamples = np.sort(resamples, axis=1)[:, -top_count(settings.top_designs, len(values)):]
    return resamples.mean(1)


class ProxyRankMetric(SelectionMetric):
    """Spearman correlation of the trial's proxy with the held-out labels."""

    name = "proxy-rank"
    reads_trial = True
    summary = "Spearman correlation of the trial's proxy with the held-out labels"
    needs_embeddings = frozenset({"held"})

    def _fit(self, data: SelectionData) -> None:
        self.held = {backbone: rows.held for backbone, rows in data.embeddings.items()}
        self.held_y = data.held_y

    def _score(self, candidate: Candidate) -> float:
        proxy = candidate.needs("proxy", self.name)
        if candidate.backbone not in self.held:
            raise ValueError(f"metric {self.name} needs the held-out rows embedded with {candidate.backbone!r}")
        prediction = proxy.predict(self.held[candidate.backbone].to(proxy_device(proxy)))
        return rank_correlation(prediction.cpu().numpy(), self.held_y)


class TopRankMetric(SelectionMetric):
    """The trial's proxy refitted without the training split's top rows (statistics downdate, same
    beta scale) ranks those rows and the held-out rows: Spearman correlation with their labels."""

    name = "top-rank"
    reads_trial = True
    summary = "the proxy refitted without the best training rows ranks them and the held-out rows (Spearman)"
    needs_embeddings = frozenset({"held", "top"})

    def _fit(self, data: SelectionData) -> None:
        rows = top_rows(data.train_y, self.settings.top_rows)
        self.top_y = data.train_y[rows]
        self.held_y = data.held_y
        self.rows = {}
        for backbone, embedded in data.embeddings.items():
            if embedded.top is None or len(embedded.top) != len(rows):
                raise ValueError(f"metric {self.name} needs the {len(rows)} top training rows embedded with "
                                 f"{backbone!r}")
            self.rows[backbone] = (embedded.top, embedded.held)

    def _score(self, candidate: Candidate) -> float:
        proxy = candidate.needs("proxy", self.name)
        if not isinstance(proxy, BidirectionalProxy):
            raise ValueError(f"metric {self.name} refits the linear-head proxy; {type(proxy).__name__} has none")
        if candidate.backbone not in self.rows:
            raise ValueError(f"metric {self.name} needs the rows embedded with {candidate.backbone!r}")
        top, held = self.rows[candidate.backbone]
        without_top = proxy.statistics - EmbeddingStatistics.from_rows(top, torch.as_tensor(self.top_y))
        sibling = BidirectionalProxy(without_top, proxy.beta_scale, proxy.design_beta_scale)
        prediction = sibling.predict(torch.cat([top, held]))
        return rank_correlation(prediction.numpy(), np.concatenate([self.top_y, self.held_y]))


class AgreementMetric(SelectionMetric):
    """Three evaluators of different kinds, each trained on its own third of the held-out rows: an
    additive ridge model, an MLP ensemble (one-hot) and Hamming nearest neighbours. Score: the mean
    of their mean design scores minus their standard deviation (standardised held-out labels)."""

    name = "agreement"
    summary = "consensus minus spread of three evaluators (ridge, MLP, nearest neighbours) on disjoint folds"

    def _fit(self, data: SelectionData) -> None:
        s = self.settings
        z = data.held_z()
        folds = np.array_split(np.random.default_rng(s.seed + 2).permutation(len(z)), 3)
        x = data.held_x
        ridge = additive_ridge(x[folds[0]], z[folds[0]], data.vocab_size)
        mlp = fit_onehot_ensemble(x[folds[1]], z[folds[1]], data.vocab_size, s, s.seed + 3, members=4)
        near_x, near_z, k = x[folds[2]], z[folds[2]], s.neighbours
        vocab = data.vocab_size
        self.evaluators = [ridge, lambda codes: mlp.mean(one_hot(codes, vocab)).double().numpy(),
                           lambda codes: hamming_neighbours_mean(codes, near_x, near_z, k)]

    def _score(self, candidate: Candidate) -> float:
        means = np.array([float(np.mean(evaluate(candidate.designs))) for evaluate in self.evaluators])
        return float(means.mean() - means.std())


def proxy_device(proxy: DesignProxy) -> torch.device:
    buffer = next(proxy.buffers(), None)
    return buffer.device if buffer is not None else torch.device("cpu")


METRICS: dict[str, type[SelectionMetric]] = {metric.name: metric for metric in (
    HoldoutMetric, AuxMetric, PessimisticMetric, PessimisticTopMetric, ExpectedMaxMetric, MeanTopMetric, GPMaxMetric,
    GPLowerBoundMetric, ProxyRankMetric, TopRankMetric, AgreementMetric)}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
DEFAULT_METRIC = "expected-max"


def build_metric(name: str, settings: SelectionSettings | None = None, aux: AuxiliarySettings | None = None,
                 seed: int = 0) -> SelectionMetric:
    """The metric called ``name`` (``holdout`` trains its evaluators with ``aux`` and ``seed``)."""
    if name not in METRICS:
        raise ValueError(f"unknown selection metric {name!r}; choose from {', '.join(METRIC_NAMES)}")
    if name == HoldoutMetric.name:
        return HoldoutMetric(settings, aux, seed)
    return METRICS[name](settings)


def needs_split(name: str) -> bool:
    """Whether the metric needs rows held out from the trials (every metric but ``aux``)."""
    return name != AuxMetric.name


def fit_metrics(names: list[str], train: Task, held: Task, embeddings: Mapping[str, RowEmbeddings],
                settings: SelectionSettings | None = None, aux: AuxiliarySettings | None = None,
                seed: int = 0) -> dict[str, SelectionMetric]:
    """The metrics called ``names``, each fitted on the same offline rows: the training split, the
    held-out rows and their per-backbone ``embeddings`` (``RowEmbeddings``); the tasks' oracles are not read."""
    data = SelectionData.from_tasks(train, held, embeddings)
    return {name: build_metric(name, settings, aux, seed).fit(data) for name in names}
