"""A worker node of a multi-node Ray cluster disappears mid-run; the run finishes unchanged."""

import threading
import time

import numpy as np
import pytest

from bib_ray.run.config import build_config
from bib_ray.distributed.shards import ShardPool, ShardResources
from bib_ray.run.engine import initial_logits
from bib_ray.run.executor import LocalExecutor
from bib_ray.tasks import load_task
from tests.helpers import RAY_TEST_TMP


@pytest.fixture
def cluster():
    """Head (driver only) + two 1-CPU worker nodes that each offer two 'shard' slots."""
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this process may hold the tests' local Ray; the cluster needs its own connection
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "temp_dir": str(RAY_TEST_TMP),
                                                            "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1, resources={"shard": 2}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_removed_worker_node_does_not_change_the_designs(cluster, shared_data_dir):
    import ray

    ray_cluster, workers = cluster
    task = load_task("tfbind8-r", shared_data_dir)
    config = build_config(dict(task="tfbind8-r", backbone="tiny", method="bib", steps=120, designs=16, aux_epochs=1))
    executor = LocalExecutor()
    fitted = executor.fit(task, config.proxy_settings())
    (aux, _), = executor.train_aux(fitted, config.aux_settings(), [0])
    logits = initial_logits(task, 16, 0, 0.1)
    settings = config.optimiser_settings()
    pool = ShardPool("tiny", task, ShardResources(count=2, cpus=0.5, custom={"shard": 1}, max_restarts=3,
                                                  max_task_retries=3))
    try:
        undisturbed, = pool.run_seeds(fitted.proxy, [aux], settings, [logits], 4)
        homes = [ray.get(actor.where.remote())["node_id"] for actor in pool.actors]
        victim = next(node for node in workers if node.node_id == homes[0])
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(
            result=pool.run_seeds(fitted.proxy, [aux], settings, [logits], 4)[0]))
        runner.start()
        time.sleep(2.0)
        ray_cluster.remove_node(victim)
        runner.join(timeout=240)
        assert not runner.is_alive(), "the run did not finish after the node was removed"
        np.testing.assert_array_equal(outcome["result"].final_codes, undisturbed.final_codes)
        assert ray.get(pool.actors[0].where.remote())["node_id"] != homes[0], "the shard moved to a live node"
    finally:
        pool.shutdown()


def test_cli_runs_on_an_existing_cluster(cluster, shared_data_dir, tmp_path):
    """`bib-ray design --address` uses the given cluster instead of starting an embedded Ray."""
    import json
    import os
    import subprocess
    import sys

    ray_cluster, _ = cluster
    out = tmp_path / "run"
    command = [sys.executable, "-m", "bib_ray.cli", "design", "--address", ray_cluster.address, "--task", "tfbind8-r",
               "--data-dir", str(shared_data_dir), "--steps", "3", "--designs", "8", "--aux-epochs", "1",
               "--shards", "2", "--cpus-per-shard", "0.5", "--out", str(out), "--quiet"]
    run = subprocess.run(command, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timings"]["ray"] == f"Ray cluster at {ray_cluster.address}"
