"""Design rounds, measured: R rounds of N designs on an oracle task, the oracle standing in for the lab.

    python -m bib_ray.bench.campaign --data-dir ../shared/data --out runs/campaign
    python -m bib_ray.bench.campaign --data-dir ../shared/data --tasks tfbind8-r --rounds 2 --quick

A campaign is one (task, method, seed). Each round runs the design (``run_design``, one seed, the
round's own seed) with a batch of ``--batch`` designs on the offline data as it stands, the oracle
scores the batch as a lab would measure it, and the measured sequences join the offline data for the
next round (a design the oracle has no value for, e.g. an unmeasured GB1 variant, is a failed assay:
it is not added; an infeasible Ehrlich design is measured at the task's infeasible score). Per round:
the best normalised score measured so far (round 0: the best offline sequence), the batch's median and
best, how many designs the batch held, and how many were repeats within it or already measured (both
must stay 0). Campaigns run as Ray tasks (one CPU each); each finished campaign's rows go to
``OUT/campaign.csv`` at once, so ``--resume`` runs only the missing ones. ``OUT/campaign.png`` draws the
best so far against the round (mean over seeds, bars: min to max).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.bench import collect_rows, exit_with, module_main
from bib_ray.bench.selection import markdown_table
from bib_ray.bench.suite import split_task_list
from bib_ray.specs import parse_seeds

TASKS = "tfbind8-r,gb1,ehrlich"
METHODS = "bib,forward,evolution,bdi"


def measured(task, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``codes`` the oracle measures (a lab's assay), and their raw scores: OK designs, and
    infeasible ones at the task's infeasible score when it has one; unknown ones are left out."""
    from bib_ray.tasks.base import DesignStatus

    result = task.oracle(codes)
    status = np.asarray(result.status)
    scores = np.asarray(result.scores, dtype=np.float64)
    keep = status == DesignStatus.OK.value
    if task.infeasible_score is not None:
        infeasible = status == DesignStatus.INFEASIBLE.value
        scores = np.where(infeasible, task.infeasible_score, scores)
        keep |= infeasible
    return codes[keep], scores[keep]


