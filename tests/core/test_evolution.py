"""The evolutionary baseline (AdaLead-style mutate-and-select) on known functions."""

from __future__ import annotations

import numpy as np
import pytest

from bib_ray.core.evolution import EvolutionProblem, EvolutionSettings, evolve
from bib_ray.core.support import SupportConstraints


def count_of_letter_two(codes: np.ndarray) -> np.ndarray:
    return (codes == 2).sum(1).astype(float)


def test_evolution_climbs_a_known_function_and_is_deterministic():
    start = np.zeros((16, 12), dtype=np.int64)
    settings = EvolutionSettings(rounds=30, population=16, children_per_round=64)
    first = evolve(EvolutionProblem(start, 4), count_of_letter_two, settings, seed=3)
    second = evolve(EvolutionProblem(start, 4), count_of_letter_two, settings, seed=3)
    np.testing.assert_array_equal(first.final_codes, second.final_codes)
    assert first.best_per_round[-1] >= 8  # from 0; the optimum is 12
    assert np.all(np.diff(first.best_per_round) >= 0)  # elitist: the best never drops
    assert len(np.unique(first.final_codes, axis=0)) == len(first.final_codes)  # distinct designs
    assert np.all(first.final_scores[:-1] >= first.final_scores[1:])  # best first


def test_evolution_respects_the_mutation_radius():
    reference = np.zeros(12, dtype=np.int64)
    start = np.zeros((8, 12), dtype=np.int64)
    problem = EvolutionProblem(start, 4, SupportConstraints(np.ones((12, 4), dtype=bool), max_edits=2), reference)
    result = evolve(problem, count_of_letter_two, EvolutionSettings(rounds=20, population=8), seed=0)
    assert (result.final_codes != reference).sum(1).max() <= 2
    assert result.best_per_round[-1] == 2


def test_evolution_settings_are_validated():
    with pytest.raises(ValueError):
        EvolutionSettings(rounds=0)
    with pytest.raises(ValueError):
        EvolutionSettings(mutation_rate=1.5)
