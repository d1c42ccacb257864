"""Where tensors and models go: devices named by the user, devices Ray granted, copies for shipping.

Inside a Ray worker (an actor, a task, a Serve replica, a Tune trial) the device must follow what
Ray *granted*, not what the node has: Ray 2.60 no longer sets ``CUDA_VISIBLE_DEVICES=""`` for
workers that asked for no GPU (Ray issue 54868), so ``torch.cuda.is_available()`` is true in a
zero-GPU actor on a GPU node and "auto" would take a GPU that another actor was given.
``granted_device`` / ``granted_devices`` choose from ``ray.get_gpu_ids()``; outside a worker (the
driver, plain scripts) they fall back to ``resolve_device``.

Ray reports granted GPUs by their node-level ids. Torch numbers the GPUs it can see: when
``CUDA_VISIBLE_DEVICES`` is set (Ray sets it to the granted ids for workers with ``num_gpus > 0``)
the torch index of a granted id is its position in that list, otherwise it is the id itself.

``detached_copy`` gives a module on another device without touching the original: ``nn.Module.to``
moves in place and returns ``self``, so ``ray.put(proxy.to("cpu"))`` would move the driver's own
proxy off its GPU.
"""

from __future__ import annotations

import copy
import os
import sys
from typing import TypeVar

import torch
from torch import nn

from bib_ray.errors import UserError

ModuleT = TypeVar("ModuleT", bound=nn.Module)

NO_GPU_GRANTED = ("this Ray worker was granted no GPU (ray.get_gpu_ids() is empty), so it may not use CUDA "
                  "even if the node has one: request GPUs for it (num_gpus, e.g. --gpus-per-shard or the "
                  "service's num_gpus), or use device 'auto' or 'cpu'")


def resolve_device(name: str) -> torch.device:
    """The device ``name`` names in a process that owns its machine (not a Ray worker).

    'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; any other name is parsed by ``torch.device``.
    Raises UserError when a CUDA device is named and CUDA is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = _parse(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return device


def in_ray_worker() -> bool:
    """True in a Ray worker process (actor, task, replica, trial); False in a driver or without Ray."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    return ray.get_runtime_context().worker.mode == ray.WORKER_MODE


def granted_gpu_indices() -> list[int]:
    """Torch CUDA indices of the GPUs Ray granted this worker, in Ray's order ([] outside a worker).

    A granted id maps to its position in ``CUDA_VISIBLE_DEVICES`` when that is set, else to itself.
    Raises UserError when ``CUDA_VISIBLE_DEVICES`` is set but does not list a granted id.
    """
    if not in_ray_worker():
        return []
    import ray

    granted = [str(gpu_id) for gpu_id in ray.get_gpu_ids()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [int(gpu_id) for gpu_id in granted]
    listed = [entry.strip() for entry in visible.split(",") if entry.strip()]
    missing = [gpu_id for gpu_id in granted if gpu_id not in listed]
    if missing:
        raise UserError(f"Ray granted GPU(s) {missing} but CUDA_VISIBLE_DEVICES={visible!r} does not list them")
    return [listed.index(gpu_id) for gpu_id in granted]


def granted_device(requested: str) -> torch.device:
    """The device a Ray worker should use for ``requested`` in {'auto', 'cpu', 'cuda', 'cuda:N'}.

    Inside a Ray worker CUDA is used only when Ray granted a GPU, and then exactly a granted one:
        'auto'    -> the first granted GPU, else 'cpu' (even when torch sees the node's GPUs)
        'cpu'     -> 'cpu'
        'cuda'    -> the first granted GPU; UserError if none was granted
        'cuda:N'  -> the N-th granted GPU (N counts the worker's own GPUs); UserError if N is out of range
    Outside a Ray worker this is ``resolve_device(requested)``.
    """
    if not in_ray_worker():
        return resolve_device(requested)
    if requested != "auto":
        device = _parse(requested)
        if device.type != "cuda":
            return device
    granted = granted_gpu_indices()
    if requested == "auto" and (not granted or not torch.cuda.is_available()):
        return torch.device("cpu")
    if not granted:
        raise UserError(f"device {requested!r}: {NO_GPU_GRANTED}")
    if not torch.cuda.is_available():
        raise UserError(f"device {requested!r}: Ray granted GPU(s) {granted} but this worker's torch sees no CUDA")
    position = 0 if requested == "auto" else (_parse(requested).index or 0)
    if position >= len(granted):
        raise UserError(f"device {requested!r}: this worker was granted {len(granted)} GPU(s), so N must be "
                        f"below {len(granted)}")
    return torch.device("cuda", granted[position])


def granted_devices(count: int) -> list[torch.device]:
    """``count`` distinct CUDA devices to spread one model over (e.g. an LM loaded with a device map).

    Inside a Ray worker: the first ``count`` GPUs Ray granted it; outside: CUDA devices 0..count-1.
    Raises UserError when fewer than ``count`` are granted (or visible), or ``count`` < 1.
    """
    if count < 1:
        raise UserError(f"need at least one device, asked for {count}")
    if in_ray_worker():
        indices = granted_gpu_indices()
        if not indices:
            raise UserError(f"{count} GPU(s) asked for: {NO_GPU_GRANTED}")
        if len(indices) < count:
            raise UserError(f"{count} GPUs asked for but this Ray worker was granted {len(indices)}: "
                            f"request num_gpus={count} for it (--gpus-per-shard {count})")
    else:
        indices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        if len(indices) < count:
            raise UserError(f"{count} GPUs asked for but torch sees {len(indices)}")
    if not torch.cuda.is_available():
        raise UserError(f"{count} GPU(s) asked for but this process's torch sees no CUDA")
    return [torch.device("cuda", index) for index in indices[:count]]


def detached_copy(module: ModuleT, device: torch.device | str) -> ModuleT:
    """A deep copy of ``module`` whose parameters and buffers live on ``device``; ``module`` is untouched.

    Unlike ``module.to(device)`` (which moves in place and returns the same object) the result shares
    no tensor storage with ``module``, so it can be shipped (``ray.put``) or edited freely. Each
    parameter and buffer is copied straight to ``device`` (no second copy on the source device);
    tensors held as plain attributes are deep-copied where they are.
    """
    target = torch.device(device)
    memo: dict[int, object] = {}
    for parameter in module.parameters():
        moved = parameter.detach().to(target, copy=True)
        memo[id(parameter)] = nn.Parameter(moved, requires_grad=parameter.requires_grad)
    for buffer in module.buffers():
        memo[id(buffer)] = buffer.detach().to(target, copy=True)
    return copy.deepcopy(module, memo)


def cpu_copy(module: ModuleT) -> ModuleT:
    """``detached_copy(module, 'cpu')``: what to ``ray.put`` when shipping a module to other processes."""
    return detached_copy(module, "cpu")


def _parse(name: str) -> torch.device:
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r}: {error}") from None
