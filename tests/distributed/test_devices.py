"""Device choice in Ray workers follows the GPUs Ray granted; copies for shipping leave the original alone.

No GPU is needed: ``ray.get_gpu_ids``, ``torch.cuda.is_available`` and ``CUDA_VISIBLE_DEVICES`` are
set by hand, as Ray 2.60 leaves them on a GPU node (a zero-GPU actor still sees the node's GPUs).
"""

from __future__ import annotations

import pytest
import ray
import torch

from bib_ray import devices
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings
from bib_ray.devices import cpu_copy, detached_copy, granted_device, granted_devices, resolve_device
from bib_ray.errors import UserError


@pytest.fixture
def worker(monkeypatch):
    """Pretend to be a Ray worker on a node whose torch sees GPUs; returns a setter for the grant."""
    monkeypatch.setattr(devices, "in_ray_worker", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def grant(ids: list, visible: str | None = None) -> None:
        monkeypatch.setattr(ray, "get_gpu_ids", lambda: list(ids))
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    return grant


def test_auto_without_a_granted_gpu_is_cpu_even_when_the_node_has_gpus(worker):
    worker([])  # a num_gpus=0 actor on a GPU node: Ray 2.60 leaves the GPUs visible
    assert torch.cuda.is_available()
    assert granted_device("auto") == torch.device("cpu")
    assert granted_device("cpu") == torch.device("cpu")


def test_cuda_without_a_granted_gpu_is_a_user_error(worker):
    worker([])
    for requested in ("cuda", "cuda:0"):
        with pytest.raises(UserError, match="granted no GPU.*num_gpus.*--gpus-per-shard"):
            granted_device(requested)
    with pytest.raises(UserError, match="granted no GPU"):
        granted_devices(1)


@pytest.mark.parametrize("ids,visible,expected", [
    (["3"], None, 3),          # CUDA_VISIBLE_DEVICES unset: torch numbers GPUs by their node ids
    (["3"], "3", 0),           # what Ray sets for a num_gpus=1 actor: the granted GPU is torch's cuda:0
    ([3], "2,3", 1),           # set by someone else, listing more: the position of the granted id
    (["GPU-ab12"], "GPU-77,GPU-ab12", 1),
])
def test_auto_and_cuda_take_exactly_the_granted_gpu(worker, ids, visible, expected):
    worker(ids, visible)
    assert granted_device("auto") == torch.device("cuda", expected)
    assert granted_device("cuda") == torch.device("cuda", expected)


def test_cuda_n_counts_the_workers_own_gpus(worker):
    worker([2, 5])
    assert granted_device("cuda:1") == torch.device("cuda", 5)
    with pytest.raises(UserError, match="granted 2 GPU"):
        granted_device("cuda:2")


def test_granted_id_missing_from_visible_devices_is_a_user_error(worker):
    worker(["4"], "0,1")
    with pytest.raises(UserError, match="CUDA_VISIBLE_DEVICES"):
        granted_device("auto")


def test_granted_devices_for_a_split_model(worker):
    worker(["4", "6"], "4,6")
    assert granted_devices(2) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert granted_devices(1) == [torch.device("cuda", 0)]
    with pytest.raises(UserError, match="3 GPUs asked for but this Ray worker was granted 2"):
        granted_devices(3)
    with pytest.raises(UserError, match="at least one"):
        granted_devices(0)


def test_outside_ray_the_device_is_resolved_as_before(monkeypatch):
    monkeypatch.setattr(devices, "in_ray_worker", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert granted_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert granted_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        granted_device("cuda")
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("gpu")


def test_in_ray_worker_is_true_only_inside_workers(local_ray):
    @ray.remote(num_cpus=0)
    def probe() -> tuple[bool, str]:
        from bib_ray.devices import granted_device, in_ray_worker

        return in_ray_worker(), str(granted_device("auto"))

    assert not devices.in_ray_worker()
    inside, device = ray.get(probe.remote())
    assert inside and device == "cpu"


def _aux() -> AuxiliaryEnsemble:
    return AuxiliaryEnsemble(6, AuxiliarySettings(members=2, hidden=4), 0, torch.zeros(6), torch.ones(6))


def test_detached_copy_leaves_the_original_where_it_was():
    aux = _aux()
    moved = detached_copy(aux, "meta")
    assert moved is not aux
    assert all(t.device.type == "meta" for t in [*moved.parameters(), *moved.buffers()])
    assert all(t.device.type == "cpu" for t in [*aux.parameters(), *aux.buffers()])
    assert [p.requires_grad for p in moved.parameters()] == [p.requires_grad for p in aux.parameters()]


def test_cpu_copy_shares_no_storage_with_the_original():
    aux = _aux()
    before = {name: t.clone() for name, t in aux.state_dict().items()}
    shipped = cpu_copy(aux)
    assert shipped is not aux
    with torch.no_grad():
        for tensor in [*shipped.parameters(), *shipped.buffers()]:
            tensor.add_(1.0)
    for name, tensor in aux.state_dict().items():
        torch.testing.assert_close(tensor, before[name], rtol=0, atol=0)
    assert shipped.seed == aux.seed and shipped.settings == aux.settings
