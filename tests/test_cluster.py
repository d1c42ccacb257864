"""Sweeps, serving and design runs on a cluster whose worker node shares no disk with the head.

Each test starts an ``IsolatedCluster`` (tests/conftest.py): a head with no CPUs (so all work
lands on the worker) and one worker in its own mount namespace, which sees neither the data
directory nor the head-only folder that holds outputs and artifacts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def bib_ray(cluster, *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, against the cluster."""
    return subprocess.run([sys.executable, "-m", "bib_ray.cli", *argv], env=cluster.env(), capture_output=True,
                          text=True, timeout=timeout)


def tiny_sweep(folder: Path, data_dir: Path, trials: int = 2, **base) -> Path:
    """tune_configs/quick.yaml scaled down to a few seconds a trial (same schema, same metric)."""
    sweep = yaml.safe_load((REPO_ROOT / "tune_configs" / "quick.yaml").read_text())
    sweep["base"].update(steps=6, designs=8, aux_epochs=1, aux_max_rows=500, data_dir=str(data_dir), **base)
    sweep["space"] = {"lr": {"loguniform": [0.02, 0.3]}}
    sweep["search"].update(num_samples=trials, max_concurrent=2)
    sweep["scheduler"] = {"kind": "fifo"}
    sweep["report_every"] = 3
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_sweep_runs_on_a_worker_without_the_heads_disk(isolated_cluster, shared_data_dir):
    cluster = isolated_cluster
    out = cluster.head_only / "sweeps"
    config = tiny_sweep(cluster.head_only, shared_data_dir)
    run = bib_ray(cluster, "sweep", "--config", str(config), "--address", cluster.address, "--shards", "1",
                  "--storage", str(cluster.shared), "--out", str(out), "--quiet")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + cluster.log_tail()
    table = pd.read_csv(out / "quick" / "sweep_results.csv")
    assert len(table) == 2 and set(table.status) == {"completed"}
    best = out / "quick" / "best"
    assert (best / "designs.csv").is_file() and (best / "summary.json").is_file()
    from bib_ray.artifacts import load_proxy_artifact

    assert load_proxy_artifact(best / "proxy").length == 8
    # the trials' checkpoints live on the storage both nodes see, not in the head-only folder
    assert list(cluster.shared.glob("quick/*/checkpoint_*/summary.json"))


def test_a_sweep_whose_trials_all_fail_exits_non_zero(isolated_cluster, shared_data_dir):
    """Without --storage the trials on the worker cannot write to the head's folder: every trial
    errors, and the command says so and exits 1 instead of 0."""
    cluster = isolated_cluster
    config = tiny_sweep(cluster.head_only, shared_data_dir)
    run = bib_ray(cluster, "sweep", "--config", str(config), "--address", cluster.address, "--shards", "1",
                  "--out", str(cluster.head_only / "sweeps"), "--quiet")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 of 2 trials failed" in run.stderr and "--storage" in run.stderr, run.stderr[-4000:]
