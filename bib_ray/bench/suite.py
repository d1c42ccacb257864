"""Benchmark suite: method x task x backbone x seed grids on Ray, written as CSV, markdown and a plot.

    bib-ray bench --data-dir ../shared/data --tasks tfbind8,tfbind8-r --backbones tiny --seeds 0-4 \
        --out runs/bench                      (or: python -m bib_ray.bench.suite ...)
    bib-ray bench --preset smoke --data-dir ../shared/data --out /tmp/smoke   # CI
    bib-ray bench --preset dna --data-dir ../shared/data --doc docs/results.md   # the results tables

Each (task, backbone) embeds its offline set once in a Ray task; the fitted proxy goes to the
object store and every (method, seed) cell runs as its own Ray task (1 CPU) on it, through the
same ``bib_ray.run.engine.run_design`` as ``bib-ray design`` does for one seed. Methods are the design
vocabulary of ``bib_ray.core.methods.Method``: the gradient methods, ``evolution`` and ``bdi``
(fixed-gamma bidirectional learning on the NTK proxy, which needs no LM: it runs once per task,
under backbone ``ntk``, on at most ``--kernel-rows`` offline rows). Backbone ``ntk`` may also be
named in ``--backbones``: every method asked for then runs on the NTK proxy too (``bib`` there is
Adaptive-gamma on BDI's kernel, the ``ntk`` preset).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bib_ray.bench import exit_with, module_main
from bib_ray.core.methods import METHOD_NAMES as METHODS
from bib_ray.core.methods import (
    NTK_BACKBONE as NTK_GROUP,  # backbone column of bdi rows: NTK proxy, one-hot inputs
)
from bib_ray.errors import UserError
from bib_ray.specs import parse_seeds

EHRLICH_SETTINGS = "ehrlich,ehrlich:length=64,motifs=4"  # (L 32, 2 motifs) and (L 64, 4 motifs), 20 states
ALL_METHODS = ",".join(METHODS)
LM_METHODS = ",".join(m for m in METHODS if m != "bdi")  # bdi needs no LM: the tiny presets already run it
PRESET_DEFAULTS = dict(seeds="0-4", steps=None, designs=128,  # steps None: the reference T of each task
                       kernel_rows=5000, observed_letters_only=False, batch=None)
PRESETS = {  # each names its tasks, backbones and methods; PRESET_DEFAULTS fill in the rest
    # the measurement behind the default backbone (docs/backbones.md): bib on every backbone, every task
    "default-choice": dict(tasks=f"tfbind8,tfbind8-r,tfbind10-r,gb1,pab1,e4b,avgfp,{EHRLICH_SETTINGS}",
                           backbones="tiny,onehot,ntk", methods="bib"),
    "default-choice-unirep": dict(tasks="gb1,pab1,e4b,ehrlich", backbones="unirep-256", methods="bib"),
    "smoke": dict(tasks="tfbind8,pab1", backbones="tiny", methods=ALL_METHODS, seeds="0", steps=5, designs=8,
                  kernel_rows=300),
    "dna": dict(tasks="tfbind8,tfbind8-r,tfbind10-r", backbones="tiny,onehot", methods=ALL_METHODS),
    "protein": dict(tasks=f"gb1,pab1,e4b,avgfp,{EHRLICH_SETTINGS}", backbones="tiny", methods=ALL_METHODS),
    "protein-unirep": dict(tasks="gb1,pab1,e4b,ehrlich", backbones="unirep-256", methods=LM_METHODS),
    "ntk": dict(tasks="tfbind8,tfbind8-r", backbones="ntk", methods="bib,bdi"),  # adaptive vs fixed gamma, NTK
    "dms-observed": dict(tasks="avgfp,e4b", backbones="tiny", methods=ALL_METHODS, observed_letters_only=True),
    "ehrlich64-unirep": dict(tasks="ehrlich:length=64,motifs=4", backbones="unirep-256", methods=LM_METHODS),
    "ehrlich-antiberty": dict(tasks="ehrlich", backbones="antiberty",
                              methods="bib,forward,evolution"),  # ~4 s a step on one core: 3 methods
    "dms-observed-unirep": dict(tasks="avgfp,e4b,pab1", backbones="unirep-256", methods=LM_METHODS,
                                observed_letters_only=True),
}


def split_task_list(text: str) -> list[str]:
    """'gb1,ehrlich:length=64,motifs=4' -> ['gb1', 'ehrlich:length=64,motifs=4']: a piece with '='
    and no ':' continues the previous task's options."""
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",") if p.strip()):
        if specs and "=" in piece and ":" not in piece and ":" in specs[-1]:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


