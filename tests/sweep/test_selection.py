"""Offline model selection (bib_ray.sweep.selection): each metric's contract where the right answer is known,
no metric reading the oracle, the sweep YAML's metric values, and the selection benchmark end to end."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from bib_ray.bench import selection as bench
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings
from bib_ray.core.proxy import BidirectionalProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.errors import UserError
from bib_ray.sweep.selection import (METRIC_NAMES, Candidate, RowEmbeddings, SelectionData, SelectionSettings,
                               aggregate, bootstrap, build_metric, one_hot, past_radius, spread_scale, top_rows)
from bib_ray.sweep.config import load_sweep_config
from bib_ray.tasks.base import OracleKind, Task

LENGTH, VOCAB = 6, 4
FAST = SelectionSettings(train_steps=150, members=4)


def additive_data(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random sequences whose label is the number of letter 0 (plus a little noise): known optimum."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, VOCAB, size=(rows, LENGTH))
    return x, (x == 0).sum(1) + 0.1 * rng.standard_normal(rows)


def designs_with(letter_share: float, count: int = 16, seed: int = 1) -> np.ndarray:
    """Designs in which about ``letter_share`` of the positions hold letter 0 (the rest letter 3)."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((count, LENGTH)) < letter_share, 0, 3)


def sequence_data(**embeddings) -> SelectionData:
    x, y = additive_data()
    return SelectionData(VOCAB, x[:400], y[:400], x[400:], y[400:], embeddings)


@pytest.mark.parametrize("name", ["pessimistic", "pessimistic-top", "expected-max", "mean-top", "agreement", "gp-max",
                                  "gp-lcb"])
def test_design_metrics_prefer_designs_the_data_says_are_better(name):
    metric = build_metric(name, FAST).fit(sequence_data())
    good, bad = designs_with(0.8), designs_with(0.1)
    assert metric.score(Candidate(good, "any")) > metric.score(Candidate(bad, "any")) + 0.5


def test_pessimism_lowers_the_score_by_the_calibrated_spread():
    data = sequence_data()
    plain = build_metric("pessimistic", dataclasses.replace(FAST, pessimism=0.0)).fit(data)
    cautious = build_metric("pessimistic", dataclasses.replace(FAST, pessimism=2.0)).fit(data)
    designs = designs_with(0.5)
    members = cautious.evaluator.ensemble(one_hot(designs, VOCAB)).double().numpy()
    expected = (members.mean(0) - 2.0 * cautious.scale * members.std(0)).mean()
    assert cautious.score(Candidate(designs, "any")) == pytest.approx(expected, rel=1e-6)
    assert cautious.score(Candidate(designs, "any")) < plain.score(Candidate(designs, "any"))


def test_spread_scale_makes_z_scores_unit_variance():
    members = np.array([[0.0, 0.0], [2.0, 2.0]])  # mean 1, std 1 at both rows
    assert spread_scale(members, np.array([3.0, -1.0])) == pytest.approx(2.0)  # residuals +-2


def test_pessimistic_top_averages_the_best_designs():
    metric = build_metric("pessimistic-top", dataclasses.replace(FAST, top_designs=0.25)).fit(sequence_data())
    designs = np.concatenate([designs_with(0.9, 4), designs_with(0.0, 12)])
    bounds = np.sort(metric.lower_bounds(designs))
    assert metric.score(Candidate(designs, "any")) == pytest.approx(bounds[-4:].mean())


def test_expected_max_is_the_mean_over_members_of_the_best_widened_design():
    metric = build_metric("expected-max", FAST).fit(sequence_data())
    designs = np.concatenate([designs_with(0.9, 2), designs_with(0.0, 14)])
    members = metric.evaluator.ensemble(one_hot(designs, VOCAB)).double().numpy()
    mean = members.mean(0)
    expected = (mean + metric.scale * (members - mean)).max(1).mean()
    assert metric.score(Candidate(designs, "any")) == pytest.approx(expected, rel=1e-6)
    # a batch is judged by its best designs: two good designs lift 14 poor ones, 14 poor ones add nothing
    assert metric.score(Candidate(designs, "any")) > metric.score(Candidate(designs_with(0.0, 16), "any")) + 0.5
    assert metric.score(Candidate(designs, "any")) == pytest.approx(
        metric.score(Candidate(designs[:2], "any")), abs=0.2)


