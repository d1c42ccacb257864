"""Benchmark suite: method x task x backbone x seed grids on Ray, written as CSV, markdown and a plot.

    python -m bib_ray.bench.suite --data-dir ../shared/data --tasks tfbind8,tfbind8-r \
        --backbones tiny --seeds 0-4 --out runs/bench
    python -m bib_ray.bench.suite --preset smoke --data-dir ../shared/data --out /tmp/smoke   # CI

Each (task, backbone) embeds its offline set once in a Ray task; the fitted proxy goes to the
object store and every (method, seed) cell runs as its own Ray task (1 CPU) on it, exactly
as ``bib-ray design`` would for one seed. Tasks with a reference sequence (the DMS scans)
decode designs within their mutation radius. Methods: the BIB modes, ``evolution``
(AdaLead-style mutate-and-select on the same LM proxy, ``bib_ray.core.evolution``) and
``bdi`` (fixed-gamma bidirectional learning on the infinite-width ReLU NTK of one-hot inputs,
``bib_ray.core.ntk_proxy``; it needs no LM, so it runs once per task, under backbone ``ntk``,
on at most ``--kernel-rows`` offline rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.cli import parse_seeds
from bib_ray.errors import UserError

METHODS = {  # name -> (mode, adaptive_eta); "evolution" is separate
    "bib": ("adaptive-gamma", False),
    "bib+eta": ("adaptive-gamma", True),
    "bidirectional": ("bidirectional", False),
    "forward": ("forward", False),
    "forward+eta": ("forward", True),
    "backward": ("backward", False),
    "evolution": (None, False),
    "bdi": ("bidirectional", False),
}
NTK_GROUP = "ntk"  # the backbone column of bdi rows: the NTK proxy on one-hot inputs
PRESETS = {
    "smoke": dict(tasks="tfbind8,pab1", backbones="tiny", methods=",".join(METHODS), seeds="0", steps=5,
                  designs=8, kernel_rows=300),
    "dna": dict(tasks="tfbind8,tfbind8-r,tfbind10-r", backbones="tiny,onehot", methods=",".join(METHODS),
                seeds="0-4", steps=100, designs=128, kernel_rows=5000),
}


def fit_group(task_spec: str, backbone: str, data_dir: str | None, kernel_rows: int):
    """Load the task and fit its proxy once (a Ray task with two returns: the fit and its timings)."""
    from bib_ray.pipeline import fit_ntk_proxy, fit_proxy
    from bib_ray.tasks import load_task

    task = load_task(task_spec, data_dir)
    fitted = fit_ntk_proxy(task, max_rows=kernel_rows, device="cpu") if backbone == NTK_GROUP else \
        fit_proxy(task, backbone, device="cpu")
    return fitted, fitted.timings


def run_cell(fitted, task_spec: str, backbone: str, method: str, seed: int, steps: int, designs: int) -> dict:
    """One (method, seed) on a fitted proxy -> a row of normalised oracle percentiles and timings."""
    from bib_ray.config import build_config
    from bib_ray.core.evolution import EvolutionSettings, evolve
    from bib_ray.evaluation import evaluate_with_oracle
    from bib_ray.pipeline import run_seed
    from bib_ray.scoring import score_codes

    started = time.perf_counter()
    task = fitted.task
    radius = task.details.get("mutation_radius") if task.reference is not None else None
    if method == "evolution":
        def proxy_score(codes: np.ndarray) -> np.ndarray:
            return score_codes(fitted.embedder, fitted.proxy, None, codes)["proxy_score"]

        settings = EvolutionSettings(rounds=steps, population=designs, children_per_round=4 * designs)
        final = evolve(task.starting_designs(designs), proxy_score, len(task.alphabet), settings, seed,
                       designs, task.reference, radius).final_codes
        summary = evaluate_with_oracle(task, final).summary
    else:
        mode, eta = METHODS[method]
        config = build_config(dict(task=task_spec, backbone="onehot" if backbone == NTK_GROUP else backbone,
                                   mode=mode, adaptive_eta=eta, steps=steps, designs=designs, seeds=[seed],
                                   max_mutations=radius))
        result = run_seed(fitted, config, seed)
        final, summary = result.trajectory.final_codes, result.oracle_summary
    return {"task": task_spec, "backbone": backbone, "method": method, "seed": seed,
            "p100": summary["p100"], "p50": summary["p50"], "scored": summary["ok"],
            "unknown": summary["unknown"], "infeasible": summary["infeasible"], "designs": len(final),
            "unique_designs": int(len(np.unique(final, axis=0))), "oracle_kind": task.oracle_kind.value,
            "seconds": time.perf_counter() - started, "worker_pid": os.getpid()}


def grid(backbones: list[str], methods: list[str]) -> dict[str, list[str]]:
    """Backbone -> the methods that run on it: every LM method on every backbone, bdi on ``ntk`` alone."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f"unknown methods {unknown}; choose from {sorted(METHODS)}")
    if NTK_GROUP in backbones:
        raise UserError(f"{NTK_GROUP!r} is not a backbone: the bdi method brings its own NTK proxy")
    lm_methods = [m for m in methods if m != "bdi"]
    pairs = {backbone: lm_methods for backbone in backbones} if lm_methods else {}
    if "bdi" in methods:
        pairs[NTK_GROUP] = ["bdi"]
    return pairs