def campaign(task_spec: str, method: str, seed: int, rounds: int, batch: int, backbone: str, data_dir: str | None,
             steps: int | None, designs: int) -> list[dict]:
    """One campaign's rows, round 0 (the offline data) to ``rounds``."""
    from bib_ray.run.config import build_config
    from bib_ray.run.engine import run_design
    from bib_ray.run.executor import LocalExecutor

    values = dict(task=task_spec, data_dir=data_dir, method=method, batch=batch, steps=steps, designs=designs,
                  device="cpu", **({} if method == "bdi" else {"backbone": backbone}))
    task = build_config(values).load_task()
    if task.oracle is None:
        raise ValueError(f"task {task_spec} has no oracle to stand in for the lab")
    best = float(task.normalise(task.y.max()))
    rows = [{"task": task_spec, "method": method, "seed": seed, "round": 0, "best_so_far": best,
             "batch_p100": np.nan, "batch_p50": np.nan, "chosen": 0, "duplicates": 0, "already_measured": 0,
             "added": 0, "offline_rows": len(task.y), "seconds": 0.0}]
    for round_ in range(1, rounds + 1):
        started = time.perf_counter()
        config = build_config({**values, "seeds": [seed * 1000 + round_]})
        run = run_design(config, task, LocalExecutor())
        table = run.batch.table
        codes = np.stack([[task.alphabet.index(c) for c in s] for s in table.sequence]) if len(table) else \
            np.zeros((0, task.length), dtype=np.int64)
        known = {row.tobytes() for row in task.x.astype(np.int64)}
        repeats = int(len(table) - table.sequence.nunique())
        seen = int(sum(row.astype(np.int64).tobytes() in known for row in codes))
        new_x, new_y = measured(task, codes)
        task = dataclasses.replace(task, x=np.concatenate([task.x, new_x]), y=np.concatenate([task.y, new_y]))
        if len(new_y):
            best = max(best, float(task.normalise(new_y.max())))
        oracle = run.batch.summary["oracle"] or {}
        rows.append({"task": task_spec, "method": method, "seed": seed, "round": round_, "best_so_far": best,
                     "batch_p100": oracle.get("p100", np.nan), "batch_p50": oracle.get("p50", np.nan),
                     "chosen": len(table), "duplicates": repeats, "already_measured": seen, "added": len(new_y),
                     "offline_rows": len(task.y), "seconds": time.perf_counter() - started})
    return rows


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per task, method and round: mean over seeds of the best so far and the batch median."""
    grouped = frame.groupby(["task", "method", "round"], sort=False)
    table = grouped.agg(best_so_far=("best_so_far", "mean"), best_min=("best_so_far", "min"),
                        best_max=("best_so_far", "max"), batch_p50=("batch_p50", "mean"),
                        batch_p100=("batch_p100", "mean"), chosen=("chosen", "mean"),
                        duplicates=("duplicates", "sum"), already_measured=("already_measured", "sum"),
                        seeds=("seed", "nunique"))
    return table.reset_index()


def plot(table: pd.DataFrame, path: Path) -> Path:
    """Best so far against the round, one panel per task, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(table.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for method, rows in table[table.task == task].groupby("method", sort=False):
            spread = [(rows.best_so_far - rows.best_min).clip(lower=0), (rows.best_max - rows.best_so_far).clip(lower=0)]
            ax.errorbar(rows["round"], rows.best_so_far, yerr=spread, marker="o", capsize=3, label=method)
        ax.set(title=task, xlabel="round (0: the offline data)", ylabel="best normalised score so far")
        ax.set_xticks(sorted(table["round"].unique()))
    axes.flat[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="task data directory (default $BIB_RAY_DATA)")
    parser.add_argument("--tasks", default=TASKS)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--seeds", default="0-2", help="one campaign per seed")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=96, help="designs ordered per round")
    parser.add_argument("--backbone", default="tiny", help="backbone of every method but bdi (the NTK proxy)")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: the reference T of each task)")
    parser.add_argument("--designs", type=int, default=128, help="trajectories per round")
    parser.add_argument("--quick", action="store_true", help="8 steps, 32 trajectories, 16 designs per round")
    parser.add_argument("--address", help="Ray cluster (default $RAY_ADDRESS, else embedded local Ray)")
    parser.add_argument("--out", default="runs/campaign")
    parser.add_argument("--resume", action="store_true", help="keep the campaigns in OUT/campaign.csv")


def run(args: argparse.Namespace, command: str) -> int:
    import ray

    from bib_ray.distributed.runtime import connect

    if args.quick:
        args.steps, args.designs, args.batch = args.steps or 8, 32, min(args.batch, 16)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "campaign.csv"
    frames = [pd.read_csv(csv_path)] if args.resume and csv_path.exists() else []
    done = set(frames[0][["task", "method", "seed"]].itertuples(index=False, name=None)) if frames else set()
    cells = [(t, m, s) for t in split_task_list(args.tasks) for m in args.methods.split(",")
             for s in parse_seeds(args.seeds) if (t, m, s) not in done]
    connect(args.address)
    remote = ray.remote(num_cpus=1)(campaign)
    collect_rows({remote.remote(t, m, s, args.rounds, args.batch, args.backbone, args.data_dir, args.steps,
                                args.designs): f"{t}/{m}/{s}" for t, m, s in cells}, frames, csv_path)
    frame = pd.concat(frames, ignore_index=True)
    table = summary(frame)
    plot(table, out / "campaign.png")
    shown = table.drop(columns=["best_min", "best_max"])
    text = (f"{args.rounds} rounds x {args.batch} designs, seeds {args.seeds}, mean over seeds (round 0: the best "
            f"offline sequence; duplicates and already_measured summed over seeds):\n\n{markdown_table(shown)}\n\n"
            f"reproduce: `{command}`")
    (out / "campaign.md").write_text(text + "\n")
    print(text)
    print(f"\nwritten: {csv_path}, {out / 'campaign.md'}, {out / 'campaign.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("bib_ray.bench.campaign", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    exit_with(main, "bib_ray.bench.campaign")
