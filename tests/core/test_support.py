"""Support constraints: the exact decode against brute force, the constraints it must respect."""

import itertools

import numpy as np
import pytest
import torch

from bib_ray.core.evolution import EvolutionProblem, EvolutionSettings, evolve
from bib_ray.core.support import SupportConstraints, SupportLevel


def brute_force(logits: np.ndarray, constraints: SupportConstraints, base: np.ndarray) -> np.ndarray:
    """Best summed logits over every sequence of length L that satisfies the constraints, per design."""
    length, vocab = constraints.letters.shape
    every = np.array(list(itertools.product(range(vocab), repeat=length)))
    best = []
    for row in range(logits.shape[0]):
        ok = constraints.satisfied(every, np.broadcast_to(base[row], every.shape))
        values = logits[row][np.arange(length)[None, :], every].sum(1)
        best.append(values[ok].max())
    return np.array(best)


def decoded_value(logits: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return logits[np.arange(len(codes))[:, None], np.arange(codes.shape[1])[None, :], codes].sum(1)


@pytest.mark.parametrize("level", [SupportLevel.NONE, SupportLevel.LETTERS, SupportLevel.PAIRS])
@pytest.mark.parametrize("max_edits", [None, 0, 1, 2])
def test_decode_is_optimal_and_feasible(level, max_edits):
    rng = np.random.default_rng(7)
    vocab, length = 3, 5
    offline = rng.integers(0, vocab, (6, length))
    constraints = SupportConstraints.from_sequences(offline, vocab, level, max_edits)
    base = offline[rng.integers(0, len(offline), 16)]
    logits = rng.normal(size=(16, length, vocab))
    codes = constraints.decode(logits, base)
    assert constraints.satisfied(codes, base).all()
    np.testing.assert_allclose(decoded_value(logits, codes), brute_force(logits, constraints, base))


def test_decode_without_base_when_no_edit_limit():
    rng = np.random.default_rng(1)
    offline = rng.integers(0, 4, (5, 4))
    constraints = SupportConstraints.from_sequences(offline, 4, SupportLevel.PAIRS)
    logits = rng.normal(size=(8, 4, 4))
    codes = constraints.decode(logits)
    assert constraints.satisfied(codes).all()
    every = np.array(list(itertools.product(range(4), repeat=4)))
    ok = constraints.satisfied(every)
    for row in range(8):
        assert decoded_value(logits[row:row + 1], codes[row:row + 1])[0] == pytest.approx(
            logits[row][np.arange(4)[None, :], every[ok]].sum(1).max())


def test_pair_constraint_is_enforced():
    """Letters alone would allow 'AA'-like joins the data never shows; the decode must not produce them."""
    offline = np.array([[0, 1], [1, 0]])  # pairs seen: (0, 1) and (1, 0); letters seen: both at both positions
    logits = np.zeros((1, 2, 2))
    logits[0, 0, 0] = logits[0, 1, 0] = 5.0  # argmax 00: every letter allowed, the pair (0, 0) is not
    pairs = SupportConstraints.from_sequences(offline, 2, SupportLevel.PAIRS)
    letters = SupportConstraints.from_sequences(offline, 2, SupportLevel.LETTERS)
    assert letters.decode(logits).tolist() == [[0, 0]]
    assert pairs.decode(logits).tolist() in ([[0, 1]], [[1, 0]])
    assert not pairs.satisfied(np.array([[0, 0]])).any()


def test_edit_limit_keeps_the_largest_margins():
    start = np.array([[0, 0, 0, 0]])
    logits = np.zeros((1, 4, 3))
    logits[0, :, 0] = 1.0
    logits[0, 0, 1], logits[0, 1, 2], logits[0, 2, 1] = 3.0, 1.5, 5.0  # margins 2.0, 0.5, 4.0
    constraints = SupportConstraints(np.ones((4, 3), dtype=bool), None, max_edits=2)
    assert constraints.decode(logits, start).tolist() == [[1, 0, 1, 0]]
    assert SupportConstraints(np.ones((4, 3), bool), None, 1).decode(logits, start).tolist() == [[0, 0, 1, 0]]
    assert SupportConstraints(np.ones((4, 3), bool), None, 0).decode(logits, start).tolist() == [[0, 0, 0, 0]]


def test_decode_returns_the_base_when_nothing_better_is_allowed():
    offline = np.array([[0, 1, 2], [2, 1, 0]])
    constraints = SupportConstraints.from_sequences(offline, 3, SupportLevel.PAIRS, max_edits=3)
    logits = np.zeros((2, 3, 3))
    logits[:, :, 1] = 10.0  # '111' is the argmax, but (1, 1) is never seen as a pair
    logits[np.arange(2)[:, None], np.arange(3)[None, :], offline] += 20.0
    assert np.array_equal(constraints.decode(logits, offline), offline)


def test_base_letters_and_pairs_are_allowed_even_if_unseen():
    offline = np.array([[0, 0, 0]])
    constraints = SupportConstraints.from_sequences(offline, 3, SupportLevel.PAIRS)
    base = np.array([[2, 2, 2]])  # violates the learned letters and pairs: still its own fallback
    logits = np.random.default_rng(0).normal(size=(1, 3, 3))
    assert constraints.decode(logits, base)[0].tolist() in ([0, 0, 0], [2, 2, 2], [2, 2, 0], [0, 2, 2])
    assert constraints.satisfied(base, base).all()


def test_evolution_obeys_the_constraints():
    rng = np.random.default_rng(0)
    offline = rng.integers(0, 4, (12, 6))
    constraints = SupportConstraints.from_sequences(offline, 4, SupportLevel.PAIRS, max_edits=2)
    reference = offline[0]

    def score(codes: np.ndarray) -> np.ndarray:
        return (codes == 3).sum(1).astype(float)

    result = evolve(EvolutionProblem(offline[:1].repeat(4, 0), 4, constraints, reference), score,
                    EvolutionSettings(rounds=15, population=8), seed=0)
    assert constraints.satisfied(result.final_codes, np.broadcast_to(reference, result.final_codes.shape)).all()


def test_evolution_without_a_base_stays_near_its_starts():
    rng = np.random.default_rng(2)
    offline = rng.integers(0, 4, (20, 8))
    constraints = SupportConstraints.from_sequences(offline, 4, SupportLevel.PAIRS, max_edits=2)
    result = evolve(EvolutionProblem(offline[:5], 4, constraints), lambda c: (c == 3).sum(1).astype(float),
                    EvolutionSettings(rounds=15, population=8), seed=1)
    nearest = (result.final_codes[:, None, :] != offline[None, :5]).sum(-1).min(1)
    assert nearest.max() <= 2
    assert constraints.satisfied(result.final_codes, offline[:5][np.argmin(
        (result.final_codes[:, None, :] != offline[None, :5]).sum(-1), 1)]).all()


def test_designs_already_inside_the_constraints_skip_the_programme_with_the_same_answer():
    """decode takes a design's per-position best letters when they are unique and feasible; on random
    problems (many such designs, many not) it agrees with the full programme for every design."""
    rng = np.random.default_rng(7)
    offline = rng.integers(0, 4, (30, 9))
    taken = []
    for level, edits in [(SupportLevel.PAIRS, 3), (SupportLevel.LETTERS, None), (SupportLevel.PAIRS, None)]:
        constraints = SupportConstraints.from_sequences(offline, 4, level, max_edits=edits)
        base = offline[rng.integers(0, 30, 200)]
        logits = rng.normal(size=(200, 9, 4)) + 3.0 * np.eye(4)[base] * rng.integers(0, 2, (200, 1, 1))
        emit = np.where(constraints.letters[None] | np.eye(4, dtype=bool)[base], logits, -np.inf)
        full = constraints._viterbi(torch.as_tensor(emit), torch.as_tensor(base))
        np.testing.assert_array_equal(constraints.decode(logits, base), full)
        taken.append(constraints.satisfied(emit.argmax(-1), base))
    assert 0 < np.concatenate(taken).sum() < 600, "both paths ran"
