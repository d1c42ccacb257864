"""Ray layer: sharded fitting, adding rows, parallel trajectories equal to one process, actor failure."""

import copy
import os
import sys
import time

import numpy as np
import pytest
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.distributed.design import add_rows, fit_proxy_on_shards, run_design_on_ray
from bib_ray.distributed.settings import RaySettings
from bib_ray.distributed.shards import ShardPool, ShardResources
from bib_ray.proxy.fitting import fit_proxy
from bib_ray.run.config import build_config
from bib_ray.run.engine import initial_logits, run_design
from bib_ray.run.executor import LocalExecutor
from bib_ray.tasks import load_task
from tests.helpers import ensure_local_ray

pytestmark = pytest.mark.usefixtures("local_ray")


@pytest.fixture(scope="module")
def task(shared_data_dir):
    return load_task("tfbind8-r", shared_data_dir)


@pytest.fixture(scope="module")
def pool(task):
    ensure_local_ray()
    pool = ShardPool("tiny", task, ShardResources(count=2, max_restarts=2, max_task_retries=2), embed_batch_size=256)
    try:
        yield pool
    finally:
        pool.shutdown()


def fitted_with_aux(task, config):
    """The proxy fitted in this process and seed 0's aux ensemble."""
    executor = LocalExecutor()
    fitted = executor.fit(task, config.proxy_settings())
    (aux, _), = executor.train_aux(fitted, config.aux_settings(), [0])
    return fitted, aux


def close(a: EmbeddingStatistics, b: EmbeddingStatistics) -> None:
    assert a.count == b.count
    for x, y in ((a.gram, b.gram), (a.phi_sum, b.phi_sum), (a.phi_y, b.phi_y)):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-6)
    assert a.y_sum == pytest.approx(b.y_sum) and a.y_sq_sum == pytest.approx(b.y_sq_sum)


def test_shards_reduce_to_the_single_process_statistics(task, pool):
    settings = build_config(dict(task="tfbind8-r", backbone="tiny", aux_max_rows=1000)).proxy_settings()
    sharded = fit_proxy_on_shards(task, settings, pool)
    single = fit_proxy(task, settings)
    close(sharded.statistics, single.statistics)
    torch.testing.assert_close(sharded.aux_phi, single.aux_phi, rtol=1e-5, atol=1e-6)
    # the solve is ill-conditioned (beta = 1e-6 trace/N), so compare what the proxy predicts, not w itself
    torch.testing.assert_close(sharded.proxy.predict(single.aux_phi), single.proxy.predict(single.aux_phi),
                               rtol=1e-5, atol=1e-6)
    nodes = {info["pid"] for info in __import__("ray").get([a.where.remote() for a in pool.actors])}
    assert len(nodes) == 2, "two separate LM replicas"


def test_adding_rows_embeds_only_the_new_rows(task, pool):
    settings = build_config(dict(task="tfbind8-r", backbone="tiny")).proxy_settings()
    half = len(task.y) // 2
    first = fit_proxy_on_shards(
        __import__("dataclasses").replace(task, x=task.x[:half], y=task.y[:half]), settings, pool)
    before = pool.rows_embedded
    grown = add_rows(first, pool, task.x[half:], task.y[half:])
    assert pool.rows_embedded - before == len(task.y) - half
    close(grown.statistics, fit_proxy(task, settings).statistics)
    assert len(grown.task.y) == len(task.y)


def test_parallel_trajectories_equal_single_process(task, pool):
    config = build_config(dict(task="tfbind8-r", backbone="tiny", method="bib+eta", steps=12, designs=24,
                               aux_epochs=1))
    fitted, aux = fitted_with_aux(task, config)
    logits = initial_logits(task, 24, 0, 0.1)
    settings = config.optimiser_settings()
    single, = LocalExecutor().run_trajectories(fitted, [aux], settings, [logits], 24)
    parallel, = pool.run_seeds(fitted.proxy, [aux], settings, [logits], 5)  # 5 uneven batches
    np.testing.assert_array_equal(parallel.final_codes, single.final_codes)
    np.testing.assert_allclose(parallel.history["gamma"], single.history["gamma"], rtol=1e-5, atol=1e-7)


class DiesOnceMidBatch(AuxiliaryEnsemble):
    """An aux ensemble whose first use in any process kills that process (``os._exit``): a shard dies
    while its batch is running, never before it starts or after it ends. ``marker`` makes it happen once."""

    marker: str

    def mean(self, phi: torch.Tensor) -> torch.Tensor:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return super().mean(phi)
        os._exit(1)