@dataclass(frozen=True)
class SuiteGrid:
    """A suite's grid: every (task, backbone, method, seed) cell that ``grid`` pairs up, and the settings
    every cell shares (steps None: the reference T of each task)."""

    tasks: list[str]
    backbones: list[str]
    methods: list[str]
    seeds: list[int]
    steps: int | None = None
    designs: int = 128
    data_dir: str | None = None
    kernel_rows: int = 5000
    observed_letters_only: bool = False
    batch: int | None = None

    def config(self, task_spec: str, backbone: str, method: str | None = None, seed: int = 0):
        """The ``DesignConfig`` of a cell (``method`` None: what fitting the group needs)."""
        from bib_ray.run.config import build_config

        values = dict(task=task_spec, backbone=backbone, steps=self.steps, designs=self.designs, seeds=[seed],
                      ntk_rows=self.kernel_rows, observed_letters_only=self.observed_letters_only, batch=self.batch,
                      device="cpu")
        return build_config(values if method is None else {**values, "method": method})


def fit_group(grid: SuiteGrid, task_spec: str, backbone: str):
    """Load the task and fit its proxy once (a Ray task with two returns: the fit and its timings)."""
    from bib_ray.run.executor import LocalExecutor
    from bib_ray.tasks import load_task

    started = time.perf_counter()
    task = load_task(task_spec, grid.data_dir)
    fitted = LocalExecutor().fit(task, grid.config(task_spec, backbone).proxy_settings())
    return fitted, {**fitted.timings, "fit_s": time.perf_counter() - started, "worker_pid": os.getpid()}


def run_cell(fitted, grid: SuiteGrid, task_spec: str, backbone: str, method: str, seed: int) -> dict:
    """One (method, seed) on a fitted proxy (``run_design``, as ``bib-ray design``) -> a row of normalised
    oracle percentiles and timings."""
    from bib_ray.run.engine import run_design
    from bib_ray.run.executor import LocalExecutor

    started = time.perf_counter()
    task = fitted.task
    run = run_design(grid.config(task_spec, backbone, method, seed), task, LocalExecutor(), fitted=fitted)
    result, batch = run.seeds[0], (run.batch.summary["oracle"] if run.batch is not None else None) or {}
    final, summary = result.trajectory.final_codes, result.oracle_summary
    return {"task": task_spec, "backbone": backbone, "method": method, "seed": seed,
            "p100": summary["p100"], "p50": summary["p50"], "p100_scored": summary["p100_scored"],
            "p50_scored": summary["p50_scored"], "offline_best": summary["offline_best"], "scored": summary["ok"],
            "unknown": summary["unknown"], "infeasible": summary["infeasible"], "designs": len(final),
            "unique_designs": int(len(np.unique(final, axis=0))), "oracle_kind": task.oracle_kind.value,
            "batch_p100": batch.get("p100", np.nan), "batch_p50": batch.get("p50", np.nan),
            "seconds": time.perf_counter() - started, "worker_pid": os.getpid()}


ROW_COLUMNS = ["task", "backbone", "method", "seed", "p100", "p50", "p100_scored", "p50_scored", "offline_best",
               "scored", "unknown", "infeasible", "designs", "unique_designs", "oracle_kind", "batch_p100",
               "batch_p50", "seconds", "worker_pid"]  # run_cell's row, the CSV's columns
ADDED_COLUMNS = ("offline_best", "batch_p100", "batch_p50")  # absent from older suites' CSVs, which --resume reads


