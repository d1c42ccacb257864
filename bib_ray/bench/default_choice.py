"""The rule that picks the default backbone, applied to benchmark-suite results.

    bib-ray bench --preset default-choice --data-dir ../shared/data --out runs/default-choice/main
    bib-ray bench --preset default-choice-unirep --data-dir ../shared/data --out runs/default-choice/unirep
    python -m bib_ray.bench.default_choice runs/default-choice/main/suite.csv runs/default-choice/unirep/suite.csv \
        --data-dir ../shared/data

Rule: per alphabet (DNA/RNA, protein), among the backbones whose runs (one seed's ``bib`` run) take at
most ``--max-seconds`` on every task, the default is the one with the highest mean over tasks of
(100th + 50th percentile), each the mean over seeds. Backbones are compared on the tasks all of them
ran; a backbone that ran on fewer tasks (``unirep-256``: proteins only) is compared with the others
on its own tasks in a second line.
"""

from __future__ import annotations

import argparse

import pandas as pd

from bib_ray.alphabets import is_nucleotide
from bib_ray.bench import exit_with, module_main
from bib_ray.errors import UserError


def task_alphabets(tasks: list[str], data_dir: str | None) -> dict[str, str]:
    """Task spec -> ``dna`` or ``protein``, from each task's letters."""
    from bib_ray.tasks import load_task

    return {task: "dna" if is_nucleotide(load_task(task, data_dir).alphabet) else "protein" for task in tasks}


def scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (task, backbone): mean 100th and 50th percentiles and seconds over seeds, and the seed count."""
    return (frame.groupby(["task", "backbone"])
            .agg(p100=("p100", "mean"), p50=("p50", "mean"), seconds=("seconds", "mean"), seeds=("seed", "nunique"))
            .reset_index())


def compare(per_task: pd.DataFrame, backbones: list[str], max_seconds: float) -> pd.DataFrame:
    """Mean over the tasks every one of ``backbones`` ran of p100, p50 and their sum, the slowest task's
    seconds, and whether the backbone is within the cost limit; sorted best first."""
    mine = per_task[per_task.backbone.isin(backbones)]
    common = set.intersection(*(set(mine[mine.backbone == b].task) for b in backbones))
    mine = mine[mine.task.isin(common)]
    table = (mine.groupby("backbone")
             .agg(p100=("p100", "mean"), p50=("p50", "mean"), slowest_s=("seconds", "max"), tasks=("task", "nunique"))
             .reset_index())
    table["sum"] = table.p100 + table.p50
    table["within_cost"] = table.slowest_s <= max_seconds
    return table.sort_values(["within_cost", "sum"], ascending=False).reset_index(drop=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", nargs="+", help="suite.csv files of bib-ray bench (method bib)")
    parser.add_argument("--data-dir", default=None, help="data directory (default $BIB_RAY_DATA)")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="cost limit: a backbone's slowest task, seconds per seed's run (default 300)")


def run(args: argparse.Namespace, command: str) -> int:
    frames = [pd.read_csv(path) for path in args.csv]
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame.method == "bib"]
    if frame.empty:
        raise UserError("no method-bib rows in the given files")
    per_task = scores(frame)
    per_task["alphabet"] = per_task.task.map(task_alphabets(sorted(per_task.task.unique()), args.data_dir))
    print(f"\n{command}\n")
    print("| alphabet | compared on | backbone | tasks | mean 100th | mean 50th | sum | slowest task s/run | "
          "within cost | default |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for alphabet, rows in per_task.groupby("alphabet"):
        counts = rows.groupby("backbone").task.nunique()
        widest = sorted(counts[counts == counts.max()].index)
        groups = [("every task", widest)] + [(f"{backbone}'s tasks", widest + [backbone])
                                             for backbone in sorted(counts[counts < counts.max()].index)]
        for label, backbones in groups:
            table = compare(rows, backbones, args.max_seconds)
            for index, row in table.iterrows():
                pick = "**yes**" if index == 0 and row.within_cost else ""
                print(f"| {alphabet} | {label} | `{row.backbone}` | {row.tasks} | {row.p100:.3f} | {row.p50:.3f} | "
                      f"{row['sum']:.3f} | {row.slowest_s:.0f} | {'yes' if row.within_cost else 'no'} | {pick} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("bib_ray.bench.default_choice", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    exit_with(main, "default_choice")
