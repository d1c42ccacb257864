"""Normalised 100th / 50th percentiles of BIB's modes on TFBind8 tasks, mean +- std over seeds.

    python -m bib_ray.bench.results_table --data-dir ../shared/data --tasks tfbind8,tfbind8-r \
        --backbones tiny --seeds 0-4 --csv results.csv

Each (task, backbone) embeds its offline set once; every mode then runs the same seeds
(128 designs x 100 steps by default), exactly as ``bib-ray design`` would.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from bib_ray.cli import parse_seeds
from bib_ray.config import build_config
from bib_ray.pipeline import fit_proxy, run_seed
from bib_ray.tasks import load_task

MODES = [("forward", False), ("backward", False), ("bidirectional", False), ("adaptive-gamma", False),
         ("adaptive-gamma", True)]


def run_grid(tasks: list[str], backbones: list[str], seeds: list[int], steps: int, designs: int,
             data_dir: str | None, progress: bool) -> pd.DataFrame:
    rows = []
    for task_name in tasks:
        task = load_task(task_name, data_dir)
        for backbone in backbones:
            fitted = fit_proxy(task, backbone, progress=progress)
            for mode, eta in MODES:
                config = build_config(dict(task=task_name, backbone=backbone, mode=mode, adaptive_eta=eta,
                                           steps=steps, designs=designs, seeds=seeds))
                for seed in seeds:
                    started = time.perf_counter()
                    result = run_seed(fitted, config, seed, progress)
                    rows.append({"task": task_name, "backbone": backbone, "method": config.method_label(),
                                 "seed": seed, **result.oracle_summary,
                                 "unique_designs": int(result.designs.sequence.nunique()),
                                 "final_gamma": float(result.trajectory.history["gamma"][-1].mean()),
                                 "seconds": time.perf_counter() - started,
                                 "embed_offline_s": fitted.timings["embed_offline_s"]})
                    print(f"{task_name} {backbone} {config.method_label()} seed {seed}: "
                          f"p100 {result.oracle_summary['p100']:.3f} p50 {result.oracle_summary['p50']:.3f}",
                          flush=True)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    """One row per (task, backbone, method): mean +- std of the normalised percentiles."""
    def fmt(values: pd.Series) -> str:
        return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"

    lines = ["| task | backbone | method | 100th pct | 50th pct | unique designs | s / seed |",
             "|---|---|---|---|---|---|---|"]
    for (task, backbone, method), group in frame.groupby(["task", "backbone", "method"], sort=False):
        lines.append(f"| {task} | {backbone} | {method} | {fmt(group.p100)} | {fmt(group.p50)} | "
                     f"{group.unique_designs.mean():.0f} | {group.seconds.mean():.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks", default="tfbind8,tfbind8-r")
    parser.add_argument("--backbones", default="tiny")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--designs", type=int, default=128)
    parser.add_argument("--csv", default=None, help="also write the per-seed rows here")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    frame = run_grid(args.tasks.split(","), args.backbones.split(","), parse_seeds(args.seeds), args.steps,
                     args.designs, args.data_dir, args.progress)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    print()
    print(markdown(frame))
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