def test_mean_top_is_the_ensemble_mean_over_its_best_designs():
    metric = build_metric("mean-top", dataclasses.replace(FAST, top_designs=0.125)).fit(sequence_data())
    designs = np.concatenate([designs_with(0.0, 14), designs_with(0.9, 2)])
    members = metric.evaluator.ensemble(one_hot(designs, VOCAB)).double().numpy()
    best = np.argsort(-members.mean(0))[:2]
    assert set(best) == {14, 15}  # the two good designs, wherever they sit in the batch
    candidate = Candidate(designs, "any")
    assert metric.score(candidate) == pytest.approx(members[:, best].mean(), rel=1e-6)
    np.testing.assert_allclose(metric.draws(candidate), members[:, best].mean(1), rtol=1e-6)
    # the poor designs do not count: other poor designs beside the same two good ones score the same
    other = np.concatenate([designs_with(0.05, 14, seed=7), designs[14:]])
    assert metric.score(candidate) == pytest.approx(metric.score(Candidate(other, "any")), rel=1e-6)


@pytest.mark.parametrize("name", ["pessimistic", "pessimistic-top", "expected-max", "mean-top", "gp-max", "gp-lcb",
                                  "agreement"])
def test_evaluate_gives_score_and_draws_from_one_pass_over_the_designs(name):
    metric = build_metric(name, dataclasses.replace(FAST, draws=32)).fit(sequence_data())
    candidate = Candidate(np.concatenate([designs_with(0.9, 4), designs_with(0.2, 12)]), "any")
    score, draws = metric.evaluate(candidate)
    assert score == pytest.approx(metric.score(candidate), rel=1e-9)
    if metric.draws(candidate) is None:
        assert draws is None
    else:
        np.testing.assert_allclose(draws, metric.draws(candidate), rtol=1e-9)
    if hasattr(metric, "evaluator"):  # the ensemble evaluates the designs once, not once for each output
        calls = []
        ensemble = metric.evaluator.ensemble
        metric.evaluator = dataclasses.replace(metric.evaluator,
                                               ensemble=lambda phi: calls.append(len(phi)) or ensemble(phi))
        metric.evaluate(candidate)
        assert calls == [len(candidate.designs)]


def scan_data(radius: int = 1) -> SelectionData:
    """A scan around the wild type (all letter 3): every single and double substitution to letter 0, each
    worth +1, measured out to ``radius`` substitutions."""
    wild = np.full(LENGTH, 3)
    rows = [wild.copy()]
    for i in range(LENGTH):
        single = wild.copy()
        single[i] = 0
        rows.append(single)
        for j in range(i + 1, LENGTH) if radius > 1 else ():
            double = single.copy()
            double[j] = 0
            rows.append(double)
    rng = np.random.default_rng(0)
    x = rng.permutation(np.repeat(np.array(rows), 8, axis=0))
    y = (x == 0).sum(1) + 0.05 * rng.standard_normal(len(x))
    half = len(x) // 2
    return SelectionData(VOCAB, x[:half], y[:half], x[half:], y[half:], reference=wild, mutation_radius=radius)


def test_past_radius_counts_substitutions_from_the_reference():
    data = scan_data(radius=1)
    designs = np.array([[3] * LENGTH, [0, 3, 3, 3, 3, 3], [0, 0, 3, 3, 3, 3], [1, 2, 0, 0, 0, 0]])
    np.testing.assert_array_equal(past_radius(designs, data.reference, data.mutation_radius),
                                  [False, False, True, True])
    plain = sequence_data()
    assert not past_radius(designs, plain.reference, plain.mutation_radius).any()  # no reference, no radius
    with pytest.raises(ValueError, match="radius"):
        SelectionData(VOCAB, data.train_x, data.train_y, data.held_x, data.held_y, reference=data.reference)


