"""Proxy shards: Ray actors that each hold an LM replica on their device.

The offline set is split into row chunks; each shard embeds the chunks it is given and
returns their statistics (G_s, b_s, s_s, N_s) -- as raw sums, see ``EmbeddingStatistics`` --
plus the embeddings of the rows the auxiliary ensemble trains on. The driver sums the
statistics in chunk order and solves the proxy. Adding rows embeds only those rows. The
same actors then run batches of design trajectories.

Shards keep no state beyond their LM replica: the driver owns the rows and the reduced
statistics, so an actor that dies is restarted by Ray (``max_restarts``) and the call it
was serving is retried (``max_task_retries``) with the same arguments and the same result.
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass

import numpy as np
import torch

from bib_ray.core.aux_ensemble import AuxiliaryEnsemble
from bib_ray.core.optimizer import BIBOptimiser, OptimiserSettings, TrajectoryResult
from bib_ray.core.proxy import DesignProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.tasks.base import Task


class ProxyShard:
    """One LM replica (created inside a Ray actor); see the module docstring."""

    def __init__(self, backbone_spec: str, task_identity: dict, device: str, embed_batch_size: int) -> None:
        from bib_ray.backbones import build_backbone
        from bib_ray.embedding import SequenceEmbedder

        shell = Task.from_identity(task_identity)
        self.embedder = SequenceEmbedder(build_backbone(backbone_spec, shell.alphabet, shell.read_length),
                                         shell, device)
        self.embed_batch_size = embed_batch_size

    def embed_rows(self, codes: np.ndarray, y: np.ndarray,
                   keep: np.ndarray) -> tuple[EmbeddingStatistics, torch.Tensor]:
        """Statistics of (phi(codes), y) and phi of the rows ``keep`` (indices into ``codes``)."""
        phi = self.embedder.embed_codes(codes, self.embed_batch_size)
        return EmbeddingStatistics.from_rows(phi, torch.as_tensor(y)), phi[torch.as_tensor(keep, dtype=torch.long)]

    def run_trajectories(self, proxy: DesignProxy, aux: AuxiliaryEnsemble | None,
                         settings: OptimiserSettings, logits: torch.Tensor) -> TrajectoryResult:
        """Optimise one batch of trajectories from ``logits`` on this replica."""
        device = self.embedder.device
        optimiser = BIBOptimiser(self.embedder.embed_designs, proxy.to(device), settings,
                                 None if aux is None else aux.to(device))
        return optimiser.run_from_logits(logits.to(device))

    def where(self) -> dict:
        """Node, process and device of this replica (for tests and logs)."""
        import os

        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "device": str(self.embedder.device)}


@dataclass(frozen=True)
class ShardResources:
    """Per-actor resources and restart policy."""

    count: int
    cpus: float = 1.0
    gpus: float = 0.0
    max_restarts: int = 3
    max_task_retries: int = 3
    custom: dict | None = None  # e.g. {"shard": 1} to pin shards to labelled nodes


def default_shard_count() -> int:
    """One shard per GPU in the cluster, else one per CPU (at most 8)."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    return gpus if gpus else max(1, min(8, int(resources.get("CPU", 1))))


def row_chunks(count: int, chunk_rows: int) -> list[tuple[int, int]]:
    """[start, stop) ranges that split ``count`` rows into chunks of ``chunk_rows``."""
    return [(start, min(start + chunk_rows, count)) for start in range(0, count, chunk_rows)]


class ShardPool:
    """A pool of ProxyShard actors for one task and backbone."""

    def __init__(self, backbone_spec: str, task: Task, resources: ShardResources, embed_batch_size: int = 512) -> None:
        import ray

        device = "cuda" if resources.gpus > 0 else "cpu"
        actor = ray.remote(ProxyShard).options(
            num_cpus=resources.cpus, num_gpus=resources.gpus, resources=resources.custom or {},
            max_restarts=resources.max_restarts, max_task_retries=resources.max_task_retries)
        self.actors = [actor.remote(backbone_spec, task.identity(), device, embed_batch_size)
                       for _ in range(resources.count)]
        self.embed_batch_size = embed_batch_size
        self.rows_embedded = 0
        self._proxy_ref: tuple[DesignProxy, object] | None = None  # (proxy, its object ref), reused across seeds

    def map(self, call, items: list, progress: bool = False, description: str = "") -> list:
        """``call(actor, item) -> ObjectRef`` for every item, each sent to the next free actor;
        results are collected as they finish and returned in item order."""
        import ray
        from tqdm.auto import tqdm

        pending = list(enumerate(items))[::-1]
        idle = list(self.actors)
        in_flight: dict = {}
        results: dict[int, object] = {}
        with tqdm(total=len(items), desc=description, disable=not progress, leave=False) as bar:
            while pending or in_flight:
                while pending and idle:
                    index, item = pending.pop()
                    actor = idle.pop()
                    in_flight[call(actor, item)] = (index, actor)
                done, _ = ray.wait(list(in_flight), num_returns=1)
                index, actor = in_flight.pop(done[0])
                try:
                    results[index] = ray.get(done[0])
                except ray.exceptions.RayActorError:  # restarts and retries exhausted: give the item to another shard
                    if not idle and not in_flight:
                        raise
                    pending.append((index, items[index]))
                    continue
                idle.append(actor)
                bar.update()
        return [results[i] for i in range(len(items))]

    def embed_statistics(self, codes: np.ndarray, y: np.ndarray, keep_rows: np.ndarray,
                         progress: bool = False) -> tuple[EmbeddingStatistics, torch.Tensor]:
        """Statistics of all rows, summed in row order, and phi of ``keep_rows`` (sorted indices)."""
        chunk = self.embed_batch_size * max(1, math.ceil(len(y) / (8 * len(self.actors) * self.embed_batch_size)))
        ranges = row_chunks(len(y), chunk)
        items = [(codes[a:b], y[a:b], keep_rows[(keep_rows >= a) & (keep_rows < b)] - a) for a, b in ranges]
        parts = self.map(lambda actor, item: actor.embed_rows.remote(*item), items, progress, "embedding on shards")
        self.rows_embedded += len(y)
        statistics = functools.reduce(operator.add, (part for part, _ in parts[1:]), parts[0][0]) if parts else None
        kept = torch.cat([phi for _, phi in parts]) if parts else torch.zeros(0)
        return statistics, kept

    def run_trajectories(self, proxy: DesignProxy, aux: AuxiliaryEnsemble | None,
                         settings: OptimiserSettings, logits: torch.Tensor, batch_size: int,
                         progress: bool) -> TrajectoryResult:
        """Trajectories split into batches of ``batch_size`` that run concurrently on the shards."""
        import ray

        from bib_ray.pipeline import merge_trajectories

        if self._proxy_ref is None or self._proxy_ref[0] is not proxy:
            self._proxy_ref = (proxy, ray.put(proxy.to("cpu")))
        proxy_ref, aux_ref = self._proxy_ref[1], ray.put(None if aux is None else aux.to("cpu"))
        batches = list(logits.cpu().split(batch_size))
        parts = self.map(lambda actor, batch: actor.run_trajectories.remote(proxy_ref, aux_ref, settings, batch),
                         batches, progress, "trajectory batches")
        return merge_trajectories(parts)

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

