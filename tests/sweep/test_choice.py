"""How a sweep chooses its trial and says how sure it is (``bib_ray.sweep.choice``), and the Gaussian-process
evaluator whose uncertainty grows away from the offline data (``bib_ray.sweep.gp_evaluator``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bib_ray.sweep.choice import choose_trial, paired_margin, settings_changed
from bib_ray.sweep.gp_evaluator import fit_hamming_gp
from bib_ray.sweep.selection import METRICS, Candidate, SelectionData, SelectionSettings
from bib_ray.tasks.evaluation import nearest_hamming


def trials(scores, changed, distance):
    table = pd.DataFrame({"selection_score": scores})
    return table, pd.Series(changed, index=table.index), pd.Series(distance, index=table.index, dtype=float)


def test_identical_trials_cannot_be_told_apart_and_the_rule_takes_the_one_closest_to_the_defaults():
    draws = np.random.default_rng(0).normal(size=64)
    table, changed, distance = trials([1.0, 1.0, 1.0], [2, 0, 1], [1.0, 3.0, 0.5])
    identical = {i: draws.copy() for i in table.index}
    choice = choose_trial(table, "selection_score", identical, changed, distance, tie_break="defaults")
    assert sorted(choice.tied) == [0, 1, 2]
    assert choice.chosen == 1 and choice.rule == "closest to the defaults"
    assert "cannot be told apart" in choice.line and "3 trials" in choice.line and "2 within 1 sd" in choice.line
    kept = choose_trial(table, "selection_score", identical, changed, distance)  # tie_break: metric
    assert kept.chosen == kept.best == 0 and sorted(kept.tied) == [0, 1, 2]
    assert "cannot be told apart" in kept.line and "kept the metric's best" in kept.line
    with pytest.raises(ValueError, match="tie_break"):
        choose_trial(table, "selection_score", identical, changed, distance, tie_break="newest")


def test_the_tie_line_says_the_score_runner_up_apart_from_the_tied_trials():
    rng = np.random.default_rng(1)
    base = rng.normal(size=64)
    draws = {0: base + 1.0, 1: base + rng.normal(scale=0.01, size=64) + 0.5,  # runner-up by score, far in sd
             2: base + rng.normal(scale=1.0, size=64) + 0.4}  # lower score, but its paired draws are noisy
    table, changed, distance = trials([1.0, 0.5, 0.4], [0, 0, 0], [1.0, 1.0, 1.0])
    choice = choose_trial(table, "selection_score", draws, changed, distance)
    assert sorted(choice.tied) == [0, 2]
    assert "2 trials cannot be told apart" in choice.line and "1 within 1 sd" in choice.line
    assert f"runner-up by score is {choice.margins[1]:.2f} sd below" in choice.line


def test_ties_at_equal_distance_from_the_defaults_go_to_the_most_conservative_trial():
    rng = np.random.default_rng(1)
    base = rng.normal(size=64)
    draws = {0: base + 0.002, 1: base + 0.01 * rng.normal(size=64), 2: base - 5.0}
    table, changed, distance = trials([1.01, 1.0, -4.0], [1, 1, 0], [2.0, 0.5, 0.0])
    choice = choose_trial(table, "selection_score", draws, changed, distance, tie_break="defaults")
    assert 2 not in choice.tied, "a trial the draws separate is not tied"
    assert choice.chosen == 1 and choice.rule == "most conservative"
    assert choose_trial(table, "selection_score", draws, changed, distance, tie_break="conservative").chosen == 1


def test_a_clear_winner_is_the_metrics_best():
    rng = np.random.default_rng(2)
    noise = rng.normal(size=64)
    table, changed, distance = trials([3.0, 1.0], [3, 0], [4.0, 0.0])
    choice = choose_trial(table, "selection_score", {0: 3 + 0.1 * noise, 1: 1 + 0.1 * noise}, changed, distance)
    assert choice.chosen == 0 and choice.tied == [0] and "told apart" in choice.line
    assert choice.margins[1] == np.inf  # paired draws whose difference never varies


def test_without_draws_the_metric_alone_decides():
    table, changed, distance = trials([0.2, 0.9], [0, 1], [0.0, 1.0])
    choice = choose_trial(table, "selection_score", {0: None, 1: None}, changed, distance)
    assert choice.chosen == 1 and "no spread" in choice.line


def test_margins_settings_changed_and_distances():
    assert paired_margin(np.array([2.0, 3.0]), np.array([1.0, 1.0])) == pytest.approx(1.5 / 0.5)
    table = pd.DataFrame({"lr": [0.1, 0.03], "method": ["bib", "forward"]})
    assert settings_changed(table, ["lr", "method"], {"lr": 0.1, "method": "bib"}).tolist() == [0, 2]
    rows = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    assert nearest_hamming(np.array([[0, 0, 0, 1], [1, 1, 0, 0]]), rows).mean() == pytest.approx(1.5)


def test_gp_uncertainty_grows_with_the_distance_from_the_data():
    """Rows within one edit of a template: the posterior sd rises with the distance of a query from the
    template, its mean returns to the prior's (0) far away, and the sd there is the prior's (times s)."""
    length, vocab = 8, 4
    template = np.zeros(length, dtype=int)
    rows = [template.copy()]
    for position in range(length):
        for letter in range(1, vocab):
            row = template.copy()
            row[position] = letter
            rows.append(row)
    codes = np.array(rows)
    z = (codes != 0).sum(1) * -1.0 + np.random.default_rng(0).normal(0, 0.05, len(codes))
    z = (z - z.mean()) / z.std()
    gp = fit_hamming_gp(codes, z, vocab, calibration=0.25)
    queries = np.array([[1] * d + [0] * (length - d) for d in range(length + 1)])  # d edits from the template
    mean, sd = gp.posterior(queries)
    sd = sd.numpy()
    assert np.all(np.diff(sd[1:]) > 0), sd  # further from the data, less known
    assert sd[0] < 0.75 * sd[-1]
    assert abs(float(mean[-1])) < abs(float(mean[0]))
    assert sd[-1] == pytest.approx(gp.scale, rel=0.2)


def test_gp_metrics_prefer_designs_the_data_support_and_give_paired_draws():
    rng = np.random.default_rng(3)
    length, vocab = 6, 4
    codes = rng.integers(0, vocab, (300, length))
    y = (codes == 2).sum(1) + rng.normal(0, 0.1, 300)  # more 2s is better
    data = SelectionData(vocab, codes[:240], y[:240], codes[240:], y[240:])
    good = rng.choice(vocab, (40, length), p=[0.1, 0.1, 0.7, 0.1])  # mostly 2s
    poor = rng.choice(vocab, (40, length), p=[0.7, 0.1, 0.1, 0.1])
    for name in ("gp-max", "gp-lcb", "expected-max", "mean-top"):
        metric = METRICS[name](SelectionSettings(train_steps=200, draws=64)).fit(data)
        assert metric.score(Candidate(good, "tiny")) > metric.score(Candidate(poor, "tiny")), name
        draws = metric.draws(Candidate(good, "tiny"))
        assert draws is not None and len(draws) >= 2 and np.std(draws) > 0
