"""Evolutionary baseline: AdaLead-style mutate-and-select on a proxy (Sinai et al. 2020, simplified).

Each round the parents are the population members scoring within ``kappa * |best|`` of the
best; children are parents recombined (uniform crossover with another parent, probability
``recombination_rate``) and mutated (each residue with probability ``mutation_rate``, default
1/L, to a different letter); the population becomes the best ``population`` distinct
sequences of parents and children. With support ``constraints`` (``bib_ray.core.support``), a
mutation to a letter not allowed at its position is undone and children that still break them
(an unseen adjacent pair, more than K edits from ``base`` or, without one, from every starting
sequence) are discarded, so every design obeys the constraints of the gradient methods' decode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from bib_ray.core.support import SupportConstraints

ProxyScore = Callable[[np.ndarray], np.ndarray]  # codes (B, L) -> scores (B,), higher is better


@dataclass(frozen=True)
class EvolutionSettings:
    rounds: int = 20
    population: int = 128
    children_per_round: int = 512
    mutation_rate: float | None = None  # None: 1 / L
    recombination_rate: float = 0.2
    kappa: float = 0.05

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.population < 1 or self.children_per_round < 1:
            raise ValueError("rounds, population and children_per_round must be >= 1")
        if not 0 <= self.recombination_rate <= 1 or self.kappa < 0:
            raise ValueError("recombination_rate must be in [0, 1] and kappa >= 0")
        if self.mutation_rate is not None and not 0 < self.mutation_rate <= 1:
            raise ValueError("mutation_rate must be in (0, 1]")


@dataclass
class EvolutionResult:
    """The best distinct designs, and per round the population's best members (``round_codes``
    (rounds, population, L), ``round_scores`` (rounds, population); cycled when the population
    holds fewer distinct sequences)."""

    final_codes: np.ndarray  # (<= population, L), best first
    final_scores: np.ndarray
    best_per_round: np.ndarray  # (rounds,)
    evaluations: int
    round_codes: np.ndarray
    round_scores: np.ndarray


def _distinct_best(codes: np.ndarray, scores: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    _, first = np.unique(codes, axis=0, return_index=True)
    order = first[np.argsort(-scores[first], kind="stable")][:keep]
    return codes[order], scores[order]


def _edits_to_nearest(codes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(B,) Hamming distance from each row of ``codes`` (B, L) to its nearest row of ``anchors`` (A, L)."""
    return (codes[:, None, :] != anchors[None, :, :]).sum(-1).min(1)


@dataclass(frozen=True)
class EvolutionProblem:
    """What evolution designs: the starting population ``start`` (S, L) over ``vocab_size`` letters, the
    support ``constraints`` children keep to (None: any sequence), the ``base`` (L,) that the edit limit
    counts from (None: each child's nearest starting sequence) and the positions no mutation or
    recombination touches, ``fixed`` (L,) bool (None: none)."""

    start: np.ndarray
    vocab_size: int
    constraints: SupportConstraints | None = None
    base: np.ndarray | None = None
    fixed: np.ndarray | None = None


def evolve(problem: EvolutionProblem, score: ProxyScore, settings: EvolutionSettings, seed: int) -> EvolutionResult:
    """Run the rounds from ``problem.start``; return the best ``settings.population`` distinct sequences.

    Children keep to ``problem.constraints``: mutations to letters it does not allow are undone and
    children that break its pairs or its edit limit K are dropped. K counts from ``problem.base`` (whose
    own letters and pairs are allowed) or, without a base, from the nearest starting sequence. Starts
    that break the constraints are left out of the first population; if none is left, it is the base
    alone."""
    start, vocab_size, constraints, base = problem.start, problem.vocab_size, problem.constraints, problem.base
    rng = np.random.default_rng(seed)
    length = start.shape[1]
    rate = settings.mutation_rate if settings.mutation_rate is not None else 1.0 / length
    start = np.asarray(start, dtype=np.int64)
    if constraints is not None:
        local = replace(constraints, max_edits=None)  # letters and pairs; the edit limit is checked here
        start = start[local.satisfied(start, base)]
        if base is not None and constraints.max_edits is not None:
            start = start[(start != base[None, :]).sum(1) <= constraints.max_edits]
        if not len(start):
            if base is None:
                raise ValueError("no starting sequence satisfies the support constraints")
            start = np.asarray(base, dtype=np.int64)[None, :]
        anchors = start if base is None else np.asarray(base, dtype=np.int64)[None, :]
    population, fitness = _distinct_best(start, score(start), settings.population)
    width = settings.population
    evaluations, best, round_codes, round_scores = len(start), [], [], []
    for _ in range(settings.rounds):
        top = fitness[0]
        parents = population[fitness >= top - settings.kappa * abs(top)]
        children = parents[rng.integers(0, len(parents), settings.children_per_round)]
        mates = parents[rng.integers(0, len(parents), settings.children_per_round)]
        crossover = (rng.random(settings.children_per_round) < settings.recombination_rate)[:, None] \
            & (rng.random(children.shape) < 0.5)
        if problem.fixed is not None:
            crossover &= ~problem.fixed[None, :]
        children = np.where(crossover, mates, children)
        mutate = rng.random(children.shape) < rate
        if problem.fixed is not None:
            mutate &= ~problem.fixed[None, :]
        shift = rng.integers(1, vocab_size, children.shape)  # a different letter, uniformly
        mutated = np.where(mutate, (children + shift) % vocab_size, children)
        if constraints is not None:
            allowed = constraints.letters[np.arange(length)[None, :], mutated]
            if base is not None:
                allowed |= mutated == base[None, :]
            mutate &= allowed
        children = np.where(mutate, mutated, children)
        if constraints is not None:
            keep = local.satisfied(children, base)
            if constraints.max_edits is not None:
                keep &= _edits_to_nearest(children, anchors) <= constraints.max_edits
            children = children[keep]
        if len(children):
            child_scores = score(children)
            evaluations += len(children)
            population, fitness = _distinct_best(np.concatenate([population, children]),
                                                 np.concatenate([fitness, child_scores]), settings.population)
        best.append(fitness[0])
        cycled = np.arange(width) % min(width, len(population))
        round_codes.append(population[cycled])
        round_scores.append(fitness[cycled])
    return EvolutionResult(population[:width], fitness[:width], np.array(best), evaluations, np.stack(round_codes),
                           np.stack(round_scores))
