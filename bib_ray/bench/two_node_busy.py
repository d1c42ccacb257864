"""Wall time and per-node CPU time of a 5-seed ``bib-ray design`` run on two nodes that share no disk.

    sudo .venv/bin/python -m bib_ray.bench.two_node_busy --data-dir ../shared/data [--repeats 2]

Run as root (it uses the cluster harness ``bib_ray.distributed.cluster_utils.IsolatedCluster``: a
head with no task CPUs and one 2-CPU worker in its own mount namespace, which cannot see the
data folder). CPU seconds per node are sampled from /proc every 0.3 s while the command runs:
the worker's are those of every process in its mount namespace, the head's those of the head's
process group and of the driver. Prints one row per run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_and_group(pid: str) -> tuple[float, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICK, int(fields[2])  # utime stime cutime cstime, pgrp


def busy_while(command: list[str], env: dict, worker_pid: int, head_group: int) -> tuple[int, float, dict]:
    """(exit status, wall seconds, {'head': CPU-s, 'worker': CPU-s}) of ``command``."""
    worker_ns = os.readlink(f"/proc/{worker_pid}/ns/mnt")
    first: dict[str, tuple[str, float]] = {}
    last: dict[str, float] = {}

    def sample(driver: int) -> None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                seconds, group = _cpu_and_group(pid)
                node = "worker" if os.readlink(f"/proc/{pid}/ns/mnt") == worker_ns else (
                    "head" if group in (head_group, driver) else None)
            except OSError:
                continue
            if node is not None:
                first.setdefault(pid, (node, seconds if not started_sampling else 0.0))
                last[pid] = seconds

    started_sampling = False
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    sample(process.pid)
    started_sampling = True
    while process.poll() is None:
        sample(process.pid)
        time.sleep(0.3)
    wall = time.perf_counter() - started
    busy = {"head": 0.0, "worker": 0.0}
    for pid, (node, at_start) in first.items():
        busy[node] += last[pid] - at_start
    return process.returncode, wall, busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    from bib_ray.distributed.cluster_utils import IsolatedCluster, namespaces_permitted

    reason = namespaces_permitted()
    if reason is not None:
        print(f"two_node_busy: {reason}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="bibray-bench-"))
    head_only = root / "head-only"
    head_only.mkdir()
    cluster = IsolatedCluster(root, [head_only, Path(args.data_dir).resolve()]).start()
    try:
        worker = next(p.pid for p in cluster.processes[1:])
        command = [sys.executable, "-m", "bib_ray.cli", "design", "--address", cluster.address, "--task", "tfbind8-r",
                   "--data-dir", args.data_dir, "--seeds", "0-4", "--steps", str(args.steps), "--shards", "2",
                   "--quiet"]
        print("| run | wall s | head CPU-s | worker CPU-s |\n|---|---|---|---|")
        for run in range(args.repeats):
            status, wall, busy = busy_while(command + ["--out", str(head_only / f"run{run}")], cluster.env(),
                                            worker, os.getpgid(cluster.processes[0].pid))
            if status != 0:
                print(f"run {run} failed with status {status}", file=sys.stderr)
                return 1
            print(f"| {run} | {wall:.1f} | {busy['head']:.1f} | {busy['worker']:.1f} |", flush=True)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
