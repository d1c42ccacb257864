"""Sweeps, serving and design runs on a cluster whose worker node shares no disk with the head.

Each test starts an ``IsolatedCluster`` (tests/conftest.py): a head with no CPUs (so all work
lands on the worker) and one worker in its own mount namespace, which sees neither the data
directory nor the head-only folder that holds outputs and artifacts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bib_ray.backbones import BackboneSpec
from tests.helpers import REPO_ROOT, run_stopped_inside_ray_init

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
    from bib_ray.proxy.artifacts import load_proxy_artifact

    assert load_proxy_artifact(best / "proxy").length == 8
    # the trials' checkpoints live on the storage both nodes see, not in the head-only folder
    assert list(cluster.shared.glob("quick/*/checkpoint_*/summary.json"))
    resumed = bib_ray(cluster, "sweep", "--config", str(config), "--address", cluster.address, "--shards", "1",
                      "--storage", str(cluster.shared), "--out", str(out), "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert set(pd.read_csv(out / "quick" / "sweep_results.csv").status) == {"completed"}


def test_a_sweep_whose_trials_all_fail_exits_non_zero(isolated_cluster, shared_data_dir):
    """Without --storage the trials on the worker cannot write to the head's folder: every trial
    errors, and the command says so and exits 1 instead of 0."""
    cluster = isolated_cluster
    config = tiny_sweep(cluster.head_only, shared_data_dir)
    run = bib_ray(cluster, "sweep", "--config", str(config), "--address", cluster.address, "--shards", "1",
                  "--out", str(cluster.head_only / "sweeps"), "--quiet")
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 of 2 trials failed" in run.stderr and "--storage" in run.stderr, run.stderr[-4000:]


def test_serve_answers_from_a_replica_on_the_worker_with_a_head_only_artifact(isolated_cluster, shared_data_dir):
    import requests

    from bib_ray.core.aux_ensemble import AuxiliarySettings
    from bib_ray.proxy.fitting import ProxySettings, fit_and_save_proxy
    from bib_ray.tasks import load_task
    from bib_ray.distributed.cluster_utils import free_port

    cluster = isolated_cluster
    artifact = fit_and_save_proxy(load_task("tfbind8", shared_data_dir),
                                  ProxySettings(BackboneSpec("ntk"), device="cpu", ntk_rows=1000),  # the default
                                  cluster.head_only / "proxy", AuxiliarySettings(members=2, epochs=1, max_rows=500))
    port = free_port()
    run = bib_ray(cluster, "serve", str(artifact), "--address", cluster.address, "--port", str(port), timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + cluster.log_tail()
    answer = requests.post(f"http://127.0.0.1:{port}/score", json={"sequences": ["ACGTACGT", "TTTTAAAA"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    expected = __import__("bib_ray.proxy.artifacts", fromlist=["x"]).load_proxy_artifact(artifact).score(
        ["ACGTACGT", "TTTTAAAA"])["proxy_score"]
    assert [row["proxy_score"] for row in answer.json()["scores"]] == pytest.approx(expected, rel=1e-6)
    import ray

    ray.init(address=cluster.address, log_to_driver=False)
    try:
        from ray import serve

        head = next(n for n in ray.nodes() if n["Alive"] and n["Resources"].get("worker") is None)
        assert head["Resources"].get("CPU", 0) == 0, "the replica (1 CPU) can only have been placed on the worker"
        serve.delete("bib-ray-proxy")
    finally:
        ray.shutdown()


def test_design_on_the_cluster_gives_the_local_designs(isolated_cluster, shared_data_dir):
    cluster = isolated_cluster
    common = ["design", "--task", "tfbind8-r", "--data-dir", str(shared_data_dir), "--seeds", "0-4", "--steps", "4",
              "--designs", "16", "--aux-epochs", "1", "--quiet"]
    on_cluster = bib_ray(cluster, *common, "--address", cluster.address, "--shards", "2",
                         "--out", str(cluster.head_only / "ray"))
    assert on_cluster.returncode == 0, on_cluster.stderr[-3000:] + cluster.log_tail()
    local = bib_ray(cluster, *common, "--local", "--out", str(cluster.head_only / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    ray_designs = pd.read_csv(cluster.head_only / "ray" / "designs.csv")
    local_designs = pd.read_csv(cluster.head_only / "local" / "designs.csv")
    assert list(ray_designs.sequence) == list(local_designs.sequence)
    assert ray_designs.proxy_score.to_numpy() == pytest.approx(local_designs.proxy_score.to_numpy(), rel=1e-5)
    summary = json.loads((cluster.head_only / "ray" / "summary.json").read_text())
    busy = summary["timings"]["shard_busy_s_by_node"]
    assert len(busy) == 1 and all(seconds > 0 for seconds in busy.values())  # both shards on the worker


@pytest.mark.parametrize("isolated_cluster", [{"dashboard": True}], indirect=True)
def test_a_design_run_submitted_as_a_ray_job(isolated_cluster, shared_data_dir):
    """`ray job submit --working-dir .` as the README shows; logs and outputs come back as documented."""
    cluster = isolated_cluster
    ray_cli, bib_ray_cli = (str(Path(sys.executable).with_name(name)) for name in ("ray", "bib-ray"))
    out = cluster.head_only / "job-run"
    submit = subprocess.run([ray_cli, "job", "submit", "--address", cluster.dashboard_url, "--working-dir", ".",
                             "--", bib_ray_cli, "design", "--task", "tfbind8-r",
                             "--data-dir", str(shared_data_dir), "--steps", "3", "--designs", "8", "--aux-epochs", "1",
                             "--shards", "1", "--quiet", "--out", str(out)],
                            cwd=REPO_ROOT, env=cluster.env(), capture_output=True, text=True, timeout=600)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in submit.stdout and f"outputs in {out}" in submit.stdout
    assert (out / "designs.csv").is_file()  # the job's driver runs on the head: --out is a head path


def test_a_stop_while_the_driver_joins_the_cluster_is_a_clean_stop_and_the_cluster_stays(isolated_cluster):
    """SIGTERM from inside ``ray.init(address=...)``: the driver stops cleanly (no stack dump, exit 143) and the
    head and the worker without the head's disk stay up for the next command."""
    cluster = isolated_cluster
    done = run_stopped_inside_ray_init(cluster.head_only, "SIGTERM", address=cluster.address, env=cluster.env())
    assert done.returncode == 128 + signal.SIGTERM, (done.returncode, done.stderr[-3000:])
    assert done.stdout.strip() == "stopped by SIGTERM", done.stdout
    assert "SIGTERM received" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    probe = subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False);"
                            " print(sum(n['Alive'] for n in ray.nodes()))", cluster.address],
                           env=cluster.env(), capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.split()[-1] == "2", probe.stdout + probe.stderr[-2000:]


