"""Batch benchmark: is the batch to order better than the per-trajectory designs, and which settings choose it?

    python -m bib_ray.bench.batch --data-dir ../shared/data --seeds 5-7 --grid --out runs/batch-tune
    python -m bib_ray.bench.batch --data-dir ../shared/data --seeds 0-4 --out runs/batch
    python -m bib_ray.bench.batch --cost                      # wall time and peak memory of the batch stage

For each task and backbone, one ``--method`` run over ``--seeds`` with a batch of ``--batch`` designs
(candidates from 9 checkpoints per trajectory, so that every smaller checkpoint count's candidates are
among them). The run's own batch uses the defaults (``bib_ray.run.batch``); ``--grid`` also chooses a
batch from the same scored candidates for every combination of kappa, minimum distance, per-start cap
and checkpoints (``GRID``), so the settings are compared on identical candidates. Only then does the
oracle score the batches. Per row: the per-trajectory 100th / 50th percentiles (the mean over seeds of
each seed's 128 final designs, the paper's protocol) against the batch's, and the batch's duplicates and
sequences already in the offline data, both of which must be 0.

The target (issue 21): on every row, batch 50th >= per-trajectory 50th and batch 100th >= per-trajectory
100th - 0.01. ``--grid`` ranks the settings by the rows that meet it, then by the mean margins. Runs go
to Ray tasks (one CPU each), rows to ``OUT/batch_runs.csv`` as they finish; ``--resume`` keeps them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.bench import collect_rows, exit_with, module_main
from bib_ray.bench.selection import markdown_table
from bib_ray.bench.suite import split_task_list
from bib_ray.specs import parse_seeds

TASKS = "tfbind8,tfbind8-r,tfbind10-r,gb1,ehrlich,pab1"
BACKBONES = "tiny,onehot,ntk"
POOL_CHECKPOINTS = 9  # every grid value's checkpoints are among these (for T = 100 and T = 25)
GRID = {"kappa": (0.0, 0.5, 1.0, 2.0), "min_distance": (1, 2, 3), "per_start": (None, 1, 2, 4),
        "checkpoints": (0, 1, 4, 9)}
TARGET_P100_SLACK = 0.01


def evaluate(task_spec: str, backbone: str, method: str, seeds: list[int], size: int, data_dir: str | None,
             grid: bool) -> list[dict]:
    """One run (``run_design`` in this process) and its batch under the defaults, and under every ``GRID``
    setting when ``grid``; one row per setting."""
    from bib_ray.run.batch import BatchSettings, known_sequences, select_batch
    from bib_ray.run.config import build_config
    from bib_ray.run.engine import run_design
    from bib_ray.run.executor import LocalExecutor

    started = time.perf_counter()
    config = build_config(dict(task=task_spec, data_dir=data_dir, backbone=backbone, method=method, seeds=seeds,
                               batch=size, batch_checkpoints=POOL_CHECKPOINTS, device="cpu"))
    task = config.load_task()
    run = run_design(config, task, LocalExecutor())
    steps = run.config.resolved_steps
    base = {"task": task_spec, "backbone": backbone, "method": method, "seeds": len(seeds),
            "traj_p100": float(np.mean([r.oracle_summary["p100"] for r in run.seeds])),
            "traj_p50": float(np.mean([r.oracle_summary["p50"] for r in run.seeds])),
            "run_s": time.perf_counter() - started, "batch_s": run.batch.summary["seconds"]}
    defaults = BatchSettings(size)
    settings = [defaults] + ([BatchSettings(size, kappa, distance, cap, checkpoints) for kappa, distance, cap,
                              checkpoints in itertools.product(*GRID.values())] if grid else [])
    known = {row.tobytes() for row in known_sequences(task)}
    rows = []
    for index, setting in enumerate(settings):
        candidates = run.batch.candidates.at_steps(set(setting.checkpoint_steps(steps)) | {steps})
        batch = select_batch(candidates, setting, task, run.config.seeds, run.config.aux_members)
        codes = np.stack([[task.alphabet.index(c) for c in s] for s in batch.table.sequence]) \
            if len(batch.table) else np.zeros((0, task.length), dtype=np.int64)
        oracle = batch.summary["oracle"] or {"p100": np.nan, "p50": np.nan}
        rows.append({**base, "setting": "default" if index == 0 else "grid", "kappa": setting.kappa,
                     "min_distance": setting.min_distance, "per_start": setting.per_start or 0,
                     "checkpoints": setting.checkpoints, "chosen": len(batch.table),
                     "batch_p100": oracle["p100"], "batch_p50": oracle["p50"],
                     "duplicates": int(len(batch.table) - batch.table.sequence.nunique()),
                     "measured": int(sum(row.astype(np.int64).tobytes() in known for row in codes))})
    return rows


def meets_target(frame: pd.DataFrame) -> pd.Series:
    return (frame.batch_p50 >= frame.traj_p50) & (frame.batch_p100 >= frame.traj_p100 - TARGET_P100_SLACK)


def rank_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Per grid setting over the (task, backbone) rows: how many meet the target, the mean margins."""
    grid = frame[frame.setting == "grid"].assign(ok=meets_target, p50_margin=lambda f: f.batch_p50 - f.traj_p50,
                                                 p100_margin=lambda f: f.batch_p100 - f.traj_p100)
    table = grid.groupby(list(GRID)).agg(rows_meeting_target=("ok", "sum"), rows=("ok", "size"),
                                         p50_margin=("p50_margin", "mean"), p100_margin=("p100_margin", "mean"),
                                         min_p50_margin=("p50_margin", "min"), min_p100_margin=("p100_margin", "min"))
    table = table.reset_index()
    table["margin"] = table.p50_margin + table.p100_margin
    return table.sort_values(["rows_meeting_target", "margin"], ascending=False, ignore_index=True)


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The default batch against the per-trajectory designs, one row per task and backbone."""
    rows = frame[frame.setting == "default"].copy()
    rows["target met"] = np.where(meets_target(rows), "yes", "no")
    return rows[["task", "backbone", "traj_p100", "batch_p100", "traj_p50", "batch_p50", "chosen", "duplicates",
                 "measured", "target met", "run_s", "batch_s"]]


PEAK_RSS = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); " \
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # the command's peak RSS, KB


def cost(repeats: int, out: Path) -> str:
    """Wall time and peak memory (max RSS, ``--local``) of the README's main job with and without
    ``--batch 128``, ``repeats`` times each, alternating; and the batch stage's own seconds (summary.json)."""
    runs: dict[str, list[tuple[float, float, float]]] = {"without --batch": [], "with --batch 128": []}
    for repeat in range(repeats):
        for label, extra in (("without --batch", []), ("with --batch 128", ["--batch", "128"])):
            place = out / f"cost-{repeat}-{len(extra)}"
            command = [sys.executable, "-m", "bib_ray.cli", "design", "--local", "--quiet", "--out", str(place),
                       "--overwrite", *extra]
            started = time.perf_counter()
            peak_kb = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], check=True, capture_output=True,
                                     text=True).stdout.split()[-1]
            wall = time.perf_counter() - started
            summary = json.loads((place / "summary.json").read_text())
            stage = summary["batch"]["seconds"] if summary.get("batch") else 0.0
            runs[label].append((wall, int(peak_kb) / 1024, stage))
    lines = ["| main job (`bib-ray design --local`) | wall s, median | batch stage s, median | peak RSS MB, max |",
             "|---|---|---|---|"]
    for label, values in runs.items():
        walls, peaks, stages = zip(*values)
        lines.append(f"| {label} | {np.median(walls):.2f} | {np.median(stages):.2f} | {max(peaks):.0f} |")
    return "\n".join(lines) + f"\n\n{repeats} runs of each, alternating"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="task data directory (default $BIB_RAY_DATA)")
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--backbones", default=BACKBONES)
    parser.add_argument("--method", default="bib")
    parser.add_argument("--seeds", default="0-4", help="the seeds of each run (one batch pooled over them)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--grid", action="store_true", help="also choose a batch under every GRID setting")
    parser.add_argument("--cost", action="store_true", help="only time the main job with and without --batch")
    parser.add_argument("--repeats", type=int, default=3, help="--cost: runs of each")
    parser.add_argument("--address", help="Ray cluster (default $RAY_ADDRESS, else embedded local Ray)")
    parser.add_argument("--out", default="runs/batch")
    parser.add_argument("--resume", action="store_true", help="keep the rows in OUT/batch_runs.csv, run the rest")


