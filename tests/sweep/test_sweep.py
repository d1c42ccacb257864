"""Tune sweeps: config validation, a small sweep end to end (random and Optuna), resume after an interrupt."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from bib_ray.backbones import BackboneSpec
from bib_ray.distributed.settings import RaySettings
from bib_ray.sweep.driver import run_sweep
from bib_ray.errors import UserError
from bib_ray.sweep.selection import split_offline
from bib_ray.sweep.config import Distribution, SweepConfig, load_sweep_config
from bib_ray.tasks import load_task
from tests.helpers import REPO_ROOT

REPO = REPO_ROOT


def small_sweep(name: str, algorithm: str = "random", samples: int = 3, **extra) -> SweepConfig:
    return SweepConfig.model_validate({
        "name": name,
        "base": {"task": "tfbind8-r", "backbone": "tiny", "steps": 6, "designs": 8, "seeds": [0], "aux_epochs": 1,
                 "aux_max_rows": 500},
        "space": {"lr": {"loguniform": [0.02, 0.3]}, "method": {"choice": ["bidirectional", "bib"]}},
        "search": {"algorithm": algorithm, "num_samples": samples, "max_concurrent": 2},
        "scheduler": {"kind": "fifo"}, "report_every": 3, **extra})


@pytest.mark.parametrize("config_file", sorted((REPO / "tune_configs").glob("*.yaml")))
def test_shipped_sweep_configs_validate(config_file):
    sweep = load_sweep_config(str(config_file))
    assert sweep.space and sweep.base_config().seeds


def test_a_sweeps_edit_limits_are_the_swept_ones_else_the_bases():
    assert small_sweep("k").edit_limits() == [None]
    swept = small_sweep("k", space={"max_mutations": {"randint": [1, 3]}, "lr": {"uniform": [0.1, 0.2]}})
    assert swept.edit_limits() == [1, 3]
    based = SweepConfig.model_validate({"name": "k", "base": {"seeds": [0], "max_mutations": 2},
                                        "space": {"lr": {"uniform": [0.1, 0.2]}}})
    assert based.edit_limits() == [2]


@pytest.mark.parametrize("change,message", [
    ({"space": {"task": {"choice": ["gb1"]}}}, "cannot be tuned"),
    ({"space": {"method": {"choice": ["bib", "sideways"]}}}, "method"),
    ({"space": {"mode": {"choice": ["forward"]}}}, "cannot be tuned"),
    ({"base": {"mode": "forward"}}, "method"),
    ({"space": {"lr": {"uniform": [0.3, 0.1]}}}, "low < high"),
    ({"base": {"backbone": "ntk", "seeds": [0]}, "metric": "top-rank"}, "top-rank refits the linear head"),
    ({"space": {"method": {"choice": ["bib", "bdi"]}}, "metric": "top-rank"}, "top-rank refits the linear head"),
    ({"space": {"max_mutations": {"choice": [0, 2]}}}, "max_mutations"),
    ({"space": {"lr": {"grid": [0.1, 0.2]}}}, "need search.algorithm: grid"),
    ({"base": {"seeds": [0, 1]}}, "one seed"),
    ({"metric": "oracle"}, "metric"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_sweep_configs_are_user_errors(tmp_path, change, message):
    values = {"name": "x", "base": {"seeds": [0]}, "space": {"lr": {"loguniform": [0.01, 0.1]}}, **change}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(UserError, match=message):
        load_sweep_config(str(path))


def test_holdout_split_is_disjoint_and_fixed(shared_data_dir):
    task = load_task("tfbind8-r", shared_data_dir)
    train, holdout = split_offline(task, 0.2)
    assert len(train.y) + len(holdout.y) == len(task.y) and 900 < len(holdout.y) < 1100
    rows = {tuple(r) for r in train.x}
    assert not any(tuple(r) in rows for r in holdout.x)
    again = split_offline(task, 0.2)[1]
    np.testing.assert_array_equal(again.x, holdout.x)


@pytest.mark.parametrize("algorithm,metric", [("random", "pessimistic"), ("optuna", "top-rank")])
def test_small_sweep_end_to_end(local_ray, shared_data_dir, tmp_path, algorithm, metric):
    sweep = small_sweep(f"small-{algorithm}", algorithm, samples=3, metric=metric)  # top-rank: embeds top rows
    sweep.base.update(data_dir=str(shared_data_dir))
    sweep.space["max_mutations"] = Distribution(choice=[1, 2])  # the edit limit is a sweep dimension
    outcome = run_sweep(sweep, RaySettings(shards=1), tmp_path)
    table, best = outcome.table, outcome.best_dir
    assert outcome.failure is None
    assert len(table) == 3 and set(table.status) == {"completed"}
    assert {"lr", "method", "selection_score", "oracle_p100_reporting_only"} <= set(table.columns)
    assert table.selection_score.notna().all()
    assert not np.allclose(table.selection_score, table.oracle_p100_reporting_only)  # the metric is not the oracle
    assert best is not None and (best / "designs.csv").is_file() and (best / "proxy" / "proxy.json").is_file()
    assert table.chosen.sum() == 1 and outcome.choice is not None
    chosen = table[table.chosen].iloc[0]
    assert table.design_distance.notna().all()
    assert table.selection_spread.notna().all() == (metric == "pessimistic")  # top-rank has no draws
    designs = pd.read_csv(best / "designs.csv")
    distance = [sum(a != b for a, b in zip(s, t)) for s, t in zip(designs.sequence, designs.start_sequence)]
    assert max(distance) <= chosen["max_mutations"]  # each trial's own edit limit holds
    best_summary = json.loads((best / "summary.json").read_text())
    assert best_summary["hyperparameters"]["lr"] == pytest.approx(chosen["lr"])
    assert (tmp_path / sweep.name / "sweep_results.csv").is_file()
    with pytest.raises(UserError, match="holds a sweep already"):
        run_sweep(sweep, RaySettings(shards=1), tmp_path)
    if algorithm == "random":  # search.seed fixes the draws: the same sweep again samples the same trials
        again = run_sweep(sweep.model_copy(update={"name": "again"}), RaySettings(shards=1), tmp_path).table
        assert sorted(again.lr) == pytest.approx(sorted(table.lr))


def test_a_sweep_over_backbones_runs_the_ntk_proxy_from_the_shared_pass(local_ray, shared_data_dir, tmp_path):
    """Backbone ntk in a sweep: the embedding pass keeps the kernel's rows and each ntk trial solves the NTK
    proxy on them; best/ holds the chosen trial's artifact, an NTK one when an ntk trial is chosen."""
    from bib_ray.proxy.artifacts import load_proxy_artifact

    sweep = SweepConfig.model_validate({
        "name": "ntk", "base": {"task": "tfbind8-r", "data_dir": str(shared_data_dir), "steps": 4, "designs": 8,
                                "seeds": [0], "aux_epochs": 1, "aux_max_rows": 500, "ntk_rows": 400},
        "space": {"backbone": {"grid": ["onehot", "ntk"]}, "method": {"grid": ["bib", "bidirectional"]}},
        "search": {"algorithm": "grid", "num_samples": 1, "max_concurrent": 2}, "scheduler": {"kind": "fifo"},
        "metric": "pessimistic"})
    assert sweep.trial_backbones() == ["onehot", "ntk"]
    outcome = run_sweep(sweep, RaySettings(shards=1), tmp_path)
    assert outcome.failure is None and set(outcome.table.status) == {"completed"} and len(outcome.table) == 4
    assert outcome.table.selection_score.notna().all()
    chosen = outcome.table[outcome.table.chosen].iloc[0]
    loaded = load_proxy_artifact(outcome.best_dir / "proxy")
    assert loaded.kind == ("ntk" if chosen["backbone"] == "ntk" else "linear-head")


