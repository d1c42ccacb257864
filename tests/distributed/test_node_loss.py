"""Losing a worker node while it works, on a cluster whose nodes share no disk (``IsolatedCluster``: a head
with no CPUs and two 2-CPU workers, each in its own mount namespace).

A node is lost as a machine is: SIGKILL to its whole process group (raylet, object store, workers), no
goodbye; the head notices within ``NODE_TIMEOUT_S``. A design run, a sweep and the scoring service then
carry on on the surviving node and give what an undisturbed run gives. Each test prints what it killed,
when, and what the run did (``pytest -s``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bib_ray.backbones import BackboneSpec
from bib_ray.distributed.cluster_utils import IsolatedCluster, free_port, namespaces_permitted
from tests.helpers import REPO_ROOT, shared_data_dir_or_none

pytestmark = pytest.mark.slow
NODE_TIMEOUT_S = 3.0


@pytest.fixture
def cluster(tmp_path):
    """A fresh head + two workers for each test (each test loses one)."""
    import ray

    reason = namespaces_permitted()
    if reason is not None:
        pytest.skip(f"nodes that share no disk cannot be made here: {reason}")
    data = shared_data_dir_or_none()
    if data is None:
        pytest.skip("shared data directory not found (set BIB_RAY_DATA)")
    head_only, shared = tmp_path / "head-only", tmp_path / "shared-storage"
    head_only.mkdir()
    shared.mkdir()
    ray.shutdown()  # this process may hold the tests' local Ray
    made = IsolatedCluster(tmp_path, [head_only, data], workers=2, node_timeout_s=NODE_TIMEOUT_S)
    try:
        made.start()
        made.head_only, made.shared, made.data = head_only, shared, data
        yield made
    finally:
        ray.shutdown()
        made.stop()


def cli(cluster, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bib_ray.cli", *argv], env=cluster.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def kill_when(cluster, seconds: float, index: int = 0) -> threading.Thread:
    """Lose worker ``index`` ``seconds`` from now (in a thread); ``.killed_at`` records when."""
    def later() -> None:
        time.sleep(seconds)
        thread.killed_at = time.monotonic()
        cluster.kill_worker(index)

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    return thread


def test_a_design_run_that_loses_a_node_gives_the_undisturbed_designs(cluster):
    args = ["design", "--address", cluster.address, "--task", "tfbind8-r", "--data-dir", str(cluster.data),
            "--seeds", "0-3", "--steps", "60", "--designs", "64", "--shards", "2", "--quiet"]
    started = time.monotonic()
    status, out, err = finish(cli(cluster, *args, "--out", str(cluster.head_only / "undisturbed")))
    undisturbed_s = time.monotonic() - started
    assert status == 0, out[-2000:] + err[-3000:] + cluster.log_tail()
    started = time.monotonic()
    process = cli(cluster, *args, "--out", str(cluster.head_only / "disturbed"))
    killer = kill_when(cluster, 0.45 * undisturbed_s)
    status, out, err = finish(process)
    disturbed_s = time.monotonic() - started
    killer.join()
    print(f"\ndesign run: undisturbed {undisturbed_s:.1f} s; worker 0 killed {killer.killed_at - started:.1f} s into "
          f"the second run, which finished with status {status} after {disturbed_s:.1f} s "
          f"({disturbed_s / undisturbed_s:.2f}x)")
    assert status == 0, out[-2000:] + err[-3000:] + cluster.log_tail()
    first, second = (pd.read_csv(cluster.head_only / name / "designs.csv") for name in ("undisturbed", "disturbed"))
    assert first.sequence.tolist() == second.sequence.tolist()
    np.testing.assert_allclose(first.proxy_score, second.proxy_score, rtol=1e-6)
    assert disturbed_s < 2.5 * undisturbed_s


def sweep_yaml(cluster) -> Path:
    """tune_configs/quick.yaml as a seeded grid of 4 trials, two at a time, each ~15 s."""
    sweep = yaml.safe_load((REPO_ROOT / "tune_configs" / "quick.yaml").read_text())
    sweep["base"].update(steps=40, designs=32, aux_epochs=2, data_dir=str(cluster.data))
    sweep["space"] = {"lr": {"grid": [0.03, 0.1]}, "method": {"grid": ["bib", "forward"]}}
    sweep["search"] = {"algorithm": "grid", "num_samples": 1, "max_concurrent": 2, "seed": 0}
    sweep["scheduler"] = {"kind": "fifo"}
    sweep["report_every"] = 10
    path = cluster.head_only / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def ray_processes(title_fragment: str) -> list[int]:
    """PIDs of Ray worker processes whose title (``ray::Class.method``) holds ``title_fragment``."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if title_fragment in Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def actors_on(cluster, index: int, title_fragment: str) -> int:
    """How many Ray worker processes titled with ``title_fragment`` run on worker node ``index`` now."""
    count = 0
    for pid in ray_processes(title_fragment):
        try:
            count += cluster.worker_of(pid) == index
        except OSError:
            continue
    return count