def test_a_sweep_stopped_on_the_cluster_keeps_its_finished_trials_and_resumes(isolated_cluster, shared_data_dir):
    """SIGTERM once a trial on the worker has written a checkpoint to the storage both nodes see: exit 143 with
    the resume hint (the driver on the head finds the experiment there); --resume finishes without running
    the checkpointed steps again."""
    cluster = isolated_cluster
    config = tiny_sweep(cluster.head_only, shared_data_dir, trials=4)
    sweep = yaml.safe_load(config.read_text())
    sweep["base"]["steps"], sweep["report_every"], sweep["search"]["max_concurrent"] = 60, 30, 1
    config.write_text(yaml.safe_dump(sweep))
    storage, out = cluster.shared / "stopped", cluster.head_only / "stopped-sweeps"
    argv = ["sweep", "--config", str(config), "--address", cluster.address, "--shards", "1", "--storage",
            str(storage), "--out", str(out), "--quiet"]
    process = subprocess.Popen([sys.executable, "-m", "bib_ray.cli", *argv], env=cluster.env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    experiment = storage / "quick"
    deadline = time.monotonic() + 300
    while (time.monotonic() < deadline and process.poll() is None
           and not list(experiment.glob("run_trial_*/checkpoint_*/summary.json"))):
        time.sleep(0.5)
    assert process.poll() is None, "the sweep ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 128 + signal.SIGTERM, err[-3000:] + cluster.log_tail()
    assert err.strip().splitlines()[-1].startswith("bib-ray: stopped by SIGTERM; the trials' results so far are "
                                                   "kept"), err[-3000:]
    assert not (out / "quick" / "sweep_results.csv").exists(), "a stopped sweep writes no table"
    finished = {p: p.stat().st_mtime for p in experiment.glob("run_trial_*/checkpoint_*/summary.json")}
    assert finished
    resumed = bib_ray(cluster, *argv, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:] + cluster.log_tail()
    results = pd.read_csv(out / "quick" / "sweep_results.csv")
    assert len(results) == 4 and set(results.status) == {"completed"}
    for path, mtime in finished.items():
        assert path.stat().st_mtime == mtime, f"{path.parent.parent.name} was run again"