def grid(backbones: list[str], methods: list[str]) -> dict[str, list[str]]:
    """Backbone -> the methods that run on it: every method but bdi on every backbone (``ntk`` included,
    if named), bdi on ``ntk`` alone (added when bdi is asked for)."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    others = [m for m in methods if m != "bdi"]
    pairs = {backbone: list(others) for backbone in backbones if others}
    if "bdi" in methods:
        pairs[NTK_GROUP] = [*pairs.get(NTK_GROUP, []), "bdi"]
    return pairs


def grid_cells(tasks: list[str], plan: dict[str, list[str]], seeds: list[int]) -> list[tuple[str, str, str, int]]:
    """Every (task, backbone, method, seed) of a grid, in the order the suite submits them."""
    return [(t, b, m, s) for t in tasks for b, methods in plan.items() for m in methods for s in seeds]


def run_suite(suite: SuiteGrid, progress: bool = True, skip: frozenset[tuple] = frozenset(),
              on_row: Callable[[dict], None] | None = None) -> tuple[pd.DataFrame, dict]:
    """All cells of ``suite`` on the connected Ray but those whose (task, backbone, method, seed) is in
    ``skip``; ``on_row`` sees each row as it finishes. Returns the new rows and the fit timings per group
    (a group all of whose cells are skipped is not fitted)."""
    import ray
    from tqdm.auto import tqdm

    todo: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for t, b, m, s in grid_cells(suite.tasks, grid(suite.backbones, suite.methods), suite.seeds):
        if (t, b, m, s) not in skip:
            todo.setdefault((t, b), []).append((m, s))
    fit_remote = ray.remote(num_cpus=1, num_returns=2)(fit_group)
    cell_remote = ray.remote(num_cpus=1)(run_cell)
    groups = {(t, b): fit_remote.remote(suite, t, b) for t, b in todo}
    cells = [cell_remote.remote(fitted, suite, t, b, m, s) for (t, b), (fitted, _) in groups.items()
             for m, s in todo[(t, b)]]
    rows = []
    with tqdm(total=len(cells), desc="suite cells", disable=not progress) as bar:
        pending = list(cells)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            rows.append(ray.get(done[0]))
            if on_row is not None:
                on_row(rows[-1])
            bar.update(1)
    fit_seconds = {f"{t}/{b}": ray.get(timings) for (t, b), (_, timings) in groups.items()}
    return pd.DataFrame(rows, columns=ROW_COLUMNS), fit_seconds


def sort_rows(frame: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Rows by task, backbone, method (in the order asked for) and seed."""
    order = {m: i for i, m in enumerate(methods)}
    return frame.sort_values(["task", "backbone", "method", "seed"],
                             key=lambda c: c.map(order) if c.name == "method" else c).reset_index(drop=True)


def finished_cells(path: Path) -> pd.DataFrame:
    """The rows an earlier, possibly cut-off, run of the suite left in ``path`` (none if absent)."""
    if not path.exists():
        return pd.DataFrame(columns=ROW_COLUMNS)
    frame = pd.read_csv(path)
    for column in ADDED_COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan
    missing = sorted(set(ROW_COLUMNS) - set(frame.columns))
    if missing:
        raise UserError(f"{path}: not a suite CSV (no columns {missing}); remove it or pick another --out")
    return frame[ROW_COLUMNS]


def markdown(frame: pd.DataFrame) -> str:
    """One row per (task, backbone, method): mean +- std over seeds of the normalised percentiles, over
    all designs (unscorable ones at the task's minimum) and, in brackets, over the scored designs."""
    def fmt(values: pd.Series) -> str:
        values = values.dropna()
        if values.empty:
            return "n/a"
        return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"

    batched = frame.batch_p100.notna().any()
    batch_head = " batch 100th / 50th |" if batched else ""
    lines = ["| task | backbone | method | 100th pct (scored only) | 50th pct (scored only) |" + batch_head +
             " scored / designs | unique | s / run | oracle |",
             "|---|---|---|---|---|" + ("---|" if batched else "") + "---|---|---|---|"]
    for (task, backbone, method), group in frame.groupby(["task", "backbone", "method"], sort=False):
        batch = f" {fmt(group.batch_p100)} / {fmt(group.batch_p50)} |" if batched else ""
        lines.append(f"| {task} | {backbone} | {method} | {fmt(group.p100)} ({fmt(group.p100_scored)}) | "
                     f"{fmt(group.p50)} ({fmt(group.p50_scored)}) |{batch} "
                     f"{group.scored.mean():.0f} / {group.designs.iloc[0]} | {group.unique_designs.mean():.0f} | "
                     f"{group.seconds.mean():.1f} | {group.oracle_kind.iloc[0]} |")
    return "\n".join(lines)