@pytest.mark.parametrize("name", ["mean-top", "expected-max", "pessimistic", "pessimistic-top"])
def test_designs_past_the_radius_score_as_the_lowest_offline_label_not_as_extrapolated(name):
    data = scan_data(radius=1)
    settings = dataclasses.replace(FAST, train_steps=400, top_designs=1.0)
    aware = build_metric(name, settings).fit(data)
    extrapolating = build_metric(name, dataclasses.replace(settings, unknown_past_radius=False)).fit(data)
    singles = np.full((LENGTH, LENGTH), 3)
    singles[np.arange(LENGTH), np.arange(LENGTH)] = 0
    triples = np.full((LENGTH, LENGTH), 3)
    for i in range(LENGTH):
        triples[i, [i, (i + 1) % LENGTH, (i + 2) % LENGTH]] = 0
    within, past = Candidate(singles, "any"), Candidate(triples, "any")
    if name in ("mean-top", "expected-max"):  # the members' mean extrapolates the additive trend past the data
        assert extrapolating.score(past) > extrapolating.score(within) + 0.5
    z = np.concatenate([data.train_y, data.held_y]) if name in ("mean-top", "expected-max") else data.held_y
    floor = float(((z - z.mean()) / z.std()).min())
    assert aware.score(past) == pytest.approx(floor, abs=1e-9)  # unknown: the lowest label, no spread
    assert aware.score(within) == pytest.approx(extrapolating.score(within), rel=1e-9)
    assert aware.score(within) > aware.score(past) + 0.5


def test_selection_data_from_tasks_reads_the_tasks_mutation_radius():
    x, y = additive_data(40)
    task = Task(name="scan", alphabet="ACGT", x=x, y=y, reference=np.zeros(LENGTH, dtype=np.int64),
                details={"mutation_radius": 2})
    data = SelectionData.from_tasks(task, task)
    assert data.mutation_radius == 2 and data.reference.tolist() == [0] * LENGTH
    plain = SelectionData.from_tasks(dataclasses.replace(task, details={}), task)
    assert plain.mutation_radius is None and plain.reference is None


def test_bootstrap_aggregates_each_resample_of_the_designs():
    values = np.random.default_rng(0).normal(size=20)
    settings = dataclasses.replace(FAST, draws=16, top_designs=0.2)
    picks = np.random.default_rng(settings.seed).integers(0, 20, (16, 20))
    for top_only in (False, True):
        expected = [aggregate(values[pick], top_only, settings.top_designs) for pick in picks]
        np.testing.assert_allclose(bootstrap(values, top_only, settings), expected, rtol=1e-12)


def test_expected_max_learns_from_the_training_rows_too():
    """Its evaluator fits every offline row: with labels only in the training split (the held-out
    rows flat) it still tells good designs from bad; the held-out-only evaluator cannot."""
    x, y = additive_data()
    flat = SelectionData(VOCAB, x[:400], y[:400], x[400:], np.zeros(200) + 0.01 * np.arange(200) % 1)
    good, bad = Candidate(designs_with(0.8), "any"), Candidate(designs_with(0.1), "any")
    expected_max = build_metric("expected-max", FAST).fit(flat)
    assert expected_max.score(good) > expected_max.score(bad) + 0.5
    pessimistic = build_metric("pessimistic", FAST).fit(flat)
    assert pessimistic.score(good) < pessimistic.score(bad) + 0.5


def linear_world(rows: int = 500, dim: int = 8, seed: int = 0):
    """Features phi (N, d) with labels linear in them, and random 'features' that carry no signal."""
    rng = np.random.default_rng(seed)
    phi = torch.as_tensor(rng.standard_normal((rows, dim)), dtype=torch.float32)
    y = (phi.double() @ torch.as_tensor(rng.standard_normal(dim))).numpy() + 0.05 * rng.standard_normal(rows)
    noise = torch.as_tensor(rng.standard_normal((rows, dim)), dtype=torch.float32)
    codes = rng.integers(0, VOCAB, size=(rows, LENGTH))
    return phi, noise, y, codes


