"""Load benchmark of the scoring service on loopback, in one run:

    python -m bib_ray.bench.serve_load --data-dir ../shared/data --backbone unirep-256

1. fits a proxy artifact (gb1, ``--offline-rows`` rows of the offline set, one aux ensemble);
2. in-process scoring throughput (sequences/s) at batch sizes 8, 32, 128; the best is the reference;
3. served throughput and p50/p99 latency at 1, 4 and 16 concurrent clients, each sending
   ``--per-request`` sequences per request for ``--seconds`` seconds;
4. a soak of ``--soak`` requests at the largest client count; with ``--kill-replica`` one
   replica is killed a third of the way through and Serve replaces it. Failed requests
   (after the client's retries) and retried attempts are counted.

The clients run in this process (threads, one HTTP session each), so they share the two
cores with Serve's proxy and the replicas: the numbers include that cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.proxy.artifacts import load_proxy_artifact
from bib_ray.service.client import ProxyClient, ServiceError
from bib_ray.core.aux_ensemble import AuxiliarySettings
from bib_ray.distributed.runtime import connect, disconnect
from bib_ray.backbones import BackboneSpec
from bib_ray.proxy.fitting import ProxySettings, fit_and_save_proxy
from bib_ray.service import launch
from bib_ray.service.settings import APPLICATION_NAME, DEFAULT_DEPLOYMENT, ServeDeployment, ServiceSettings
from bib_ray.tasks import load_task


def candidate_pool(task, size: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return task.sequences(rng.integers(0, len(task.alphabet), size=(size, task.length)))


def in_process_rates(artifact: Path, pool: list[str], batches: list[int], seconds: float) -> dict[int, float]:
    """Sequences/s of LoadedProxy.score per batch size (each after one warm-up batch)."""
    loaded = load_proxy_artifact(artifact)
    rates = {}
    for batch in batches:
        loaded.score(pool[:batch], batch)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            offset = done % (len(pool) - batch)
            loaded.score(pool[offset:offset + batch], batch)
            done += batch
        rates[batch] = done / (time.perf_counter() - started)
    return rates


@dataclasses.dataclass
class LoadResult:
    clients: int
    requests: int
    sequences: int
    failed: int
    retries: int
    seconds: float
    latencies_ms: np.ndarray

    def row(self, label: str, reference: float) -> dict:
        rate = self.sequences / self.seconds
        return {"setting": label, "clients": self.clients, "requests": self.requests, "failed": self.failed,
                "retried attempts": self.retries, "seq/s": rate, "% of in-process": 100 * rate / reference,
                "p50 ms": float(np.percentile(self.latencies_ms, 50)),
                "p99 ms": float(np.percentile(self.latencies_ms, 99))}


def run_load(url: str, pool: list[str], clients: int, per_request: int, seconds: float | None = None,
             total_requests: int | None = None, on_progress=None) -> LoadResult:
    """``clients`` threads send requests until ``seconds`` pass or ``total_requests`` are sent."""
    client = ProxyClient(url, timeout_s=60, retries=8, backoff_s=0.25)
    issued = [0]
    lock = threading.Lock()
    latencies: list[float] = []
    failed = [0]
    deadline = time.perf_counter() + seconds if seconds else None

    def next_ticket() -> int | None:
        with lock:
            if total_requests is not None and issued[0] >= total_requests:
                return None
            if deadline is not None and time.perf_counter() >= deadline:
                return None
            issued[0] += 1
            return issued[0]

    def worker() -> None:
        while (ticket := next_ticket()) is not None:
            offset = (ticket * per_request) % (len(pool) - per_request)
            sent = time.perf_counter()
            try:
                client.score_request(pool[offset:offset + per_request])
            except ServiceError:
                with lock:
                    failed[0] += 1
                continue
            with lock:
                latencies.append(1000 * (time.perf_counter() - sent))
            if on_progress is not None:
                on_progress(ticket)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as executor:
        for future in [executor.submit(worker) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    ok = len(latencies)
    return LoadResult(clients, ok + failed[0], ok * per_request, failed[0], client.retries_used, elapsed,
                      np.array(latencies) if latencies else np.array([np.nan]))


def kill_one_replica() -> str:
    """Kill one replica actor of the application (Serve's controller starts a replacement)."""
    import ray

    replicas = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA")
                and f"{APPLICATION_NAME}#" in a["name"]]
    if not replicas:
        return "no replica found"
    ray.kill(ray.get_actor(replicas[0], namespace="serve"), no_restart=True)
    return replicas[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--task", default="gb1")
    parser.add_argument("--backbone", default="unirep-256")
    parser.add_argument("--offline-rows", type=int, default=2000, help="offline rows the proxy is fitted on")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--cpus-per-replica", type=float, default=2.0)
    parser.add_argument("--max-batch-sequences", type=int, default=128)
    parser.add_argument("--batch-wait", type=float, default=0.005)
    parser.add_argument("--per-request", type=int, default=8)
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each concurrency level")
    parser.add_argument("--soak", type=int, default=10_000, help="requests in the soak (0: no soak)")
    parser.add_argument("--kill-replica", action="store_true", help="kill a replica a third into the soak")
    parser.add_argument("--port", type=int, default=8321)
    args = parser.parse_args()

    task = load_task(args.task, args.data_dir)
    rows = np.random.default_rng(0).choice(len(task.y), min(args.offline_rows, len(task.y)), replace=False)
    task = dataclasses.replace(task, x=task.x[rows], y=task.y[rows])
    pool = candidate_pool(task, 4096)
    workdir = Path(tempfile.mkdtemp(prefix="bib-ray-serve-bench-"))
    started = time.perf_counter()
    artifact = fit_and_save_proxy(task, ProxySettings(BackboneSpec.parse(args.backbone), device="cpu"), workdir / "proxy",
                                  AuxiliarySettings())
    print(f"artifact: {args.task} ({len(rows)} offline rows), backbone {args.backbone}, "
          f"fitted in {time.perf_counter() - started:.1f} s")
    rates = in_process_rates(artifact, pool, sorted({8, 32, 128, args.max_batch_sequences}), args.seconds / 2)
    best_batch = max(rates, key=rates.get)
    reference = rates[best_batch]
    print("in-process batched scoring (sequences/s by batch size): "
          + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()) + f"; reference = best ({best_batch})")

    connect(num_cpus=max(2, int(np.ceil(args.replicas * args.cpus_per_replica))))
    settings = ServiceSettings(artifact=str(artifact), device="cpu", max_batch_sequences=args.max_batch_sequences,
                               batch_wait_timeout_s=args.batch_wait,
                               max_sequences_per_request=min(128, args.max_batch_sequences))
    deployment = ServeDeployment(**dict(DEFAULT_DEPLOYMENT, port=args.port, num_replicas=args.replicas,
                                        ray_actor_options={"num_cpus": args.cpus_per_replica}))
    label = f"{args.replicas}x{args.cpus_per_replica:g} CPU, batch {args.max_batch_sequences}"
    table = []
    try:
        url = launch.deploy(settings, deployment)
        run_load(url, pool, 4, args.per_request, seconds=2)  # warm-up
        for clients in (int(c) for c in args.clients.split(",")):
            result = run_load(url, pool, clients, args.per_request, seconds=args.seconds)
            table.append(result.row(label, reference))
            print(f"  {clients} clients: {result.sequences / result.seconds:.1f} seq/s", flush=True)
        if args.soak:
            clients = max(int(c) for c in args.clients.split(","))
            killed: list[str] = []
            kill_lock = threading.Lock()

            def maybe_kill(ticket: int) -> None:
                with kill_lock:
                    if args.kill_replica and ticket >= args.soak // 3 and not killed:
                        killed.append(kill_one_replica())

            soak = run_load(url, pool, clients, args.per_request, total_requests=args.soak, on_progress=maybe_kill)
            suffix = f", killed {killed[0]}" if killed else ""
            table.append(soak.row(f"soak {args.soak} requests{suffix}", reference))
    finally:
        launch.shutdown()
        disconnect()
    frame = pd.DataFrame(table)
    print(f"\nbackbone {args.backbone}, {args.per_request} sequences per request, in-process reference "
          f"{reference:.1f} seq/s (best of batch sizes {sorted(rates)})")
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