def plot(frame: pd.DataFrame, path: Path) -> Path:
    """One panel per task: each (backbone, method)'s mean normalised 100th and 50th percentiles over all
    designs (error bars: std over seeds), and the best offline score as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(frame.task))
    columns = min(len(tasks), 3)
    rows = -(-len(tasks) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.2 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        rows_of_task = frame[frame.task == task]
        stats = rows_of_task.groupby(["backbone", "method"], sort=False)[["p100", "p50"]].agg(["mean", "std"])
        positions = np.arange(len(stats))
        for offset, (column, colour) in zip((-0.2, 0.2), (("p100", "tab:blue"), ("p50", "tab:orange"))):
            ax.bar(positions + offset, stats[(column, "mean")].fillna(0), width=0.4, color=colour,
                   yerr=stats[(column, "std")].fillna(0), capsize=2, label=f"{column[1:]}th percentile")
        best = rows_of_task.offline_best.dropna()
        if len(best):
            ax.axhline(best.iloc[0], color="black", linestyle="--", linewidth=1, label="best offline")
        ax.set_xticks(positions, [f"{b}\n{m}" for b, m in stats.index], rotation=90, fontsize="x-small")
        ax.set(title=task, ylabel="normalised score (all designs)")
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize="x-small", loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def worker_table(frame: pd.DataFrame, fits: dict[str, dict], wall_seconds: float) -> str:
    """How the suite's wall time divided over the Ray worker processes (proxy fits and cells)."""
    fit_rows = pd.DataFrame([{"worker_pid": t["worker_pid"], "fit_s": t["fit_s"]} for t in fits.values()],
                            columns=["worker_pid", "fit_s"])
    busy = frame.groupby("worker_pid").seconds.agg(["count", "sum"]).join(
        fit_rows.groupby("worker_pid").fit_s.agg(fits="count", fit_s="sum"), how="outer").fillna(0)
    lines = [f"suite wall time {wall_seconds:.1f} s; {fit_rows.fit_s.sum():.1f} s of proxy fits and "
             f"{frame.seconds.sum():.1f} s of runs over {len(busy)} worker processes"]
    for pid, row in busy.iterrows():
        total = row["sum"] + row["fit_s"]
        lines.append(f"  worker {int(pid)}: {int(row['fits'])} fits ({row['fit_s']:.1f} s) + {int(row['count'])} "
                     f"runs ({row['sum']:.1f} s) = {100 * total / wall_seconds:.0f} % of the wall time")
    return "\n".join(lines)


def doc_block(path: Path, name: str) -> tuple[str, str]:
    """The text of ``path`` before ``<!-- suite:NAME -->`` and after ``<!-- /suite:NAME -->`` (exactly one each)."""
    begin, end = f"<!-- suite:{name} -->", f"<!-- /suite:{name} -->"
    try:
        content = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if content.count(begin) != 1 or content.count(end) != 1 or content.index(begin) > content.index(end):
        raise UserError(f"{path}: needs exactly one {begin} ... {end} block to update")
    head, rest = content.split(begin)
    return head, rest.split(end, 1)[1]


