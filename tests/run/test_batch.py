"""The batch to order: distinct, never offline or excluded, ranked by the bound, diverse; its rule on known cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bib_ray.cli import main
from bib_ray.run.batch import BatchSettings, greedy, lower_bound
from bib_ray.tasks import load_task

SMALL = "ehrlich:states=8,length=12,motifs=2,motif_length=3,offline=300"


def design(tmp_path, name: str, *extra: str, steps: str = "6") -> tuple[pd.DataFrame, dict]:
    out = tmp_path / name
    code = main(["design", "--local", "--task", SMALL, "--steps", steps, "--designs", "24", "--seeds", "0,1",
                 "--aux-epochs", "1", "--out", str(out), "--quiet", *extra])
    assert code == 0
    return pd.read_csv(out / "batch.csv"), json.loads((out / "summary.json").read_text())


def test_the_bound_is_mean_minus_kappa_std_over_the_proxy_and_the_members():
    # proxy 3, three members at 1: predictions (3, 1, 1, 1), mean 1.5, sample std 1
    np.testing.assert_allclose(lower_bound(np.array([3.0]), np.array([1.0]), np.array([0.0]), 3, 1.0), [0.5])
    np.testing.assert_allclose(lower_bound(np.array([2.0]), np.array([2.0]), np.array([0.0]), 5, 2.0), [2.0])
    assert BatchSettings(8, checkpoints=4).checkpoint_steps(100) == (20, 40, 60, 80)
    assert BatchSettings(8, checkpoints=0).checkpoint_steps(25) == ()


def test_greedy_keeps_its_distance_and_its_cap_per_start():
    codes = np.array([[0, 0, 0], [0, 0, 1], [1, 1, 0], [1, 1, 1], [2, 2, 2]])
    starts = np.array([[0, 0, 0]] * 4 + [[2, 2, 2]])
    bound = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert greedy(codes, starts, bound, BatchSettings(5)) == [0, 1, 2, 3, 4]
    assert greedy(codes, starts, bound, BatchSettings(5, min_distance=2)) == [0, 2, 4]
    assert greedy(codes, starts, bound, BatchSettings(5, per_start=1)) == [0, 4]
    assert greedy(codes, starts, bound, BatchSettings(2)) == [0, 1]


def test_batch_is_distinct_new_ranked_and_reported(tmp_path):
    batch, summary = design(tmp_path, "run", "--batch", "40")
    task = load_task(SMALL)
    assert len(batch) == 40 and batch.sequence.is_unique and list(batch["rank"]) == list(range(1, 41))
    assert not set(batch.sequence) & set(task.sequences()), "no batch design is already measured"
    assert (np.diff(batch.bound) <= 1e-12).all(), "ranked by the bound"
    assert {"mutations", "start_sequence", "seed", "trajectory", "step", "proxy_score", "aux_mean", "aux_std",
            "hamming_to_offline", "oracle_score", "normalised_score"} <= set(batch.columns)
    assert set(batch.seed) <= {0, 1} and (batch.hamming_to_offline >= 1).all()
    assert summary["batch"]["chosen"] == 40 and summary["batch"]["settings"]["size"] == 40
    assert summary["batch"]["oracle"]["designs"] == 40 and summary["batch"]["short_by"] == 0
    assert (tmp_path / "run" / "batch.fasta").read_text().startswith(">rank1_seed")


def test_excluded_sequences_never_appear(tmp_path):
    first, _ = design(tmp_path, "first", "--batch", "30")
    excluded = tmp_path / "ordered.fasta"
    excluded.write_text("".join(f">ordered{i}\n{s}\n" for i, s in enumerate(first.sequence[:20])))
    again, summary = design(tmp_path, "again", "--batch", "30", "--exclude", str(excluded))
    assert not set(again.sequence) & set(first.sequence[:20])
    assert summary["batch"]["excluded_dropped"] >= 20  # the same run reaches them again; they are dropped
    assert set(first.sequence[20:]) & set(again.sequence), "the rest of the first batch is still eligible"


def test_a_batch_larger_than_the_candidates_says_so(tmp_path, capsys):
    batch, summary = design(tmp_path, "short", "--batch", "5000", "--batch-checkpoints", "0")
    assert len(batch) < 5000 and summary["batch"]["short_by"] == 5000 - len(batch)
    assert "only" in capsys.readouterr().out


def test_a_run_that_never_leaves_its_starts_orders_nothing_already_measured(tmp_path):
    batch, summary = design(tmp_path, "still", "--batch", "10", "--lr", "1e-6", steps="2")
    assert summary["batch"]["offline_dropped"] >= 1 and len(batch) == 0 and summary["batch"]["short_by"] == 10