def test_killed_shard_is_restarted_and_the_run_is_unchanged(task, pool, tmp_path):
    import ray

    config = build_config(dict(task="tfbind8-r", backbone="tiny", method="bib", steps=20, designs=16, aux_epochs=1))
    fitted, aux = fitted_with_aux(task, config)
    logits = initial_logits(task, 16, 3, 0.1)
    settings = config.optimiser_settings()
    undisturbed, = pool.run_seeds(fitted.proxy, [aux], settings, [logits], 4)
    pids_before = [info["pid"] for info in ray.get([actor.where.remote() for actor in pool.actors])]
    dying = copy.copy(aux)
    dying.__class__, dying.marker = DiesOnceMidBatch, str(tmp_path / "died")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the shards cannot import this test module
    try:
        result, = pool.run_seeds(fitted.proxy, [dying], settings, [logits], 4)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (tmp_path / "died").exists(), "a shard died mid-batch"
    np.testing.assert_array_equal(result.final_codes, undisturbed.final_codes)
    pids_after = [info["pid"] for info in ray.get([actor.where.remote() for actor in pool.actors])]
    assert sum(a != b for a, b in zip(pids_before, pids_after)) == 1, "exactly the dead shard was restarted"


def test_design_run_on_ray_equals_local_run(shared_data_dir):
    config = build_config(dict(task="tfbind8-r", data_dir=str(shared_data_dir), steps=8, designs=12, seeds=[0, 1],
                               aux_epochs=1, method="bidirectional"))
    on_ray = run_design_on_ray(config, RaySettings(shards=2))
    local = run_design(config, load_task(config.task, config.data_dir), LocalExecutor())
    assert list(on_ray.designs.sequence) == list(local.designs.sequence)
    np.testing.assert_allclose(on_ray.designs.proxy_score, local.designs.proxy_score, rtol=1e-6)
    assert on_ray.fitted.timings["shards"] == 2


def test_shards_that_cannot_be_placed_fail_with_what_was_asked_and_what_the_cluster_has(task):
    from bib_ray.errors import UserError

    started = time.perf_counter()
    with pytest.raises(UserError, match=r"2 x \{'CPU': 32\} could not be placed within 2 s; the cluster has \{'CPU': 4.0\} in all"):
        ShardPool("tiny", task, ShardResources(count=2, cpus=32, placement_timeout_s=2))
    assert time.perf_counter() - started < 30


def test_shipping_the_proxy_and_aux_to_shards_leaves_the_drivers_objects_alone(task, pool, monkeypatch):
    """ray.put(proxy.to("cpu")) would ship (and, from a GPU, move) the driver's own objects."""
    import ray

    config = build_config(dict(task="tfbind8-r", backbone="tiny", steps=2, designs=4, aux_epochs=1))
    fitted, aux = fitted_with_aux(task, config)
    shipped = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value, **kw: shipped.append(value) or real_put(value, **kw))
    pool.run_seeds(fitted.proxy, [aux], config.optimiser_settings(), [initial_logits(task, 4, 0, 0.1)], 2)
    assert shipped and all(value is not fitted.proxy and value is not aux for value in shipped)
    torch.testing.assert_close(shipped[0].weights, fitted.proxy.weights)


def test_ntk_run_on_ray_computes_the_kernel_on_the_shards_and_equals_the_local_run(shared_data_dir):
    """Backbone ntk on Ray: one-hot shards embed the rows, compute the kernel matrix in row blocks and run the
    trajectories; the designs and scores are the single-process run's."""
    config = build_config(dict(task="tfbind8-r", data_dir=str(shared_data_dir), backbone="ntk", ntk_rows=600,
                               steps=6, designs=12, seeds=[0, 1], aux_epochs=1))
    on_ray = run_design_on_ray(config, RaySettings(shards=2))
    local = run_design(config, load_task(config.task, config.data_dir), LocalExecutor())
    assert type(on_ray.fitted.proxy).__name__ == "NTKProxy" and on_ray.fitted.proxy.rows == 600
    assert on_ray.fitted.timings["shards"] == 2 and on_ray.fitted.timings["kernel_on_shards_s"] > 0
    busy = on_ray.fitted.timings["shard_busy_s_by_node"]
    assert sum(busy.values()) > 0
    torch.testing.assert_close(on_ray.fitted.proxy.alpha, local.fitted.proxy.alpha, rtol=1e-6, atol=1e-9)
    assert list(on_ray.designs.sequence) == list(local.designs.sequence)
    np.testing.assert_allclose(on_ray.designs.proxy_score, local.designs.proxy_score, rtol=1e-9)


def test_kernel_matrix_in_row_blocks_on_shards_equals_the_whole(task):
    from bib_ray.core.ntk import ReluNTK

    pool = ShardPool("onehot", task, ShardResources(count=2))
    try:
        x = torch.as_tensor(np.eye(4)[task.x[:50]].reshape(50, -1))
        gram = pool.kernel_gram(ReluNTK(), x)
        assert sum(1 for seconds in pool.busy_s if seconds > 0) == 2  # both shards took blocks
    finally:
        pool.shutdown()
    torch.testing.assert_close(gram, ReluNTK()(x.double(), x.double()), rtol=1e-12, atol=1e-12)