def fitted_proxy(phi: torch.Tensor, y: np.ndarray) -> BidirectionalProxy:
    return BidirectionalProxy(EmbeddingStatistics.from_rows(phi, torch.as_tensor(y)))


def test_proxy_rank_prefers_the_proxy_that_ranks_held_out_rows():
    phi, noise, y, codes = linear_world()
    train, held = slice(0, 400), slice(400, None)
    data = SelectionData(VOCAB, codes[train], y[train], codes[held], y[held],
                         {"good": RowEmbeddings(phi[held]), "random": RowEmbeddings(noise[held])})
    metric = build_metric("proxy-rank").fit(data)
    good = metric.score(Candidate(codes[:4], "good", proxy=fitted_proxy(phi[train], y[train])))
    random = metric.score(Candidate(codes[:4], "random", proxy=fitted_proxy(noise[train], y[train])))
    assert good > 0.95 and abs(random) < 0.2


def test_top_rank_refits_without_the_top_rows_and_rewards_extrapolation():
    phi, noise, y, codes = linear_world()
    train, held = slice(0, 400), slice(400, None)
    top = top_rows(y[train], 0.1)
    assert len(top) == 40 and y[train][top].min() >= np.sort(y[train])[-40]
    embeddings = {"good": RowEmbeddings(phi[held], phi[train][top]),
                  "random": RowEmbeddings(noise[held], noise[train][top])}
    data = SelectionData(VOCAB, codes[train], y[train], codes[held], y[held], embeddings)
    metric = build_metric("top-rank").fit(data)
    good = metric.score(Candidate(codes[:4], "good", proxy=fitted_proxy(phi[train], y[train])))
    random = metric.score(Candidate(codes[:4], "random", proxy=fitted_proxy(noise[train], y[train])))
    assert good > 0.9 and random < 0.3
    # the proxy that is scored never saw the top rows: refitting on all rows would rank them too well to tell
    seen = fitted_proxy(noise[train], y[train]).predict(noise[train][top].double()).numpy()
    assert np.corrcoef(seen, y[train][top])[0, 1] > 0.3  # (the random proxy memorised its own top rows)


def test_statistics_downdate_removes_rows():
    phi, _, y, _ = linear_world(rows=50)
    every = EmbeddingStatistics.from_rows(phi, torch.as_tensor(y))
    first = EmbeddingStatistics.from_rows(phi[:30], torch.as_tensor(y[:30]))
    rest = every - EmbeddingStatistics.from_rows(phi[30:], torch.as_tensor(y[30:]))
    torch.testing.assert_close(rest.gram, first.gram)
    assert rest.count == 30 and rest.y_sum == pytest.approx(first.y_sum)
    with pytest.raises(ValueError, match="nothing would be left"):
        first - every


def test_holdout_and_aux_score_designs_with_the_trials_own_features():
    data = sequence_data(onehot=RowEmbeddings(one_hot(sequence_data().held_x, VOCAB)))
    embed = lambda codes: one_hot(codes, VOCAB)  # the onehot backbone's embedding
    holdout = build_metric("holdout", aux=AuxiliarySettings(epochs=60, members=3)).fit(data)
    good, bad = designs_with(0.8), designs_with(0.1)
    assert holdout.score(Candidate(good, "onehot", embed=embed)) > holdout.score(Candidate(bad, "onehot", embed=embed))
    with pytest.raises(ValueError, match="backbone"):
        holdout.score(Candidate(good, "tiny", embed=embed))
    x, y = data.train_x, data.train_y
    aux = AuxiliaryEnsemble(LENGTH * VOCAB, AuxiliarySettings(epochs=60, members=3), 0, torch.zeros(LENGTH * VOCAB),
                            torch.ones(LENGTH * VOCAB))
    aux.fit(embed(x), torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32))
    metric = build_metric("aux").fit(data)
    assert metric.score(Candidate(good, "onehot", aux=aux, embed=embed)) > \
        metric.score(Candidate(bad, "onehot", aux=aux, embed=embed))
    with pytest.raises(ValueError, match="needs the trial's aux"):
        metric.score(Candidate(good, "onehot", embed=embed))