def test_a_sweep_that_loses_a_node_retries_its_trials_and_chooses_as_before(cluster):
    config = sweep_yaml(cluster)

    def sweep(name: str) -> subprocess.Popen:
        return cli(cluster, "sweep", "--config", str(config), "--address", cluster.address, "--shards", "1",
                   "--storage", str(cluster.shared / name), "--out", str(cluster.head_only / name), "--quiet")

    started = time.monotonic()
    status, out, err = finish(sweep("undisturbed"))
    undisturbed_s = time.monotonic() - started
    assert status == 0, out[-2000:] + err[-3000:] + cluster.log_tail()
    started = time.monotonic()
    process = sweep("disturbed")
    while process.poll() is None and not actors_on(cluster, 0, "ray::ImplicitFunc"):  # a trial runs on worker 0
        time.sleep(0.5)
    time.sleep(2.0)
    trials_lost = actors_on(cluster, 0, "ray::ImplicitFunc")
    killed_at = time.monotonic() - started
    cluster.kill_worker(0)
    status, out, err = finish(process)
    disturbed_s = time.monotonic() - started
    first, second = (pd.read_csv(cluster.head_only / name / "quick" / "sweep_results.csv")
                     for name in ("undisturbed", "disturbed"))
    print(f"\nsweep: undisturbed {undisturbed_s:.1f} s; worker 0 killed {killed_at:.1f} s into the second sweep, with "
          f"{trials_lost} trial(s) running on it; the sweep finished with status {status} after {disturbed_s:.1f} s "
          f"({disturbed_s / undisturbed_s:.2f}x); trials {list(second.status)}")
    assert status == 0, out[-2000:] + err[-3000:] + cluster.log_tail()
    assert trials_lost >= 1, "the lost node was running a trial"
    assert len(second) == 4 and set(second.status) == {"completed"}
    chosen = [table.sort_values("selection_score", ascending=False).iloc[0] for table in (first, second)]
    assert (chosen[0].lr, chosen[0].method) == (chosen[1].lr, chosen[1].method)
    best = [pd.read_csv(cluster.head_only / name / "quick" / "best" / "designs.csv") for name in ("undisturbed",
                                                                                                  "disturbed")]
    assert best[0].sequence.tolist() == best[1].sequence.tolist()
    assert disturbed_s < 3 * undisturbed_s


def test_the_service_replaces_a_lost_replica_and_answers_every_request(cluster):
    import ray

    from bib_ray.core.aux_ensemble import AuxiliarySettings
    from bib_ray.proxy.artifacts import load_proxy_artifact
    from bib_ray.proxy.fitting import ProxySettings, fit_and_save_proxy
    from bib_ray.service.client import ProxyClient
    from bib_ray.tasks import load_task

    task = load_task("tfbind8", cluster.data)
    artifact = fit_and_save_proxy(task, ProxySettings(BackboneSpec("tiny"), device="cpu"),
                                  cluster.head_only / "proxy", AuxiliarySettings(members=2, epochs=1, max_rows=500))
    port = free_port()
    process = cli(cluster, "serve", str(artifact), "--address", cluster.address, "--port", str(port),
                  "--device", "cpu", "--cpus-per-replica", "1")
    status, out, err = finish(process, timeout=300)
    assert status == 0, out[-2000:] + err[-3000:] + cluster.log_tail()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        replicas = [pid for pid in ray_processes("ProxyScorer") if cluster.worker_of(pid) is not None]
        assert len(replicas) == 1, "one replica, on a worker"
        victim = cluster.worker_of(replicas[0])
        rng = np.random.default_rng(0)
        batches = [task.sequences(rng.integers(0, 4, (16, 8))) for _ in range(2000)]
        client = ProxyClient(f"http://127.0.0.1:{port}", retries=30, backoff_s=0.5, timeout_s=30)
        answers: dict[int, list[dict]] = {}
        failures: list[str] = []
        load_s, clients = 30.0, 4
        started = time.monotonic()

        def load(first: int) -> None:  # each client: every 4th batch, until load_s is over
            for i in range(first, len(batches), clients):
                if time.monotonic() - started > load_s:
                    return
                try:
                    answers[i] = client.score_request(batches[i])
                except Exception as error:  # noqa: BLE001 - a failed request is what this test counts
                    failures.append(f"request {i}: {error}")

        threads = [threading.Thread(target=load, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(5)
        killed_at = time.monotonic() - started
        cluster.kill_worker(victim)
        for thread in threads:
            thread.join(timeout=300)
        sent = sorted(answers)
        expected = load_proxy_artifact(artifact).score([s for i in sent for s in batches[i]])["proxy_score"]
        got = np.array([row["proxy_score"] for i in sent for row in answers[i]])
        print(f"\nserving: the replica's worker ({victim}) lost {killed_at:.1f} s into {load_s:.0f} s of load from "
              f"{clients} clients; {len(sent)} requests x 16 sequences, every one answered (the last after "
              f"{time.monotonic() - started:.1f} s), {client.retries_used} retried attempts (the proxy holds requests while Serve "
              f"replaces the replica, or answers 503 / drops the connection: the client retries)")
        survivors = [pid for pid in ray_processes("ProxyScorer") if cluster.worker_of(pid) is not None]
        assert not failures, failures[:5]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        assert replicas[0] not in survivors and survivors, "the replica was lost and replaced"
        assert {cluster.worker_of(pid) for pid in survivors} == {1 - victim}, "the replacement runs on the survivor"
    finally:
        ray.shutdown()

