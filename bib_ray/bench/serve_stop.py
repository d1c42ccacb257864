"""Stopping ``bib-ray serve`` under load: time to exit, the requests in flight, the exit code and its output.

    python -m bib_ray.bench.serve_stop runs/default/proxy --signal SIGTERM --signal SIGINT

For each signal: starts ``bib-ray serve ARTIFACT`` (its own local Ray, ``--drain-timeout``), keeps
``--clients`` clients posting ``--per-request`` sequences back to back, sends the signal after
``--load-seconds`` and counts, by status, the requests finished before it, those in flight when it came
(sent before, answered after: the drain must finish them) and those sent after it (refused: 503 while
draining, or a connection error once the port is closed). Then it lists the Ray processes of that
service still alive (target: none) and prints the service's output after its "serving" line.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from bib_ray.bench import exit_with, module_main
from bib_ray.bench.selection import markdown_table


def stop_under_load(artifact: Path, signame: str, args: argparse.Namespace) -> tuple[dict, str]:
    """One serve process stopped by ``signame`` under load: a table row and the service's output."""
    import requests

    from bib_ray.distributed.cluster_utils import free_port

    port, ray_tmp = free_port(), tempfile.mkdtemp(prefix="br-stop-", dir="/tmp")
    env = dict(os.environ, RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    service = subprocess.Popen(
        [sys.executable, "-m", "bib_ray.cli", "serve", str(artifact), "--port", str(port), "--device", "cpu",
         "--drain-timeout", str(args.drain_timeout)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's background job ignores SIGINT
    for line in service.stdout:
        if "serving" in line:
            break
    else:
        raise RuntimeError(f"bib-ray serve exited with {service.wait()} before serving")
    url = f"http://127.0.0.1:{port}"
    info = requests.get(f"{url}/info", timeout=30).json()
    body = {"sequences": [info["alphabet"][0] * info["length"]] * args.per_request}
    records, stop = [], threading.Event()

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = session.post(f"{url}/score", json=body, timeout=60).status_code
            except requests.RequestException as error:
                status = type(error).__name__
                time.sleep(0.05)
            records.append((sent, time.monotonic(), status))

    clients = [threading.Thread(target=client) for _ in range(args.clients)]
    for thread in clients:
        thread.start()
    time.sleep(args.load_seconds)
    signalled = time.monotonic()
    service.send_signal(getattr(signal, signame))
    output, _ = service.communicate(timeout=args.drain_timeout + 120)
    exited = time.monotonic()
    stop.set()
    for thread in clients:
        thread.join()
    left = subprocess.run(["pgrep", "-f", ray_tmp], capture_output=True, text=True).stdout.split()

    def counts(rows: list) -> str:
        return ", ".join(f"{status}: {n}" for status, n in sorted(Counter(r[2] for r in rows).items(), key=str))

    in_flight = [r for r in records if r[0] < signalled < r[1]]
    row = {"signal": signame, "exit code": service.returncode, "seconds to exit": exited - signalled,
           "drain timeout s": args.drain_timeout,
           "before the signal": counts([r for r in records if r[1] <= signalled]),
           "in flight": f"{len(in_flight)} ({counts(in_flight)})",
           "sent after": counts([r for r in records if r[0] >= signalled]),
           "Ray processes left": len(left)}
    return row, output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=Path, help="a proxy artifact (a run's proxy/ directory)")
    parser.add_argument("--signal", dest="signals", action="append", choices=["SIGTERM", "SIGINT"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-request", type=int, default=128)
    parser.add_argument("--load-seconds", type=float, default=6.0, help="load before the signal")
    parser.add_argument("--drain-timeout", type=float, default=10.0)


def run(args: argparse.Namespace, command: str) -> int:
    rows = []
    for signame in args.signals or ["SIGTERM", "SIGINT"]:
        row, output = stop_under_load(args.artifact, signame, args)
        rows.append(row)
        print(f"--- {signame}: the service's output after its 'serving' line\n{output.rstrip()}\n", flush=True)
    print(markdown_table(pd.DataFrame(rows), 1))
    print(f"\n{args.clients} clients, {args.per_request} sequences per request; reproduce: `{command}`")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("bib_ray.bench.serve_stop", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    exit_with(main, "bib_ray.bench.serve_stop")