def test_metrics_must_be_fitted_and_named():
    with pytest.raises(RuntimeError, match="fit"):
        build_metric("pessimistic").score(Candidate(designs_with(0.5), "any"))
    with pytest.raises(ValueError, match="unknown selection metric"):
        build_metric("oracle")
    with pytest.raises(ValueError, match="pessimism"):
        SelectionSettings(pessimism=-1)


class RaisingOracle:
    kind = OracleKind.CLOSED_FORM

    def __call__(self, codes):
        raise AssertionError("a selection metric read the oracle")


def small_task() -> Task:
    x, y = additive_data(rows=240, seed=3)
    return Task(name="additive", alphabet="ACGT", x=x, y=y, oracle=RaisingOracle(), score_range=(0.0, LENGTH))


SMALL_GRID = [dict(backbone="tiny", method="bib", lr=0.1, target=10.0),
              dict(backbone="onehot", method="forward", lr=0.03, target=2.0)]


def test_no_metric_reads_the_oracle():
    runs = bench.select_runs(small_task(), SMALL_GRID, [0], list(METRIC_NAMES),
                             {"steps": 2, "designs": 4, "aux_epochs": 1}, settings=FAST)
    assert len(runs) == 2 and runs[list(METRIC_NAMES)].notna().all().all()
    with pytest.raises(AssertionError, match="read the oracle"):  # the oracle does raise when it is called
        bench.score_with_oracle(small_task(), runs)


def test_judge_scores_a_perfect_and_an_inverted_metric():
    runs = pd.DataFrame({"task": "t", "config": list("abcd") * 2, "seed": [0] * 4 + [1] * 4,
                         "p100": [0.1, 0.2, 0.3, 0.4, 0.4, 0.3, 0.2, 0.1], "p50": [0.1, 0.2, 0.3, 0.4] * 2})
    runs["right"], runs["wrong"], runs["flat"] = runs.p100, -runs.p100, 1.0
    judged = bench.judge(runs, ["right", "wrong", "flat"]).set_index("metric")
    assert judged.loc["right", ["rho100", "regret", "percentile", ">= median", ">= mean"]].tolist() == [1.0, 0.0, 1.0,
                                                                                                        1.0, 1.0]
    assert judged.loc["wrong", "rho100"] == -1.0 and judged.loc["wrong", "percentile"] == 0.0
    assert judged.loc["wrong", ">= mean"] == 0.0 and judged.loc["wrong", "vs mean"] == pytest.approx(-0.15)
    assert judged.loc["flat", ">= mean"] == 1.0  # the tied configurations' mean is the grid's mean
    assert judged.loc["wrong", "regret"] == pytest.approx(0.3)
    assert judged.loc["flat", "regret"] == pytest.approx(0.15)  # ties: the mean over the tied configurations
    table = bench.overall(judged.reset_index())
    assert table.set_index("metric").loc["right", "tasks >= median"] == "1/1"
    assert table.set_index("metric").loc["wrong", "tasks >= mean"] == "0/1"
    assert table.set_index("metric").loc["right", "tasks >= mean (seed mean)"] == "1/1"
    one_bad_seed = runs.assign(m=[0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.3, 0.0])  # seed 1 picks 0.2 < 0.25 < 0.4
    judged = bench.judge(one_bad_seed, ["m"]).set_index("metric")
    assert judged.loc["m", ">= mean"] == 0.5 and judged.loc["m", "vs mean"] == pytest.approx(0.05)
    table = bench.overall(judged.reset_index()).set_index("metric")
    assert table.loc["m", "tasks >= mean"] == "0/1" and table.loc["m", "tasks >= mean (seed mean)"] == "1/1"