def update_doc(path: Path, name: str, text: str) -> None:
    """Replace what lies between ``<!-- suite:NAME -->`` and ``<!-- /suite:NAME -->`` in ``path``."""
    head, tail = doc_block(path, name)
    path.write_text(f"{head}<!-- suite:{name} -->\n{text.strip()}\n<!-- /suite:{name} -->{tail}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's flags (``bib-ray bench`` and ``python -m bib_ray.bench.suite``)."""
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a named grid (flags given override it)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--tasks")
    parser.add_argument("--backbones")
    parser.add_argument("--methods", help=f"comma list of {','.join(METHODS)}")
    parser.add_argument("--seeds")
    parser.add_argument("--steps", type=int, help="optimisation steps (default: the reference T of each task, "
                        "100 on DNA and 25 on proteins)")
    parser.add_argument("--designs", type=int)
    parser.add_argument("--kernel-rows", type=int, help="offline rows in the bdi method's NTK (default 5000)")
    parser.add_argument("--observed-letters-only", action="store_true", default=None,
                        help="designs use only letters the offline data shows at each position")
    parser.add_argument("--batch", type=int, help="each cell also chooses a batch of N (its 100th / 50th percentiles "
                        "go beside the per-trajectory ones)")
    parser.add_argument("--address", help="Ray cluster (default $RAY_ADDRESS, else embedded local Ray)")
    parser.add_argument("--out", default="runs/bench", help="directory for suite.csv, suite.md, suite.png")
    parser.add_argument("--doc", type=Path, help="also write the table into this markdown file's "
                        "<!-- suite:PRESET --> block (PRESET: the preset's name, else 'custom'), "
                        "e.g. docs/results.md")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in OUT/suite.csv (rows are "
                        "written there as they finish) and run only the missing cells; give the same grid")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, command: str) -> int:
    """Run the grid ``args`` names; ``command`` is the command line quoted in the report as the way to reproduce it."""
    values = {**PRESET_DEFAULTS, **PRESETS[args.preset or "dna"]}
    values.update({k: v for k, v in vars(args).items() if k in values and v is not None})
    tasks, backbones, methods = split_task_list(values["tasks"]), values["backbones"].split(","), \
        values["methods"].split(",")
    seeds = parse_seeds(str(values["seeds"]))
    plan = grid(backbones, methods)  # bad names and a doc without the block fail before Ray starts
    if args.doc is not None:
        doc_block(args.doc, args.preset or "custom")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "suite.csv"
    earlier = finished_cells(csv_path) if args.resume else pd.DataFrame(columns=ROW_COLUMNS)
    if not args.resume and csv_path.exists():
        print(f"replacing {csv_path} (--resume would keep its rows and run only the missing cells)", file=sys.stderr)
    planned = set(grid_cells(tasks, plan, seeds))
    kept = set(earlier[["task", "backbone", "method", "seed"]].itertuples(index=False, name=None))
    if kept - planned:
        raise UserError(f"{csv_path} holds cells outside this grid (e.g. {sorted(kept - planned)[0]}); "
                        "resume with the same flags, or pick another --out")
    earlier.to_csv(csv_path, index=False)
    from bib_ray.distributed.runtime import connect

    where = connect(args.address)
    started = time.perf_counter()
    suite = SuiteGrid(tasks, backbones, methods, seeds, values["steps"], int(values["designs"]), args.data_dir,
                      int(values["kernel_rows"]), bool(values["observed_letters_only"]), values["batch"])
    new_rows, fits = run_suite(suite, progress=not args.quiet, skip=frozenset(kept),
                               on_row=lambda row: pd.DataFrame([row], columns=ROW_COLUMNS).to_csv(
                                   csv_path, mode="a", header=False, index=False))
    wall = time.perf_counter() - started
    frame = sort_rows(pd.concat([earlier, new_rows]) if len(earlier) else new_rows, methods)
    frame.to_csv(csv_path, index=False)
    table = markdown(frame)
    workers = worker_table(new_rows, fits, wall)
    if len(earlier):
        workers += f"\n  ({len(earlier)} earlier rows kept from {csv_path}; the times above are this run's)"
    restricted = ", observed letters only" if values["observed_letters_only"] else ""
    steps = f"{values['steps']} steps" if values["steps"] else "the reference's steps (100 on DNA, 25 on proteins)"
    report = (f"{table}\n\n```\n{workers}\n```\n\n{steps}, {values['designs']} designs"
              f"{restricted}, on {where}; reproduce: `{command}`\n")
    (out / "suite.md").write_text(report)
    plot(frame, out / "suite.png")
    if args.doc is not None:
        name = args.preset or "custom"
        figure = Path("figures") / f"suite-{name}.png"  # beside the doc, linked from its block
        (args.doc.parent / figure).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "suite.png", args.doc.parent / figure)
        update_doc(args.doc, name, f"![{name}: normalised 100th and 50th percentiles by method]({figure})\n\n{report}")
    print(f"\n{table}\n\n{workers}")
    for group, timings in fits.items():
        print(f"  fit {group}: embed {timings['embed_offline_s']:.1f} s, solve {timings['solve_proxy_s']:.1f} s")
    print(f"written: {out / 'suite.csv'}, {out / 'suite.md'}, {out / 'suite.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bib_ray.bench.suite ARGS``: the same as ``bib-ray bench ARGS``."""
    return module_main("bib_ray.bench.suite", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    exit_with(main, "bib-ray bench")
