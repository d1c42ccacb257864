"""Serving under load it has to follow: capacity, overload (503 instead of unbounded queues) and the autoscaler.

    python -m bib_ray.bench.serve_scaling --data-dir ../shared/data --out runs/serve-scaling

1. fits a proxy artifact (``--task``, ``--backbone``) and serves it with ``num_replicas: auto`` (Serve's
   autoscaler, ``--max-replicas``, each replica ``--cpus-per-replica``);
2. capacity: the requests/s ``--clients`` closed-loop clients get (``--per-request`` sequences each);
3. open-loop load at 0.5x, 1x and 2x that capacity for ``--seconds`` each: requests sent on a fixed
   schedule whatever the service does; per load p50/p99 latency of the answered requests (from sending
   to the answer), the share answered 503 (``max_queued_requests`` exceeded: refused with Retry-After
   instead of queued without bound), any other failure, and how late the clients sent (p50 of send time
   minus schedule: the client machine's own limit, which shares the cores);
4. once the replicas are back at ``min_replicas`` (no load, at most ``--settle-seconds``), a ramp from
   0.25x to 2x and back (``--ramp-seconds``), then 0.25x held for ``--tail-seconds`` (longer
   than the autoscaler's downscale delay), then no load for ``--idle-seconds``, sampling the running
   replicas every second, drawn with the offered and answered load in ``OUT/serve_scaling.png``.

No client retries here: every 503 is counted. Clients and service share this machine's cores.
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

from bib_ray.bench import exit_with, module_main
from bib_ray.bench.selection import markdown_table


@dataclasses.dataclass
class Outcome:
    scheduled: float
    sent: float
    latency_s: float  # from sending to the answer
    status: int | str


def send(session, url: str, body: dict, scheduled: float) -> Outcome:
    import requests

    sent = time.monotonic()
    try:
        answer = session.post(f"{url}/score", json=body, timeout=60)
        return Outcome(scheduled, sent, time.monotonic() - sent, answer.status_code)
    except requests.RequestException as error:
        return Outcome(scheduled, sent, time.monotonic() - sent, type(error).__name__)


def closed_loop_rate(url: str, body: dict, clients: int, seconds: float) -> float:
    """Requests/s that ``clients`` back-to-back clients get."""
    import requests

    done, stop = [0], time.monotonic() + seconds
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < stop:
            if send(session, url, body, time.monotonic()).status == 200:
                with lock:
                    done[0] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: client(), range(clients)))
    return done[0] / (time.monotonic() - started)


def open_loop(url: str, body: dict, rate_at, seconds: float, workers: int = 640) -> list[Outcome]:
    """Requests sent at ``rate_at(t)`` per second (t: seconds since the start) for ``seconds``, each on its
    own schedule whether or not earlier ones were answered (``workers`` threads: more than the service admits
    and queues, so an overload reaches it rather than a client-side queue)."""
    import requests

    local = threading.local()

    def one(scheduled: float) -> Outcome:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        wait = scheduled - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        return send(local.session, url, body, scheduled)

    started, t, schedule = time.monotonic(), 0.0, []
    while t < seconds:
        schedule.append(started + t)
        t += 1.0 / max(rate_at(t), 1e-6)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, schedule))


def replicas_running(application: str) -> int:
    from ray import serve

    status = serve.status().applications.get(application)
    if status is None:
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())


def summarise(label: str, offered: float, outcomes: list[Outcome], seconds: float) -> dict:
    answered = [o.latency_s for o in outcomes if o.status == 200]
    refused = sum(o.status == 503 for o in outcomes)
    return {"load": label, "offered req/s": offered, "answered req/s": len(answered) / seconds,
            "p50 ms": 1000 * np.percentile(answered, 50) if answered else np.nan,
            "p99 ms": 1000 * np.percentile(answered, 99) if answered else np.nan,
            "503 share": refused / max(len(outcomes), 1),
            "other failures": len(outcomes) - len(answered) - refused, "requests": len(outcomes),
            "client send lag p50 ms": 1000 * float(np.median([o.sent - o.scheduled for o in outcomes]))}


def plot(samples: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, load_ax = plt.subplots(figsize=(7.5, 3.6))
    load_ax.plot(samples.t, samples.offered, color="tab:gray", label="offered load (req/s)")
    load_ax.plot(samples.t, samples.answered, color="tab:blue", label="answered (req/s)")
    load_ax.set(xlabel="seconds into the ramp", ylabel="requests / s")
    replicas_ax = load_ax.twinx()
    replicas_ax.step(samples.t, samples.replicas, where="post", color="tab:red", label="replicas running")
    replicas_ax.set(ylabel="replicas")
    replicas_ax.set_ylim(0, samples.replicas.max() + 1)
    handles = load_ax.get_legend_handles_labels()[0] + replicas_ax.get_legend_handles_labels()[0]
    load_ax.legend(handles, [h.get_label() for h in handles], fontsize="small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--task", default="tfbind8")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--per-request", type=int, default=128)
    parser.add_argument("--clients", type=int, default=16, help="closed-loop clients that measure capacity")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each open-loop load")
    parser.add_argument("--ramp-seconds", type=float, default=120.0)
    parser.add_argument("--tail-seconds", type=float, default=90.0, help="0.25x held after the ramp")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="no load after the tail, still sampled")
    parser.add_argument("--settle-seconds", type=float, default=180.0,
                        help="at most this long without load before the ramp, for the replicas to come down")
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--cpus-per-replica", type=float, default=0.5)
    parser.add_argument("--port", type=int, default=8327)
    parser.add_argument("--out", default="runs/serve-scaling")


def run(args: argparse.Namespace, command: str) -> int:
    from bib_ray.backbones import BackboneSpec
    from bib_ray.core.aux_ensemble import AuxiliarySettings
    from bib_ray.distributed.runtime import connect, disconnect
    from bib_ray.proxy.fitting import ProxySettings, fit_and_save_proxy
    from bib_ray.service import launch
    from bib_ray.service.settings import (APPLICATION_NAME, DEFAULT_AUTOSCALING, DEFAULT_DEPLOYMENT, ServeDeployment,
                                          ServiceSettings)
    from bib_ray.tasks import load_task

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = load_task(args.task, args.data_dir)
    artifact = fit_and_save_proxy(task, ProxySettings(BackboneSpec.parse(args.backbone), device="cpu"),
                                  Path(tempfile.mkdtemp(prefix="bib-ray-scaling-")) / "proxy",
                                  AuxiliarySettings(members=2, epochs=2, max_rows=2000))
    body = {"sequences": task.sequences(task.x[:args.per_request])}
    scaling = {**DEFAULT_AUTOSCALING, "max_replicas": args.max_replicas}
    deployment = ServeDeployment(**dict(DEFAULT_DEPLOYMENT, port=args.port, num_replicas="auto",
                                        autoscaling_config=scaling,
                                        ray_actor_options={"num_cpus": args.cpus_per_replica}))
    settings = ServiceSettings(artifact=str(artifact), device="cpu")
    connect()
    rows, samples = [], []
    try:
        url = launch.deploy(settings, deployment)
        closed_loop_rate(url, body, 4, 3.0)  # warm-up
        capacity = closed_loop_rate(url, body, args.clients, args.seconds)
        print(f"capacity: {capacity:.1f} requests/s ({args.clients} closed-loop clients, {args.per_request} "
              f"sequences each, {replicas_running(APPLICATION_NAME)} replica(s) running)", flush=True)
        for factor in (0.5, 1.0, 2.0):
            outcomes = open_loop(url, body, lambda _, f=factor: f * capacity, args.seconds)
            rows.append(summarise(f"{factor:g}x", factor * capacity, outcomes, args.seconds))
            print(f"  {factor:g}x: {rows[-1]}", flush=True)
        settled = time.monotonic() + args.settle_seconds
        while replicas_running(APPLICATION_NAME) > scaling["min_replicas"] and time.monotonic() < settled:
            time.sleep(2.0)  # the ramp starts from the autoscaler's floor, not from the overload's replicas
        half = args.ramp_seconds / 2

        def ramp(t: float) -> float:  # 0.25x -> 2x -> 0.25x, linear, then 0.25x for the tail
            return capacity * (0.25 + 1.75 * max(0.0, 1 - abs(t - half) / half))

        total = args.ramp_seconds + args.tail_seconds

        stop, started = threading.Event(), time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                t = time.monotonic() - started
                samples.append({"t": t, "offered": ramp(t) if t < total else 0.0,
                                "replicas": replicas_running(APPLICATION_NAME)})
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        outcomes = open_loop(url, body, ramp, total)
        stop.wait(args.idle_seconds)
        stop.set()
        sampler.join()
    finally:
        disconnect()  # Serve's actors go with Ray
    frame = pd.DataFrame(rows)
    timeline = pd.DataFrame(samples)
    answered = pd.Series([o.sent + o.latency_s - started for o in outcomes if o.status == 200])  # when answered
    timeline["answered"] = [((answered >= t - 1) & (answered < t)).sum() for t in timeline.t]
    timeline.to_csv(out / "serve_scaling_timeline.csv", index=False)
    plot(timeline, out / "serve_scaling.png")
    ramp_row = summarise("ramp 0.25x-2x-0.25x + tail", float(np.mean([ramp(t) for t in range(int(total))])),
                         outcomes, total)
    frame = pd.concat([frame, pd.DataFrame([ramp_row])], ignore_index=True)
    text = (f"capacity {capacity:.1f} requests/s ({args.per_request} sequences each, backbone {args.backbone}); "
            f"num_replicas auto, {scaling}, {args.cpus_per_replica:g} CPU per replica\n\n{markdown_table(frame, 2)}\n\n"
            f"replicas running during the ramp: min {timeline.replicas.min()}, max {timeline.replicas.max()}, "
            f"{timeline.replicas[timeline.t <= total].iloc[-1]} at the end of the tail "
            f"(OUT/serve_scaling.png)\n\nreproduce: `{command}`")
    (out / "serve_scaling.md").write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("bib_ray.bench.serve_scaling", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    exit_with(main, "bib_ray.bench.serve_scaling")