def test_baseline_config_is_judged_as_always_taking_that_configuration():
    import argparse

    runs = pd.DataFrame({"task": "t", "config": list("abcd"), "seed": 0, "p100": [0.1, 0.2, 0.3, 0.4],
                         "p50": 0.0, "m": [4.0, 3.0, 2.0, 1.0]})
    args = argparse.Namespace(ensemble=None, baseline_config="b", tie_break=[], tie_margin=1.0)
    runs, names = bench.derived_metrics(runs, ["m"], args)
    judged = bench.judge(runs, names).set_index("metric")
    assert names == ["m", "always b"] and judged.loc["always b", "regret"] == pytest.approx(0.2)
    assert judged.loc["always b", ">= mean"] == 0.0 and judged.loc["m", "regret"] == pytest.approx(0.3)
    with pytest.raises(UserError, match="not a configuration"):
        bench.derived_metrics(runs, ["m"], argparse.Namespace(ensemble=None, baseline_config="z", tie_break=[],
                                                               tie_margin=1.0))


def test_rank_ensemble_averages_each_metrics_rank_within_a_task_and_seed():
    runs = pd.DataFrame({"task": "t", "seed": [0, 0, 0, 1, 1, 1], "a": [1.0, 2.0, 3.0, 5.0, 4.0, 3.0],
                         "b": [30.0, 10.0, 20.0, 0.1, 0.3, 0.2]})
    combined = bench.rank_ensemble(runs, ["a", "b"])
    np.testing.assert_allclose(combined, [(1 / 3 + 1) / 2, (2 / 3 + 1 / 3) / 2, (1 + 2 / 3) / 2,
                                          (1 + 1 / 3) / 2, (2 / 3 + 1) / 2, (1 / 3 + 2 / 3) / 2])
    assert len(bench.broad_grid()) == 16 and "K=1" in bench.config_label(bench.broad_grid()[1])