def run_suite(tasks: list[str], backbones: list[str], methods: list[str], seeds: list[int], steps: int,
              designs: int, data_dir: str | None, progress: bool = True,
              kernel_rows: int = 5000) -> tuple[pd.DataFrame, dict]:
    """All cells on the connected Ray; returns the per-cell rows and the fit timings per group."""
    import ray
    from tqdm.auto import tqdm

    plan = grid(backbones, methods)
    fit_remote = ray.remote(num_cpus=1, num_returns=2)(fit_group)
    cell_remote = ray.remote(num_cpus=1)(run_cell)
    groups = {(t, b): fit_remote.remote(t, b, data_dir, kernel_rows) for t in tasks for b in plan}
    cells = [cell_remote.remote(fitted, t, b, m, s, steps, designs)
             for (t, b), (fitted, _) in groups.items() for m in plan[b] for s in seeds]
    rows = []
    with tqdm(total=len(cells), desc="suite cells", disable=not progress) as bar:
        pending = list(cells)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows.append(ray.get(done[0]))
            bar.update(1)
    fit_seconds = {f"{t}/{b}": ray.get(timings) for (t, b), (_, timings) in groups.items()}
    frame = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(methods)}
    frame = frame.sort_values(["task", "backbone", "method", "seed"],
                              key=lambda c: c.map(order) if c.name == "method" else c).reset_index(drop=True)
    return frame, fit_seconds


def markdown(frame: pd.DataFrame) -> str:
    """One row per (task, backbone, method): mean +- std of the normalised percentiles over seeds."""
    def fmt(values: pd.Series) -> str:
        values = values.dropna()
        if values.empty:
            return "n/a"
        return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"

    lines = ["| task | backbone | method | 100th pct | 50th pct | scored / designs | unique | s / run | oracle |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (task, backbone, method), group in frame.groupby(["task", "backbone", "method"], sort=False):
        lines.append(f"| {task} | {backbone} | {method} | {fmt(group.p100)} | {fmt(group.p50)} | "
                     f"{group.scored.mean():.0f} / {group.designs.iloc[0]} | {group.unique_designs.mean():.0f} | "
                     f"{group.seconds.mean():.1f} | {group.oracle_kind.iloc[0]} |")
    return "\n".join(lines)


def plot(frame: pd.DataFrame, path: Path) -> Path:
    """Bar chart of the mean normalised 100th percentile (error bar: std over seeds), one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(frame.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        stats = frame[frame.task == task].groupby(["backbone", "method"], sort=False).p100.agg(["mean", "std"])
        labels = [f"{b}\n{m}" for b, m in stats.index]
        ax.bar(range(len(stats)), stats["mean"].fillna(0), yerr=stats["std"].fillna(0), capsize=3)
        ax.set_xticks(range(len(stats)), labels, rotation=90, fontsize="x-small")
        ax.set(title=task, ylabel="normalised 100th percentile")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def worker_table(frame: pd.DataFrame, wall_seconds: float) -> str:
    """How the suite's wall time divided over the Ray worker processes."""
    busy = frame.groupby("worker_pid").seconds.agg(["count", "sum"])
    lines = [f"suite wall time {wall_seconds:.1f} s; cell time {frame.seconds.sum():.1f} s over "
             f"{len(busy)} worker processes"]
    for pid, row in busy.iterrows():
        lines.append(f"  worker {pid}: {int(row['count'])} cells, {row['sum']:.1f} s busy "
                     f"({100 * row['sum'] / wall_seconds:.0f} % of the wall time)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named grid (flags given override it)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks")
    parser.add_argument("--backbones")
    parser.add_argument("--methods", help=f"comma list of {','.join(METHODS)}")
    parser.add_argument("--seeds")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--designs", type=int)
    parser.add_argument("--kernel-rows", type=int, help="offline rows in the bdi method's NTK (default 5000)")
    parser.add_argument("--address", help="Ray cluster (default $RAY_ADDRESS, else embedded local Ray)")
    parser.add_argument("--out", default="runs/bench", help="directory for suite.csv, suite.md, suite.png")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    values = dict(PRESETS["dna"] if args.preset is None else PRESETS[args.preset])
    values.update({k: v for k, v in vars(args).items() if k in values and v is not None})
    from bib_ray.distributed.runtime import connect

    where = connect(args.address)
    started = time.perf_counter()
    frame, fits = run_suite(values["tasks"].split(","), values["backbones"].split(","),
                            values["methods"].split(","), parse_seeds(str(values["seeds"])), int(values["steps"]),
                            int(values["designs"]), args.data_dir, progress=not args.quiet,
                            kernel_rows=int(values["kernel_rows"]))
    wall = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / "suite.csv", index=False)
    table = markdown(frame)
    workers = worker_table(frame, wall)
    command = "python -m bib_ray.bench.suite " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "suite.md").write_text(f"{table}\n\n{workers}\n\n{values['steps']} steps, {values['designs']} designs, "
                                  f"on {where}; reproduce: `{command}`\n")
    plot(frame, out / "suite.png")
    print(f"\n{table}\n\n{workers}")
    for group, timings in fits.items():
        print(f"  fit {group}: embed {timings['embed_offline_s']:.1f} s, solve {timings['solve_proxy_s']:.1f} s")
    print(f"written: {out / 'suite.csv'}, {out / 'suite.md'}, {out / 'suite.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as error:
        print(f"bib-ray bench: error: {error}", file=sys.stderr)
        sys.exit(2)