def run(args: argparse.Namespace, command: str) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cost:
        with tempfile.TemporaryDirectory() as scratch:
            text = cost(args.repeats, Path(scratch))
        (out / "batch_cost.md").write_text(f"{text}\n\nreproduce: `{command}`\n")
        print(f"{text}\n\nreproduce: `{command}`")
        return 0
    import ray

    from bib_ray.distributed.runtime import connect

    seeds = parse_seeds(args.seeds)
    cells = [(t, b) for t in split_task_list(args.tasks) for b in args.backbones.split(",")]
    csv_path = out / "batch_runs.csv"
    frames = [pd.read_csv(csv_path)] if args.resume and csv_path.exists() else []
    done = set(frames[0][["task", "backbone"]].itertuples(index=False, name=None)) if frames else set()
    connect(args.address)
    remote = ray.remote(num_cpus=1)(evaluate)
    collect_rows({remote.remote(t, b, args.method, seeds, args.batch, args.data_dir, args.grid): f"{t} / {b}"
                  for t, b in cells if (t, b) not in done}, frames, csv_path)
    frame = pd.concat(frames, ignore_index=True)
    text = (f"Default batch ({args.batch} designs pooled over seeds {args.seeds}, method {args.method}) against the "
            f"per-trajectory designs (mean over seeds):\n\n{markdown_table(results_table(frame))}")
    if args.grid and (frame.setting == "grid").any():
        text += f"\n\nSettings ranked (grid, same candidates):\n\n{markdown_table(rank_settings(frame).head(15))}"
    text += f"\n\nreproduce: `{command}`"
    (out / "batch.md").write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("bib_ray.bench.batch", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    exit_with(main, "bib_ray.bench.batch")
