"""Proxy shards: Ray actors that each hold an LM replica on the device Ray granted them.

Fitting: the offline set is split into row chunks; a shard embeds each chunk it is given and
adds its statistics (G_s, b_s, s_s, N_s, as raw sums, see ``EmbeddingStatistics``) to a running
sum it keeps, returning only the embeddings of the rows the auxiliary ensemble trains on. After
the last chunk the driver collects one sum per shard (a single d x d matrix each) and adds them.
A shard restarted by Ray (``max_restarts``) has lost its sum; the driver sees which chunks no
shard accounts for and embeds those again, so the result does not depend on failures.

Designing: the same actors train the seeds' auxiliary ensembles, run batches of design
trajectories of all seeds together, and score the final designs; the driver holds no LM.

The NTK proxy: shards hold one-hot "LMs"; besides embedding they compute the kernel matrix of its
rows in row blocks (``kernel_gram``), which the driver assembles and solves.

Placement: the shards are one placement group (one bundle per shard, spread over nodes) that
must be ready within ``ShardResources.placement_timeout_s``; the request is also handed to the
autoscaler, so a ``ray up`` cluster scales to the shards asked for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from bib_ray.backbones import BackboneSpec
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings
from bib_ray.core.evolution import EvolutionProblem, EvolutionResult, EvolutionSettings, evolve
from bib_ray.core.ntk import ReluNTK
from bib_ray.core.optimizer import BIBOptimiser, OptimiserSettings, TrajectoryResult
from bib_ray.core.proxy import DesignProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.devices import cpu_copy
from bib_ray.errors import UserError
from bib_ray.proxy.artifacts import LMIdentity, fingerprint_codes
from bib_ray.proxy.fitting import fit_aux_ensemble
from bib_ray.proxy.scoring import proxy_scorer, score_codes
from bib_ray.tasks.base import Task


class ProxyShard:
    """One LM replica (created inside a Ray actor); see the module docstring."""

    def __init__(self, backbone: BackboneSpec, task_identity: dict, gpus: float, dtype: str,
                 embed_batch_size: int) -> None:
        """The LM goes on exactly the GPUs Ray granted this actor: one (``gpus`` <= 1, fractions
        included) or split over ``gpus`` of them; on the CPU when it was granted none."""
        from bib_ray.backbones import build_backbone
        from bib_ray.devices import granted_device, granted_devices
        from bib_ray.proxy.embedding import SequenceEmbedder

        self.task = Task.from_identity(task_identity)
        devices = granted_devices(int(gpus)) if gpus > 1 else [granted_device("cuda" if gpus > 0 else "cpu")]
        backbone = build_backbone(backbone, self.task.alphabet, self.task.read_length, dtype=dtype,
                                  devices=devices)
        self.embedder = SequenceEmbedder(backbone, self.task, devices[0])
        self.embed_batch_size = embed_batch_size
        self._sum: EmbeddingStatistics | None = None
        self._chunks: list[int] = []

    def embed_rows(self, codes: np.ndarray, y: np.ndarray,
                   keep: np.ndarray) -> tuple[EmbeddingStatistics, torch.Tensor]:
        """Statistics of (phi(codes), y) and phi of the rows ``keep`` (indices into ``codes``)."""
        phi = self.embedder.embed_codes(codes, self.embed_batch_size)
        return EmbeddingStatistics.from_rows(phi, torch.as_tensor(y)), phi[torch.as_tensor(keep, dtype=torch.long)]

    def accumulate(self, chunk: int, codes: np.ndarray, y: np.ndarray, keep: np.ndarray) -> torch.Tensor:
        """Add chunk ``chunk``'s statistics to this shard's running sum; return phi of its rows ``keep``."""
        statistics, kept = self.embed_rows(codes, y, keep)
        self._sum = statistics if self._sum is None else self._sum + statistics
        self._chunks.append(chunk)
        return kept

    def take_statistics(self) -> tuple[EmbeddingStatistics | None, list[int]]:
        """The running sum and the chunks it covers; the shard starts a new sum."""
        taken = (self._sum, self._chunks)
        self._sum, self._chunks = None, []
        return taken

    def kernel_block(self, kernel: ReluNTK, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """kernel(rows, columns) in float64 on this replica's device, returned on the CPU: one row block of
        the NTK proxy's kernel matrix."""
        device = self.embedder.device
        block = kernel(rows.to(device, torch.float64), columns.to(device, torch.float64))
        return block.cpu()

    def lm_identity(self, probe: np.ndarray) -> LMIdentity:
        """The LM's description, device and embeddings of ``probe``."""
        return LMIdentity.from_probe(self.embedder, probe)

    def train_aux(self, statistics: EmbeddingStatistics, phi: torch.Tensor, labels: torch.Tensor,
                  settings: AuxiliarySettings, seed: int) -> tuple[AuxiliaryEnsemble, dict]:
        """Seed ``seed``'s auxiliary ensemble (on the CPU, as in a single-process run)."""
        return fit_aux_ensemble(statistics, phi, labels, settings, seed)

    def run_trajectories(self, proxy: DesignProxy, aux: AuxiliaryEnsemble | None,
                         settings: OptimiserSettings, logits: torch.Tensor) -> TrajectoryResult:
        """Optimise one batch of trajectories from ``logits`` on this replica."""
        device = self.embedder.device
        optimiser = BIBOptimiser(self.embedder.embed_designs, proxy.to(device), settings,
                                 None if aux is None else aux.to(device))
        return optimiser.run_from_logits(logits.to(device))

    def evolve(self, proxy: DesignProxy, problem: EvolutionProblem, settings: EvolutionSettings,
               seed: int) -> EvolutionResult:
        """Method ``evolution`` for one seed on this replica (see ``bib_ray.core.evolution.evolve``), every
        round's children scored by ``proxy`` on this LM."""
        score = proxy_scorer(self.embedder, proxy.to(self.embedder.device), self.embed_batch_size)
        return evolve(problem, score, settings, seed)

    def score(self, proxy: DesignProxy, aux: AuxiliaryEnsemble | None, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Proxy score, aux mean and aux spread of ``codes`` (label units), see ``score_codes``."""
        device = self.embedder.device
        return score_codes(self.embedder, proxy.to(device), None if aux is None else aux.to(device), codes,
                           self.embed_batch_size)

    def where(self) -> dict:
        """Node, process and device of this replica (for tests and logs)."""
        import os

        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "device": str(self.embedder.device)}


@dataclass(frozen=True)
class ShardResources:
    """Per-actor resources, restart policy, and how long placement may wait for them."""

    count: int
    cpus: float = 1.0
    gpus: float = 0.0
    max_restarts: int = 3
    max_task_retries: int = 3
    custom: dict | None = None  # e.g. {"shard": 1} to pin shards to labelled nodes
    placement_timeout_s: float = 300.0

    def bundle(self) -> dict[str, float]:
        """One shard's resources as a placement-group bundle."""
        bundle = {"CPU": self.cpus, **(self.custom or {})}
        if self.gpus > 0:
            bundle["GPU"] = self.gpus
        return bundle


def default_shard_count() -> int:
    """One shard per GPU in the cluster, else one per CPU (at most 8)."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    return gpus if gpus else max(1, min(8, int(resources.get("CPU", 1))))


def row_chunks(count: int, chunk_rows: int) -> list[tuple[int, int]]:
    """[start, stop) ranges that split ``count`` rows into chunks of ``chunk_rows``."""
    return [(start, min(start + chunk_rows, count)) for start in range(0, count, chunk_rows)]


def place_bundles(bundles: list[dict[str, float]], timeout_s: float, what: str):
    """A ready placement group of ``bundles`` (spread over nodes), asked of the autoscaler too; a UserError
    naming what was asked and what the cluster has when it is not ready within ``timeout_s``."""
    import ray
    from ray.autoscaler.sdk import request_resources
    from ray.util.placement_group import placement_group, remove_placement_group

    request_resources(bundles=bundles)
    group = placement_group(bundles, strategy="SPREAD")
    if group.wait(timeout_seconds=timeout_s):
        return group
    remove_placement_group(group)
    have = {k: v for k, v in ray.cluster_resources().items()
            if "_group_" not in k and not k.startswith(("node:", "memory", "object_store"))}  # no bundles' own
    free = {k: v for k, v in ray.available_resources().items() if k in have}
    raise UserError(f"{what}: {len(bundles)} x {bundles[0]} could not be placed within {timeout_s:.0f} s; the "
                    f"cluster has {have} in all, {free} free. Ask for fewer or smaller shards (--shards, "
                    f"--cpus-per-shard, --gpus-per-shard) or add nodes")


def _ship_copies(modules: list) -> list:
    """Object refs of CPU copies of ``modules`` (None stays None); the caller's modules are not moved."""
    import ray

    return [ray.put(None if module is None else cpu_copy(module)) for module in modules]


def _parts_by_seed(items: list[tuple[int, object]], parts: list, seeds: int) -> list[list]:
    """``parts`` (one per ``(seed, payload)`` item, in item order) grouped by seed index."""
    grouped: list[list] = [[] for _ in range(seeds)]
    for (seed, _), part in zip(items, parts):
        grouped[seed].append(part)
    return grouped


class ShardPool:
    """A pool of ProxyShard actors for one task and backbone, in one placement group."""

    def __init__(self, backbone: BackboneSpec | str, task: Task, resources: ShardResources, embed_batch_size: int = 512,
                 dtype: str = "float32", progress: bool = False) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.group = place_bundles([resources.bundle()] * resources.count, resources.placement_timeout_s,
                                   "proxy shards")
        actor = ray.remote(ProxyShard)
        self.actors = [actor.options(
            num_cpus=resources.cpus, num_gpus=resources.gpus, resources=resources.custom or {},
            max_restarts=resources.max_restarts, max_task_retries=resources.max_task_retries,
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=index),
        ).remote(BackboneSpec.parse(backbone) if isinstance(backbone, str) else backbone, task.identity(),
                  resources.gpus, dtype, embed_batch_size)
            for index in range(resources.count)]
        self.embed_batch_size = embed_batch_size
        self.progress = progress
        self.rows_embedded = 0
        self._proxy_ref: tuple[DesignProxy, object] | None = None  # (proxy, its object ref), reused across seeds
        self.busy_s = [0.0] * len(self.actors)  # seconds each actor had a call in flight (see ``busy_by_node``)

    def map(self, call, items: list, description: str = "") -> list:
        """``call(actor, item) -> ObjectRef`` for every item, each sent to the next free actor;
        results are collected as they finish and returned in item order."""
        import ray
        from tqdm.auto import tqdm

        pending = list(enumerate(items))[::-1]
        idle = list(range(len(self.actors)))
        in_flight: dict = {}
        results: dict[int, object] = {}
        with tqdm(total=len(items), desc=description, disable=not self.progress, leave=False) as bar:
            while pending or in_flight:
                while pending and idle:
                    index, item = pending.pop()
                    shard = idle.pop()
                    in_flight[call(self.actors[shard], item)] = (index, shard, time.perf_counter())
                done, _ = ray.wait(list(in_flight), num_returns=1)
                index, shard, sent = in_flight.pop(done[0])
                self.busy_s[shard] += time.perf_counter() - sent
                try:
                    results[index] = ray.get(done[0])
                except ray.exceptions.RayActorError:  # restarts and retries exhausted: give the item to another shard
                    if not idle and not in_flight:
                        raise
                    pending.append((index, items[index]))
                    continue
                idle.append(shard)
                bar.update()
        return [results[i] for i in range(len(items))]

    def embed_statistics(self, codes: np.ndarray, y: np.ndarray,
                         keep_rows: np.ndarray) -> tuple[EmbeddingStatistics, torch.Tensor]:
        """Statistics of all rows (each shard sums its chunks; one sum per shard comes back) and phi of
        ``keep_rows`` (sorted indices). Chunks that a restarted shard lost are embedded again."""
        import ray

        chunk = self.embed_batch_size * max(1, -(-len(y) // (8 * len(self.actors) * self.embed_batch_size)))
        ranges = row_chunks(len(y), chunk)
        kept: dict[int, torch.Tensor] = {}
        statistics, todo = None, list(range(len(ranges)))
        while todo:
            items = [(i, codes[ranges[i][0]:ranges[i][1]], y[ranges[i][0]:ranges[i][1]],
                      keep_rows[(keep_rows >= ranges[i][0]) & (keep_rows < ranges[i][1])] - ranges[i][0])
                     for i in todo]
            parts = self.map(lambda actor, item: actor.accumulate.remote(*item), items, "embedding on shards")
            kept.update({item[0]: phi for item, phi in zip(items, parts)})
            covered: set[int] = set()
            for shard_sum, chunks in ray.get([actor.take_statistics.remote() for actor in self.actors]):
                if shard_sum is not None:
                    statistics = shard_sum if statistics is None else statistics + shard_sum
                    covered.update(chunks)
            todo = [i for i in todo if i not in covered]
        self.rows_embedded += len(y)
        phi = torch.cat([kept[i] for i in range(len(ranges))]) if ranges else torch.zeros(0)
        return statistics, phi

    def kernel_gram(self, kernel: ReluNTK, x: torch.Tensor) -> torch.Tensor:
        """kernel(x, x) (M, M), float64 on the CPU, in row blocks spread over the shards (``x`` shipped once)."""
        import ray

        columns = ray.put(x.to(torch.float64))
        blocks = row_chunks(len(x), max(1, -(-len(x) // (4 * len(self.actors)))))
        parts = self.map(lambda actor, block: actor.kernel_block.remote(kernel, x[block[0]:block[1]], columns),
                         blocks, "kernel rows on shards")
        gram = torch.empty(len(x), len(x), dtype=torch.float64)
        for (start, stop), part in zip(blocks, parts):
            gram[start:stop] = part
        return gram

    def lm_identity(self, task: Task) -> LMIdentity:
        """The LM's identity as one shard reports it."""
        import ray

        return ray.get(self.actors[0].lm_identity.remote(fingerprint_codes(task)))

    def train_aux(self, statistics: EmbeddingStatistics, phi: torch.Tensor, labels: torch.Tensor,
                  settings: AuxiliarySettings, seeds: list[int]) -> list[tuple[AuxiliaryEnsemble, dict]]:
        """Every seed's auxiliary ensemble, trained on the shards in parallel (rows shipped once)."""
        import ray

        statistics_ref, phi_ref, labels_ref = ray.put(statistics), ray.put(phi), ray.put(labels)
        return self.map(lambda actor, seed: actor.train_aux.remote(statistics_ref, phi_ref, labels_ref, settings,
                                                                   seed), seeds, "aux ensembles")

    def _shipped_proxy(self, proxy: DesignProxy):
        """The proxy's object ref, made once per proxy (reused across seeds and calls)."""
        import ray

        if self._proxy_ref is None or self._proxy_ref[0] is not proxy:
            self._proxy_ref = (proxy, ray.put(cpu_copy(proxy)))  # a copy: the driver's proxy stays where it is
        return self._proxy_ref[1]

    def run_seeds(self, proxy: DesignProxy, auxes: list[AuxiliaryEnsemble | None], settings: OptimiserSettings,
                  logits: list[torch.Tensor], batch_size: int) -> list[TrajectoryResult]:
        """Several seeds' trajectories (``logits[i]`` with ``auxes[i]``) in batches of ``batch_size`` that run
        concurrently on the shards, all dispatched together."""
        proxy_ref, aux_refs = self._shipped_proxy(proxy), _ship_copies(auxes)
        items = [(seed, batch) for seed, seed_logits in enumerate(logits) for batch in seed_logits.cpu().split(
            batch_size)]
        parts = self.map(lambda actor, item: actor.run_trajectories.remote(proxy_ref, aux_refs[item[0]], settings,
                                                                          item[1]),
                         items, "trajectory batches")
        return [TrajectoryResult.concatenate(mine) for mine in _parts_by_seed(items, parts, len(logits))]

    def evolve_seeds(self, proxy: DesignProxy, problem: EvolutionProblem, settings: EvolutionSettings,
                     seeds: list[int]) -> list[EvolutionResult]:
        """Method ``evolution`` of ``problem`` for every seed, one seed per shard call."""
        proxy_ref = self._shipped_proxy(proxy)
        return self.map(lambda actor, seed: actor.evolve.remote(proxy_ref, problem, settings, seed), seeds, "evolution")

    def score(self, proxy: DesignProxy, auxes: list[AuxiliaryEnsemble | None], codes: list[np.ndarray],
              batch_size: int) -> list[dict[str, np.ndarray]]:
        """``score_codes`` of each seed's final designs ``codes[i]`` with ``auxes[i]``, on the shards."""
        proxy_ref, aux_refs = self._shipped_proxy(proxy), _ship_copies(auxes)
        items = [(seed, rows[start:start + batch_size]) for seed, rows in enumerate(codes)
                 for start in range(0, len(rows), batch_size)]
        parts = self.map(lambda actor, item: actor.score.remote(proxy_ref, aux_refs[item[0]], item[1]), items)
        return [{key: np.concatenate([part[key] for part in mine]) for key in mine[0]}
                for mine in _parts_by_seed(items, parts, len(codes))]

    def busy_by_node(self) -> dict[str, float]:
        """Seconds of calls in flight per node (summed over the node's shards): how busy the cluster was."""
        import ray

        nodes = ray.get([actor.where.remote() for actor in self.actors])
        busy: dict[str, float] = {}
        for node, seconds in zip(nodes, self.busy_s):
            busy[node["node_id"][:8]] = round(busy.get(node["node_id"][:8], 0.0) + seconds, 2)
        return busy

    def shutdown(self) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        remove_placement_group(self.group)