def test_the_tie_rule_column_takes_the_default_configuration_among_indistinguishable_runs():
    draws = json.dumps([0.1, 0.5, 0.9, 0.3])
    runs = pd.DataFrame({"task": "t", "seed": 0, "backbone": ["onehot", "tiny", "tiny"],
                         "method": ["forward", "bib", "bib"], "lr": [0.3, 0.1, 0.1], "target": 10.0,
                         "m": [2.0, 1.9, -5.0], "m draws": [draws, draws, json.dumps([-5.0, -5.1, -4.9, -5.0])],
                         "design_distance": [1.0, 2.0, 0.5]})
    np.testing.assert_array_equal(bench.with_tie_rule(runs, "m", "defaults"), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(bench.with_tie_rule(runs, "m", "conservative"), [1.0, 0.0, 0.0])


def test_mixed_grid_sizes_runs_in_multiples_of_the_benchmarks_designs_and_steps():
    configs = [bench.sized(config, designs=48, steps=25) for config in bench.GRIDS["mixed"]()]
    assert len(configs) == 18 and {c["backbone"] for c in configs} == {"tiny", "onehot", "ntk"}
    assert sorted(c.get("designs", 48) for c in configs) == [48] * 15 + [96] * 3
    assert sorted(c.get("steps", 25) for c in configs) == [25] * 15 + [50] * 3
    labels = [bench.config_label(c) for c in configs]
    assert len(set(labels)) == 18 and "ntk/bib/lr=0.1/target=10/designs=96" in labels
    second = [bench.config_label(bench.sized(c, designs=48, steps=25)) for c in bench.GRIDS["mixed2"]()]
    assert len(set(second)) == 18 and not set(second) & set(labels)
    assert "ntk/bidirectional/lr=0.1/target=2/designs=96" in second
    third = [bench.config_label(bench.sized(c, designs=48, steps=25)) for c in bench.GRIDS["mixed3"]()]
    assert len(set(third)) == 18 and not set(third) & (set(labels) | set(second))
    assert "onehot/bidirectional/lr=0.2/target=10/K=4/steps=50" in third
    fourth = [bench.config_label(bench.sized(c, designs=48, steps=25)) for c in bench.GRIDS["mixed4"]()]
    assert len(set(fourth)) == 18 and not set(fourth) & (set(labels) | set(second) | set(third))
    fifth = [bench.config_label(bench.sized(c, designs=48, steps=25)) for c in bench.GRIDS["mixed5"]()]
    assert len(set(fifth)) == 18 and not set(fifth) & (set(labels) | set(second) | set(third) | set(fourth))
    assert "tiny/bib/lr=0.25/target=10/designs=96" in fifth


def test_selection_benchmark_end_to_end(tmp_path, capsys):
    spec = "ehrlich:length=8,states=4,motifs=1,motif_length=2,offline=300"
    code = bench.main(["--tasks", spec, "--seeds", "0", "--designs", "4", "--steps", "2", "--quiet",
                       "--metrics", "pessimistic,proxy-rank", "--out", str(tmp_path)])
    assert code == 0
    runs = pd.read_csv(tmp_path / "selection_runs.csv")
    assert len(runs) == len(bench.grid()) and {"pessimistic", "proxy-rank", "p100", "p50"} <= set(runs.columns)
    summary = pd.read_csv(tmp_path / "selection_summary.csv")
    assert set(summary.metric) == {"pessimistic", "proxy-rank"} and summary.regret.ge(0).all()
    assert len(np.load(tmp_path / "selection_designs.npz").files) == len(runs)
    out = capsys.readouterr().out
    assert "| metric | rho100 |" in out and "no metric reads it" in out
    # --rescore adds a metric that reads only designs to the saved runs, without running the grid
    saved = runs.pessimistic.to_numpy()
    assert bench.main(["--rescore", "--quiet", "--metrics", "pessimistic,proxy-rank,expected-max",
                       "--out", str(tmp_path)]) == 0
    rescored = pd.read_csv(tmp_path / "selection_runs.csv")
    assert rescored["expected-max"].notna().all() and len(rescored) == len(runs)
    assert all(len(json.loads(text)) == SelectionSettings().members for text in rescored["expected-max draws"])
    np.testing.assert_allclose(rescored.pessimistic, saved, rtol=1e-5)  # same split, same evaluator
    # --judge fits nothing: it judges the saved columns again
    assert bench.main(["--judge", "--quiet", "--metrics", "pessimistic,expected-max", "--out", str(tmp_path)]) == 0
    assert set(pd.read_csv(tmp_path / "selection_summary.csv").metric) == {"pessimistic", "expected-max"}
    with pytest.raises(UserError, match="no columns"):
        bench.main(["--judge", "--metrics", "mean-top", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="holdout"):  # reads the trials' models, which were not kept
        bench.main(["--rescore", "--metrics", "holdout", "--out", str(tmp_path)])


def test_sweep_yaml_accepts_every_metric_and_rejects_others(tmp_path):
    def load(**extra):
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump({"name": "x", "base": {"seeds": [0], "backbone": "tiny"},  # top-rank needs an LM
                                        "space": {"lr": {"loguniform": [0.01, 0.1]}}, **extra}))
        return load_sweep_config(str(path))

    for name in METRIC_NAMES:
        assert load(metric=name).metric == name
    assert load().metric == "expected-max"
    assert load(selection={"pessimism": 2.0}).selection_settings().pessimism == 2.0
    assert load().selection_settings().unknown_past_radius is True
    assert load(selection={"unknown_past_radius": False}).selection_settings().unknown_past_radius is False
    for bad, message in [({"metric": "oracle"}, "metric"), ({"selection": {"pessimism": -1}}, "pessimism"),
                         ({"selection": {"surprise": 1}}, "surprise"),
                         ({"selection": {"unknown_past_radius": 2}}, "unknown_past_radius")]:
        with pytest.raises(UserError, match=message):
            load(**bad)


def test_the_benchmarks_evaluator_settings_come_from_its_flags_and_bad_values_are_user_errors():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    settings = bench.evaluator_settings(parser.parse_args(["--members", "5", "--evaluator-seed", "2",
                                                           "--top-designs", "0.5", "--extrapolate-past-radius"]))
    assert (settings.members, settings.seed, settings.top_designs, settings.unknown_past_radius) == (5, 2, 0.5, False)
    assert bench.evaluator_settings(parser.parse_args([])).top_designs == 0.25
    assert bench.evaluator_settings(parser.parse_args([])).unknown_past_radius is True
    with pytest.raises(UserError, match="top_designs"):
        bench.evaluator_settings(parser.parse_args(["--top-designs", "1.5"]))