class RecordingMetric:
    """A stand-in selection metric that keeps every batch of designs a trial asks it to score."""

    def __init__(self) -> None:
        self.scored: list[np.ndarray] = []

    def score(self, candidate) -> float:
        self.scored.append(np.asarray(candidate.designs))
        return 0.0

    def evaluate(self, candidate) -> tuple[float, None]:
        return self.score(candidate), None


def test_trial_reports_score_the_designs_the_final_decode_would_give(shared_data_dir, monkeypatch):
    """Every report of a trial, not only the last, scores designs within the trial's edit limit K."""
    from ray import tune

    from bib_ray.sweep.driver import PreparedBackbone, run_trial
    from bib_ray.proxy.fitting import ProxySettings, fit_proxy

    task = load_task("tfbind8-r", shared_data_dir)
    fitted = fit_proxy(task, ProxySettings(BackboneSpec("tiny")))
    prepared = {"tiny": PreparedBackbone(fitted.statistics, fitted.aux_rows, fitted.aux_phi, None)}
    sweep = small_sweep("reports")
    sweep.base.update(steps=12, batch=6)  # a batch in the sweep's base: every trial orders one
    reports, outputs = [], []
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics) or (
        checkpoint is not None and outputs.extend(os.listdir(checkpoint.path))))
    metric = RecordingMetric()
    run_trial({"lr": 0.3, "method": "forward", "max_mutations": 1}, sweep, task, prepared, metric)
    assert [r["step"] for r in reports] == [3, 6, 9, 12]
    assert {"designs.csv", "batch.csv", "summary.json", "proxy"} <= set(outputs)
    starts = task.starting_designs(8)
    for codes in metric.scored:
        assert ((codes != starts).sum(1) <= 1).all()
    assert any((codes != starts).any() for codes in metric.scored)  # the designs did move


