"""Ray scaling on this machine, side by side in one run:

    python -m bib_ray.bench.ray_scaling --data-dir ../shared/data

Timings are medians of 3 passes after a warm-up.

- embedding throughput of the offline set (tfbind8, 32,898 rows) with 1 vs 2 shards;
- wall time of a CPU-bound trajectory run (tfbind8-r, 128 designs x 100 steps, Adaptive-gamma)
  with 1 vs 2 shard workers (each actor 1 CPU, 1 torch thread), for the default tiny backbone
  and a wider one whose step is dominated by arithmetic rather than per-call overhead;
- throughput of the quick sweep (tune_configs/quick.yaml) in trials per minute, and its
  result table (trial, hyper-parameters, offline selection score, oracle score for reporting).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.distributed.runtime import connect
from bib_ray.distributed.settings import RaySettings
from bib_ray.distributed.shards import ShardPool, ShardResources
from bib_ray.run.config import build_config
from bib_ray.run.engine import initial_logits
from bib_ray.run.executor import LocalExecutor
from bib_ray.tasks import load_task

REPEATS = 3  # medians of this many timed passes
QUICK_SWEEP = Path(__file__).resolve().parents[2] / "tune_configs" / "quick.yaml"


def embedding_rows_per_s(task, backbone: str, shards: int) -> float:
    pool = ShardPool(backbone, task, ShardResources(count=shards), embed_batch_size=512)
    try:
        pool.embed_statistics(task.x[:1024], task.y[:1024], task.x[:0, 0])  # warm every replica
        seconds = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            pool.embed_statistics(task.x, task.y, task.x[:0, 0])
            seconds.append(time.perf_counter() - started)
        return len(task.y) / float(np.median(seconds))
    finally:
        pool.shutdown()


def trajectory_seconds(task, backbone: str, shards: int, designs: int, steps: int) -> float:
    config = build_config(dict(task=task.name, backbone=backbone, method="bib", steps=steps, designs=designs))
    executor = LocalExecutor()
    fitted = executor.fit(task, config.proxy_settings())
    (aux, _), = executor.train_aux(fitted, config.aux_settings(), [0])
    logits = initial_logits(task, designs, 0, 0.1)
    pool = ShardPool(backbone, task, ShardResources(count=shards))
    try:
        batch = -(-designs // shards)  # one batch per worker, as `bib-ray design` splits them
        warm_up = dataclasses.replace(config.optimiser_settings(), steps=2)
        pool.run_seeds(fitted.proxy, [aux], warm_up, [logits], batch)
        seconds = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            pool.run_seeds(fitted.proxy, [aux], config.optimiser_settings(), [logits], batch)
            seconds.append(time.perf_counter() - started)
        return float(np.median(seconds))
    finally:
        pool.shutdown()


def sweep_trials_per_minute(data_dir: str | None) -> tuple[pd.DataFrame, float]:
    from bib_ray.sweep.driver import run_sweep
    from bib_ray.sweep.config import load_sweep_config

    sweep = load_sweep_config(str(QUICK_SWEEP))
    if data_dir:
        sweep.base["data_dir"] = data_dir
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        table = run_sweep(sweep, RaySettings(shards=2), Path(out)).table
        minutes = (time.perf_counter() - started) / 60
    return table, len(table) / minutes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--designs", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--backbones", default="tiny,tiny:hidden_size=256",
                        help="backbones to time (the second is more compute-bound)")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    where = connect(None, num_cpus=None)
    rows = [("Ray", where)]
    standard = load_task("tfbind8", args.data_dir)
    reverse = load_task("tfbind8-r", args.data_dir)
    for backbone in args.backbones.split(","):
        one, two = embedding_rows_per_s(standard, backbone, 1), embedding_rows_per_s(standard, backbone, 2)
        rows += [(f"embedding {len(standard.y):,} rows, {backbone}, 1 shard", f"{one:,.0f} rows/s"),
                 (f"embedding {len(standard.y):,} rows, {backbone}, 2 shards", f"{two:,.0f} rows/s"),
                 (f"embedding speed-up, {backbone}", f"{two / one:.2f}x")]
        t1 = trajectory_seconds(reverse, backbone, 1, args.designs, args.steps)
        t2 = trajectory_seconds(reverse, backbone, 2, args.designs, args.steps)
        rows += [(f"trajectories, {backbone}, 1 worker", f"{t1:.2f} s ({args.designs} designs x {args.steps} steps)"),
                 (f"trajectories, {backbone}, 2 workers", f"{t2:.2f} s"),
                 (f"trajectory speed-up, {backbone} (goal >= 1.7x)", f"{t1 / t2:.2f}x")]
    sweep_table = None
    if not args.skip_sweep:
        sweep_table, rate = sweep_trials_per_minute(args.data_dir)
        rows.append(("quick sweep throughput",
                      f"{rate:.1f} trials/min ({len(sweep_table)} trials, incl. Ray + embedding)"))
    width = max(len(name) for name, _ in rows)
    print(f"\n{'measure':<{width}}  value\n{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if sweep_table is not None:
        print("\nquick sweep trials (selection_score: the sweep's offline metric; oracle columns are reporting only)")
        print(sweep_table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
