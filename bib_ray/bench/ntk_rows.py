"""What the NTK proxy's row cap (``ntk_rows``) costs and buys: offline rows in its kernel vs fit time,
peak memory, step time and the designs' oracle scores.

    python -m bib_ray.bench.ntk_rows --data-dir ../shared/data --task tfbind8 --rows 1000,5000,20000,all

Each row count runs in a fresh process (so its peak resident memory is its own): one design run, seed
0, method ``bib`` on backbone ``ntk`` with ``ntk_rows`` = the count (``all``: the task's whole
offline set), through ``bib_ray.run.engine.run_design`` in that process. Fit time is embedding the
offline set plus forming and factorising the M x M kernel matrix; step time is the optimisation's
wall time over its steps.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import pandas as pd

from bib_ray.bench import exit_with, module_main


def measure(task_spec: str, data_dir: str | None, rows: int | None, designs: int, steps: int | None) -> dict:
    """One design run on the NTK proxy with ``rows`` kernel rows (None: all) in this process -> its row."""
    from bib_ray.run.config import build_config
    from bib_ray.run.engine import run_design
    from bib_ray.run.executor import LocalExecutor
    from bib_ray.tasks import load_task

    task = load_task(task_spec, data_dir)
    count = len(task.y) if rows is None else min(rows, len(task.y))
    config = build_config(dict(task=task_spec, backbone="ntk", ntk_rows=max(count, 2), designs=designs, steps=steps,
                               seeds=[0], device="cpu"))
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    run = run_design(config, task, LocalExecutor())
    seconds = time.perf_counter() - started
    timings, seed = run.fitted.timings, run.seeds[0]
    oracle = seed.oracle_summary or {}
    return {"task": task_spec, "kernel_rows": count, "offline_rows": len(task.y),
            "fit_s": timings["embed_offline_s"] + timings["solve_proxy_s"],
            "step_ms": seed.timings["step_ms"], "run_s": seconds,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "start_mb": before_mb,
            "p100": oracle.get("p100"), "p50": oracle.get("p50")}


def parse_rows(text: str) -> list[int | None]:
    """'1000,5000,all' -> [1000, 5000, None]."""
    return [None if piece.strip() == "all" else int(piece) for piece in text.split(",") if piece.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="data directory (default $BIB_RAY_DATA)")
    parser.add_argument("--task", default="tfbind8")
    parser.add_argument("--rows", default="1000,5000,20000,all", help="kernel row counts; all: every offline row")
    parser.add_argument("--designs", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="default: the task's reference T")
    parser.add_argument("--csv", default=None, help="also write the table here")


def run(args: argparse.Namespace, command: str) -> int:
    table = []
    for rows in parse_rows(args.rows):
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            try:
                row = pool.submit(measure, args.task, args.data_dir, rows, args.designs, args.steps).result()
            except BrokenProcessPool:  # killed, as the kernel's out-of-memory killer does: it does not fit
                print(f"{rows or 'all'} rows: the process was killed (out of memory?)", flush=True)
                table.append({"task": args.task, "kernel_rows": rows or "all", "killed": True})
                continue
        table.append(row)
        print(f"{row['kernel_rows']} rows: fit {row['fit_s']:.1f} s, peak {row['peak_mb']:.0f} MB", flush=True)
    if args.csv:
        pd.DataFrame(table).to_csv(args.csv, index=False)
    print(f"\n{command}\n")
    print("| kernel rows | fit s | step ms | run s | peak memory MB (at start) | oracle 100th | oracle 50th |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        if row.get("killed"):
            print(f"| {row['kernel_rows']} | killed before it finished (out of memory?) | | | | | |")
            continue
        print(f"| {row['kernel_rows']:,} of {row['offline_rows']:,} | {row['fit_s']:.1f} | {row['step_ms']:.0f} | "
              f"{row['run_s']:.0f} | {row['peak_mb']:,.0f} ({row['start_mb']:,.0f}) | {row['p100']:.3f} | "
              f"{row['p50']:.3f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("bib_ray.bench.ntk_rows", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    exit_with(main, "ntk_rows")