def test_a_sweep_stopped_before_any_trial_ran_says_there_is_nothing_to_resume(tmp_path, monkeypatch, capsys):
    from bib_ray import cli
    from bib_ray.distributed.runtime import Stopped
    from bib_ray.sweep import driver

    def stopped_while_preparing(*_, **__):  # as a SIGTERM while Ray starts or the proxies embed
        raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(driver, "run_sweep", stopped_while_preparing)
    code = cli.main(["sweep", "--config", str(REPO / "tune_configs" / "quick.yaml"), "--out", str(tmp_path)])
    assert code == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "bib-ray: stopped by SIGTERM; no trial had started, so there is nothing to resume: run the same command again")


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_resumes_without_rerunning_finished_trials(shared_data_dir, tmp_path):
    sweep = small_sweep("resumable", samples=6, report_every=50)
    sweep.base.update(steps=150, data_dir=str(shared_data_dir))
    sweep.search.max_concurrent = 1
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(sweep.model_dump(mode="json", exclude_none=True)))
    command = [sys.executable, "-m", "bib_ray.cli", "sweep", "--config", str(config), "--out", str(tmp_path),
               "--quiet", "--shards", "1"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    experiment = tmp_path / "resumable"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(experiment.glob("run_trial_*/checkpoint_*/summary.json"))) < 2:
        time.sleep(1)
    process.send_signal(signal.SIGTERM)  # what systemd, Docker and Kubernetes send
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("bib-ray: stopped by SIGTERM; the trials' results so far are "
                                                   "kept") and "Traceback" not in err, err[-2000:]
    assert not (experiment / "sweep_results.csv").exists(), "a stopped sweep writes no table"
    finished = {p: p.stat().st_mtime for p in experiment.glob("run_trial_*/checkpoint_*/summary.json")}
    assert 2 <= len(finished) < 6, "the stop came too late to test resuming"
    resumed = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    results = pd.read_csv(experiment / "sweep_results.csv")
    assert len(results) == 6 and set(results.status) == {"completed"}
    for path, mtime in finished.items():
        assert path.stat().st_mtime == mtime, f"{path.parent.parent.name} was run again"
