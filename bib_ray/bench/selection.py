"""Selection benchmark: does a sweep's metric choose the configuration the oracle would choose?

    python -m bib_ray.bench.selection --data-dir ../shared/data --out runs/selection
    python -m bib_ray.bench.selection --data-dir ../shared/data --quick         # two tasks, one seed

For each task, as a sweep does: a fixed random 20 % of the offline rows is held out from every
run (``bib_ray.sweep.selection.split_offline``); each backbone's proxy is fitted on the rest; a fixed
grid of configurations (backbone x method x (lr, target)) runs once per seed; and every metric
(``bib_ray.sweep.selection.METRICS``) scores every run, so all metrics judge identical designs. The
runs see a copy of the task without its oracle. Only afterwards does the oracle score the
designs, and it is used for nothing but judging the metrics: per task and metric,

- rho100 / rho50: Spearman's rho between the metric and the oracle's normalised 100th / 50th
  percentile over the grid;
- regret: the grid's best 100th percentile minus that of the configuration the metric picks;
- percentile: the picked configuration's rank in the grid by the 100th percentile (1 = best,
  0 = worst; ties count half), ``>= median`` / ``>= mean``: whether it is at or above the grid's median /
  mean, and ``vs mean``: its 100th percentile minus the grid's mean;

each for one seed's grid (a metric's ties: the mean over the tied configurations), then averaged
over seeds. Writes ``selection_runs.csv`` (one row per run), ``selection_summary.csv``,
``selection.md`` and every run's final designs (``selection_designs.npz``, key task|config|seed)
under ``--out``; ``--doc`` also writes the tables into a markdown file's
``<!-- suite:selection -->`` block.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.bench import exit_with, module_main
from bib_ray.alphabets import is_nucleotide
from bib_ray.run.config import REFERENCE_STEPS, reference_steps
from bib_ray.errors import UserError
from bib_ray.sweep.selection import (
    METRIC_NAMES,
    METRICS,
    Candidate,
    RowEmbeddings,
    SelectionSettings,
    draws_from_json,
    draws_to_json,
    fit_metrics,
    rank_correlation,
    split_offline,
    top_rows,
)
from bib_ray.specs import parse_seeds
from bib_ray.sweep.choice import choose_trial, settings_changed
from bib_ray.tasks import Task
from bib_ray.tasks.evaluation import nearest_hamming

TASKS = "tfbind8,tfbind8-r,tfbind10-r,gb1,ehrlich,pab1"
QUICK_TASKS = "tfbind8-r,ehrlich"
BACKBONES = ("tiny", "onehot")
METHODS = ("bib", "bidirectional", "forward")
STEP_TARGETS = ((0.1, 10.0), (0.03, 2.0))  # (lr, target): the reference values and a cautious pair
DNA_STEPS = 50  # the reference's T is 100 on DNA (halved here to afford the grid) and 25 on proteins


def grid(backbones=BACKBONES, methods=METHODS, step_targets=STEP_TARGETS) -> list[dict]:
    """The fixed grid of configurations: one dict of DesignConfig fields each."""
    return [dict(backbone=b, method=m, lr=lr, target=t) for b in backbones for m in methods
            for lr, t in step_targets]


def broad_grid() -> list[dict]:
    """A second grid, not the one the metrics were chosen on: backbone x method x lr x the edit limit K
    (the task's default, or 1) at the reference target (16 configurations)."""
    return [dict(backbone=b, method=m, lr=lr, target=10.0, **({} if k is None else {"max_mutations": k}))
            for b in BACKBONES for m in ("bib", "bidirectional") for lr in (0.1, 0.3) for k in (None, 1)]


# The held-aside grids of issue 23, each fixed and committed before any metric was judged on it: six
# settings of method, lr, target, K and the run's size (``designs_x`` / ``steps_x``: multiples of the
# benchmark's designs and steps), none of them in an earlier grid, each crossed with the backbones ``tiny``,
# ``onehot`` and ``ntk`` (18 configurations). docs/selection.md says which seeds each was read on.
HELD_ASIDE_SETTINGS = {
    "mixed": [  # the first check; also varies K 2, 2x designs, 2x steps
        dict(method="bib", lr=0.1, target=10.0),
        dict(method="bidirectional", lr=0.3, target=10.0),
        dict(method="bib", lr=0.03, target=2.0),
        dict(method="bib", lr=0.1, target=10.0, max_mutations=2),
        dict(method="bib", lr=0.1, target=10.0, designs_x=2),
        dict(method="forward", lr=0.1, target=10.0, steps_x=2),
    ],
    "mixed2": [  # the second check
        dict(method="bib", lr=0.3, target=5.0),
        dict(method="bidirectional", lr=0.1, target=10.0, max_mutations=1),
        dict(method="forward", lr=0.03, target=2.0),
        dict(method="bib", lr=0.05, target=10.0, steps_x=2),
        dict(method="bidirectional", lr=0.1, target=2.0, designs_x=2),
        dict(method="bib", lr=0.2, target=20.0, max_mutations=3),
    ],
    "mixed3": [  # the third check; K 3 and 4 go past pab1's mutation radius
        dict(method="bib", lr=0.15, target=10.0, max_mutations=3),
        dict(method="bidirectional", lr=0.05, target=5.0),
        dict(method="forward", lr=0.2, target=10.0, max_mutations=2),
        dict(method="bib", lr=0.1, target=2.0, designs_x=2),
        dict(method="bidirectional", lr=0.2, target=10.0, max_mutations=4, steps_x=2),
        dict(method="bib", lr=0.03, target=20.0),
    ],
    "mixed4": [  # the fourth check
        dict(method="bib", lr=0.2, target=5.0, max_mutations=2),
        dict(method="bidirectional", lr=0.03, target=10.0),
        dict(method="forward", lr=0.1, target=5.0, designs_x=2),
        dict(method="bib", lr=0.07, target=10.0, max_mutations=3, steps_x=2),
        dict(method="bidirectional", lr=0.15, target=20.0),
        dict(method="bib", lr=0.5, target=10.0, max_mutations=1),
    ],
    "mixed5": [  # the fifth check; K 4 goes past pab1's mutation radius
        dict(method="bidirectional", lr=0.07, target=5.0, max_mutations=2),
        dict(method="bib", lr=0.25, target=10.0, designs_x=2),
        dict(method="forward", lr=0.05, target=20.0),
        dict(method="bib", lr=0.05, target=5.0, max_mutations=4),
        dict(method="bidirectional", lr=0.3, target=2.0, steps_x=2),
        dict(method="forward", lr=0.3, target=10.0, max_mutations=1),
    ],
}


def with_every_backbone(settings: list[dict]) -> list[dict]:
    """Each setting once per backbone the mixed grids cross it with (``tiny``, ``onehot``, ``ntk``)."""
    return [dict(backbone=b, **setting) for b in ("tiny", "onehot", "ntk") for setting in settings]


GRIDS = {"reference": grid, "broad": broad_grid,
         **{name: functools.partial(with_every_backbone, settings) for name, settings in HELD_ASIDE_SETTINGS.items()}}


def config_label(config: dict) -> str:
    label = f"{config['backbone']}/{config['method']}/lr={config['lr']:g}/target={config['target']:g}"
    label += f"/K={config['max_mutations']}" if "max_mutations" in config else ""
    return label + "".join(f"/{name}={config[name]}" for name in ("designs", "steps") if name in config)


def sized(config: dict, designs: int, steps: int) -> dict:
    """``config`` with its run-size multiples (``designs_x``, ``steps_x``) made absolute designs and steps."""
    config = dict(config)
    if "designs_x" in config:
        config["designs"] = designs * config.pop("designs_x")
    if "steps_x" in config:
        config["steps"] = steps * config.pop("steps_x")
    return config


SWEPT = ("backbone", "method", "lr", "target", "max_mutations", "designs", "steps")


def with_tie_rule(runs: pd.DataFrame, metric: str, tie_break: str, tie_margin: float = 1.0) -> pd.Series:
    """1.0 for the run a sweep with ``tie_break`` takes in each task and seed (``bib_ray.sweep.choice``: the
    metric's best unless others cannot be told apart from it by their paired draws; then by ``tie_break``,
    the defaults being ``DesignConfig``'s), else 0.0: a column ``judge`` reads as the metric
    "METRIC+TIE_BREAK" (its rho columns mean nothing)."""
    from bib_ray.run.config import DesignConfig

    defaults = DesignConfig().model_dump()
    picked = pd.Series(0.0, index=runs.index)
    for _, group in runs.groupby(["task", "seed"]):
        draws = {label: draws_from_json(text) for label, text in group[f"{metric} draws"].items()}
        names = [name for name in SWEPT if name in group.columns]
        choice = choose_trial(group, metric, draws, settings_changed(group, names, defaults),
                              group.design_distance.astype(float), tie_margin, tie_break)
        picked[choice.chosen] = 1.0
    return picked


def rank_ensemble(runs: pd.DataFrame, members: list[str]) -> pd.Series:
    """Per run, the mean over ``members`` of its rank (0 = worst, 1 = best, ties averaged) among the runs of
    its task and seed: evaluators combined by rank, so none dominates by its scale."""
    ranks = [runs.groupby(["task", "seed"])[name].rank(pct=True) for name in members]
    return pd.concat(ranks, axis=1).mean(axis=1)


def default_steps(task: Task) -> int:
    """``DNA_STEPS`` on DNA/RNA, else the reference's T (``reference_steps``)."""
    return DNA_STEPS if is_nucleotide(task.alphabet) else reference_steps(task.alphabet)


def select_runs(task: Task, configs: list[dict], seeds: list[int], metric_names: list[str],
                base: dict | None = None, holdout_fraction: float = 0.2,
                settings: SelectionSettings | None = None, progress: bool = False) -> pd.DataFrame:
    """Run every configuration for every seed on the training split of ``task`` and score each run
    with every metric. The runs and metrics get the task without its oracle. Returns one row per run:
    the configuration, ``seed``, the run's ``designs`` and ``steps``, one column per metric and ``codes``
    (the final designs, (B, L))."""
    from bib_ray.run.config import build_config
    from bib_ray.run.engine import run_design
    from bib_ray.run.executor import LocalExecutor

    settings = settings or SelectionSettings()
    offline = dataclasses.replace(task, oracle=None)  # nothing below can reach the oracle
    train, held = split_offline(offline, holdout_fraction)
    base = {"task": task.name, "device": "cpu", **(base or {})}
    base_config = build_config({**base, "seeds": [seeds[0]]})
    needs = frozenset().union(*(METRICS[name].needs_embeddings for name in metric_names))
    executor = LocalExecutor(reuse_aux=True)  # methods of one backbone and seed share the aux ensemble
    fitted, embeddings = {}, {}
    top = top_rows(train.y, settings.top_rows)
    for backbone in dict.fromkeys(config["backbone"] for config in configs):
        fit = executor.fit(train, build_config({**base, "backbone": backbone}).proxy_settings())
        fitted[backbone] = fit
        if needs:
            embeddings[backbone] = RowEmbeddings(held=fit.embedder.embed_codes(held.x),
                                                 top=fit.embedder.embed_codes(train.x[top]) if "top" in needs else None)
    metrics = fit_metrics(metric_names, train, held, embeddings, settings, base_config.aux_settings(), seeds[0])
    rows = []
    for config in configs:
        for seed in seeds:
            started = time.perf_counter()
            fit = fitted[config["backbone"]]
            run_config = build_config({**base, **config, "seeds": [seed]}).resolved_for(task.alphabet)
            result = run_design(run_config, train, executor, fitted=fit).seeds[0]
            candidate = Candidate(result.trajectory.final_codes, config["backbone"], fit.proxy, result.aux,
                                  fit.embedder.embed_codes)
            evaluated = {name: metric.evaluate(candidate) for name, metric in metrics.items()}
            row = {"task": task.name, "config": config_label(config), **config, "seed": seed,
                   "designs": run_config.designs, "steps": run_config.resolved_steps,
                   **{name: score for name, (score, _) in evaluated.items()},
                   **{f"{name} draws": draws_to_json(draws) for name, (_, draws) in evaluated.items()
                      if draws is not None},
                   "design_distance": float(nearest_hamming(candidate.designs, train.x).mean()),
                   "unique_designs": len(np.unique(candidate.designs, axis=0)),
                   "seconds": time.perf_counter() - started, "codes": candidate.designs}
            rows.append(row)
            if progress:
                print(f"  {task.name} {row['config']} seed {seed}: {row['seconds']:.1f} s", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def score_with_oracle(task: Task, runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the oracle's normalised 100th and 50th percentiles of each run's designs (for
    judging the metrics only), without the designs themselves."""
    from bib_ray.tasks.evaluation import evaluate_with_oracle

    if task.oracle is None:
        raise UserError(f"task {task.name} has no oracle: the selection benchmark needs one to judge the metrics")
    summaries = [evaluate_with_oracle(task, np.asarray(codes)).summary for codes in runs.codes]
    return runs.drop(columns="codes").assign(p100=[s["p100"] for s in summaries], p50=[s["p50"] for s in summaries])


def judge(runs: pd.DataFrame, metric_names: list[str]) -> pd.DataFrame:
    """Per task and metric, averaged over seeds: rho100, rho50, regret, percentile, >= median and
    the configuration(s) picked (see the module docstring)."""
    out = []
    for task, metric in ((t, m) for t in runs.task.unique() for m in metric_names):
        per_seed, picked = [], []
        for _, g in runs[runs.task == task].groupby("seed"):
            values, p100 = g[metric].to_numpy(float), g.p100.to_numpy(float)
            chosen = np.flatnonzero(np.isclose(values, np.nanmax(values), rtol=1e-9, atol=1e-12))
            picked += list(g.config.iloc[chosen])
            n = len(g)
            rank = [((p100 < p100[i]).sum() + 0.5 * ((p100 == p100[i]).sum() - 1)) / max(n - 1, 1) for i in chosen]
            per_seed.append({"rho100": rank_correlation(values, p100), "rho50": rank_correlation(values, g.p50),
                             "regret": p100.max() - p100[chosen].mean(), "percentile": float(np.mean(rank)),
                             ">= median": float(np.mean(p100[chosen] >= np.median(p100))),
                             ">= mean": float(p100[chosen].mean() >= p100.mean() - 1e-12),
                             "vs mean": float(p100[chosen].mean() - p100.mean()),
                             "picked p100": p100[chosen].mean(), "best p100": p100.max(),
                             "median p100": float(np.median(p100))})
        mean = pd.DataFrame(per_seed).mean()
        top = pd.Series(picked).value_counts()
        out.append({"task": task, "metric": metric, **mean.to_dict(),
                    "picked": top.index[0] + (f" (+{len(top) - 1} more)" if len(top) > 1 else "")})
    return pd.DataFrame(out)


def overall(judged: pd.DataFrame) -> pd.DataFrame:
    """Per metric: the means over tasks, and on how many tasks the pick was at or above the median."""
    grouped = judged.groupby("metric", sort=False)
    table = grouped[["rho100", "rho50", "regret", "percentile"]].mean()
    table["tasks >= median"] = grouped[">= median"].apply(lambda s: f"{(s >= 1).sum()}/{len(s)}")
    table["tasks >= mean"] = grouped[">= mean"].apply(lambda s: f"{(s >= 1).sum()}/{len(s)}")
    table["tasks >= mean (seed mean)"] = grouped["vs mean"].apply(lambda s: f"{(s >= -1e-12).sum()}/{len(s)}")
    return table.reset_index()


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (no tabulate needed)."""
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "n/a" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def seed_agreement(runs: pd.DataFrame) -> float:
    """Mean Spearman rho, over pairs of seeds, between the seeds' oracle 100th percentiles of the
    configurations of one task (NaN with one seed)."""
    table = runs.pivot_table(index="config", columns="seed", values="p100")
    pairs = [(a, b) for i, a in enumerate(table.columns) for b in table.columns[i + 1:]]
    if not pairs:
        return float("nan")
    return float(np.mean([rank_correlation(table[a].to_numpy(), table[b].to_numpy()) for a, b in pairs]))


def report(judged: pd.DataFrame, runs: pd.DataFrame, command: str, seconds: float) -> str:
    per_task = judged[["task", "metric", "rho100", "rho50", "regret", "percentile", ">= median", ">= mean", "vs mean",
                       "picked"]]
    grids = runs.groupby("task").p100.agg(["min", "median", "max"])
    grids["oracle seed-to-seed rho"] = [seed_agreement(runs[runs.task == task]) for task in grids.index]
    grids = grids.reset_index()
    task_minutes = runs.groupby("task").seconds_task.first().sum() / 60
    return (f"Mean over tasks (each task: the mean over seeds):\n\n{markdown_table(overall(judged))}\n\n"
            f"Per task:\n\n{markdown_table(per_task)}\n\n"
            f"The grids' oracle 100th percentiles (min / median / max over configurations and seeds), and "
            f"how well one seed's oracle ranking of the configurations predicts another's (the mean Spearman "
            f"rho over pairs of seeds; near 0, the grid's order is mostly seed noise, which no "
            f"metric can predict):\n\n"
            f"{markdown_table(grids)}\n\n"
            f"{len(runs)} runs, {runs.groupby('task').config.nunique().max()} configurations per task, seeds "
            f"{','.join(map(str, sorted(runs.seed.unique())))}, "
            f"{'/'.join(map(str, sorted(runs.designs.unique())))} designs, "
            f"{'/'.join(map(str, sorted(runs.steps.unique())))} steps; {task_minutes:.1f} "
            f"min of task time ({seconds / 60:.1f} min wall for this command); the oracle only "
            f"scores the metrics, no metric reads it. Reproduce: `{command}`")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="task data directory (default $BIB_RAY_DATA)")
    parser.add_argument("--tasks", default=None, help=f"comma list (default {TASKS}; --quick: {QUICK_TASKS})")
    parser.add_argument("--metrics", default=",".join(METRIC_NAMES), help="comma list of selection metrics")
    parser.add_argument("--seeds", default=None, help="seeds of every configuration (default 0,1; --quick: 0)")
    parser.add_argument("--designs", type=int, default=None, help="designs per run (default 64; --quick: 32)")
    parser.add_argument("--steps", type=int, default=None, help=f"steps per run (default {DNA_STEPS} for DNA "
                        f"tasks, the reference's {REFERENCE_STEPS['protein']} otherwise; --quick: half)")
    parser.add_argument("--holdout-fraction", type=float, default=0.2)
    parser.add_argument("--members", type=int, default=SelectionSettings().members,
                        help="members of the metrics' MLP ensembles (SelectionSettings.members)")
    parser.add_argument("--evaluator-seed", type=int, default=SelectionSettings().seed,
                        help="seed of the metrics' evaluators (SelectionSettings.seed)")
    parser.add_argument("--top-designs", type=float, default=SelectionSettings().top_designs,
                        help="fraction of a run's designs the top-averaging metrics average (SelectionSettings."
                        "top_designs)")
    parser.add_argument("--extrapolate-past-radius", action="store_true",
                        help="the one-hot evaluators score designs past a task's mutation radius as their members "
                        "extrapolate (the metrics before issue 23's radius rule; SelectionSettings.unknown_past_radius "
                        "false)")
    parser.add_argument("--quick", action="store_true", help="two tasks, one seed, 32 designs, half the steps")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="reference",
                        help="configurations: reference (backbone x method x (lr, target), the grid the default "
                        "metric was chosen on), broad (backbone x method x lr x K), mixed (backbone with ntk x "
                        "method, lr, target, K, designs and steps) or mixed2 (the same backbones x six other "
                        "such settings)")
    parser.add_argument("--ensemble", default=None, help="comma list of metrics also combined by rank, judged as "
                        "the metric 'rank-ensemble'")
    parser.add_argument("--tie-break", action="append", choices=["defaults", "conservative"], default=[],
                        help="also judge each metric with draws as a sweep with this tie_break applies it: "
                        "'METRIC+TIE_BREAK' (bib_ray.sweep.choice); repeatable")
    parser.add_argument("--tie-margin", type=float, default=1.0, help="the sweep's tie_margin for --tie-break")
    parser.add_argument("--baseline-config", default=None, help="also judge always taking this configuration "
                        "(its label, e.g. ntk/bib/lr=0.1/target=10) as the metric 'always CONFIG' (no sweep)")
    parser.add_argument("--out", default="runs/selection")
    parser.add_argument("--doc", type=Path, help="also write the tables into this markdown file's "
                        "<!-- suite:selection --> block (e.g. docs/selection.md)")
    parser.add_argument("--resume", action="store_true", help="keep the tasks already in OUT/selection_runs.csv "
                        "(written after each task) and run only the others; give the same settings")
    parser.add_argument("--rescore", action="store_true", help="run nothing: score the designs saved in OUT "
                        "again with those --metrics that read only designs (the others keep their saved "
                        "columns), and judge them")
    parser.add_argument("--judge", action="store_true", help="run and fit nothing: judge the --metrics columns "
                        "already saved in OUT/selection_runs.csv (e.g. after --rescore)")
    parser.add_argument("--jobs", type=int, default=1, help="tasks run in parallel worker processes (default 1)")
    parser.add_argument("--quiet", action="store_true")


def run_task(spec: str, data_dir: str | None, seeds: list[int], metric_names: list[str], designs: int,
             steps: int | None, quick: bool, holdout_fraction: float, progress: bool,
             grid_name: str = "reference", settings: SelectionSettings | None = None) -> pd.DataFrame:
    """One task of the benchmark: its runs (``select_runs``), then their oracle percentiles; keeps
    ``codes`` and adds ``seconds_task`` (this task's wall time)."""
    from bib_ray.tasks import load_task

    started = time.perf_counter()
    task = load_task(spec, data_dir)
    steps = steps or default_steps(task) // (2 if quick else 1)
    configs = [sized(config, designs, steps) for config in GRIDS[grid_name]()]
    runs = select_runs(task, configs, seeds, metric_names, {"steps": steps, "designs": designs},
                       holdout_fraction, settings, progress=progress)
    scored = score_with_oracle(task, runs).assign(codes=list(runs.codes))
    return scored.assign(seconds_task=time.perf_counter() - started)


def rescore(out: Path, metric_names: list[str], data_dir: str | None, holdout_fraction: float,
            settings: SelectionSettings | None = None) -> pd.DataFrame:
    """The runs saved in ``out`` with the metrics in ``metric_names`` that read only the designs
    scored again on the saved designs (same split, so the same evaluators), their draws included; the
    metrics that read a trial's models must already be columns."""
    from bib_ray.tasks import load_task

    redo = [name for name in metric_names if not METRICS[name].reads_trial]
    runs = saved_runs(out, [name for name in metric_names if name not in redo],
                      "these metrics read the trials' models: run the grid again to add them")
    if not (out / "selection_designs.npz").exists():
        raise UserError(f"--rescore needs {out / 'selection_designs.npz'} from an earlier run")
    with np.load(out / "selection_designs.npz") as saved:
        designs = {key: saved[key] for key in saved.files}
    for spec in runs.task.unique():
        offline = dataclasses.replace(load_task(spec, data_dir), oracle=None)
        rows = runs.task == spec
        for name, metric in fit_metrics(redo, *split_offline(offline, holdout_fraction), {}, settings).items():
            candidates = [Candidate(designs[f"{spec}|{r.config}|{r.seed}"], r.backbone)
                          for r in runs[rows].itertuples()]
            scores, draws = zip(*(metric.evaluate(candidate) for candidate in candidates))
            runs.loc[rows, name] = scores
            if draws[0] is not None:
                runs.loc[rows, f"{name} draws"] = [draws_to_json(values) for values in draws]
    return runs


def saved_runs(out: Path, metric_names: list[str], advice: str) -> pd.DataFrame:
    """``OUT/selection_runs.csv`` from an earlier run, which must hold a column per metric in ``metric_names``."""
    path = out / "selection_runs.csv"
    if not path.exists():
        raise UserError(f"{path} is missing: run the grid into {out} first")
    runs = pd.read_csv(path)
    missing = sorted(set(metric_names) - set(runs.columns))
    if missing:
        raise UserError(f"{path} has no columns {missing}: {advice}")
    return runs


def run_grid(args: argparse.Namespace, out: Path, tasks: list[str], metric_names: list[str], seeds: list[int],
             designs: int) -> pd.DataFrame:
    """Every task's runs (``run_task``; ``--jobs`` tasks at once), saved under ``out`` after each task;
    ``--resume`` keeps the tasks already saved there."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    frames, designs_kept = [], {}
    if args.resume and (out / "selection_runs.csv").exists():
        earlier = saved_runs(out, metric_names, "resume with the same --metrics")
        frames.append(earlier[earlier.task.isin(tasks)])
        if (out / "selection_designs.npz").exists():
            with np.load(out / "selection_designs.npz") as kept:
                designs_kept.update({key: kept[key] for key in kept.files})
    done = set(frames[0].task) if frames else set()  # the tasks' names are their specs
    todo = [spec for spec in tasks if spec not in done]
    arguments = dict(data_dir=args.data_dir, seeds=seeds, metric_names=metric_names, designs=designs,
                     steps=args.steps, quick=args.quick, holdout_fraction=args.holdout_fraction,
                     progress=not args.quiet, grid_name=args.grid, settings=evaluator_settings(args))

    def keep(runs: pd.DataFrame) -> None:
        designs_kept.update({f"{r.task}|{r.config}|{r.seed}": np.asarray(r.codes) for r in runs.itertuples()})
        np.savez_compressed(out / "selection_designs.npz", **designs_kept)
        frames.append(runs.drop(columns="codes"))
        pd.concat(frames).to_csv(out / "selection_runs.csv", index=False)
        if not args.quiet:
            print(f"{runs.task.iloc[0]}: {len(runs)} runs in {runs.seconds_task.iloc[0]:.0f} s", file=sys.stderr)

    if args.jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(args.jobs, len(todo)), mp_context=get_context("spawn")) as pool:
            for future in as_completed([pool.submit(run_task, spec, **arguments) for spec in todo]):
                keep(future.result())
    else:
        for spec in todo:
            keep(run_task(spec, **arguments))
    return pd.concat(frames, ignore_index=True)


def evaluator_settings(args: argparse.Namespace) -> SelectionSettings:
    """The metrics' ``SelectionSettings`` from ``--members``, ``--evaluator-seed``, ``--top-designs`` and
    ``--extrapolate-past-radius``."""
    try:
        return SelectionSettings(members=args.members, seed=args.evaluator_seed, top_designs=args.top_designs,
                                 unknown_past_radius=not args.extrapolate_past_radius)
    except ValueError as error:
        raise UserError(str(error)) from None


def run(args: argparse.Namespace, command: str) -> int:
    from bib_ray.bench.suite import doc_block, split_task_list

    tasks = split_task_list(args.tasks or (QUICK_TASKS if args.quick else TASKS))
    metric_names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(metric_names) - set(METRIC_NAMES))
    if unknown:
        raise UserError(f"unknown metrics {unknown}; choose from {', '.join(METRIC_NAMES)}")
    seeds = parse_seeds(args.seeds or ("0" if args.quick else "0,1"))
    designs = args.designs or (32 if args.quick else 64)
    if args.doc is not None:
        doc_block(args.doc, "selection")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.judge:
        runs = saved_runs(out, metric_names, "score them first (--rescore)")
    elif args.rescore:
        runs = rescore(out, metric_names, args.data_dir, args.holdout_fraction,
                       evaluator_settings(args))
        runs.to_csv(out / "selection_runs.csv", index=False)
    else:
        runs = run_grid(args, out, tasks, metric_names, seeds, designs)
    runs, metric_names = derived_metrics(runs, metric_names, args)
    return write_report(runs, metric_names, out, args.doc, command, time.perf_counter() - started)


def derived_metrics(runs: pd.DataFrame, metric_names: list[str], args: argparse.Namespace
                    ) -> tuple[pd.DataFrame, list[str]]:
    """``runs`` with the columns of ``--ensemble`` (rank-ensemble), ``--baseline-config`` (always CONFIG) and
    ``--tie-break`` (METRIC+TIE_BREAK), and the metric names to judge."""
    if args.ensemble:
        members = [m.strip() for m in args.ensemble.split(",") if m.strip()]
        if not set(members) <= set(metric_names):
            raise UserError(f"--ensemble {members}: each must be one of --metrics")
        runs["rank-ensemble"] = rank_ensemble(runs, members)
        metric_names = [*metric_names, "rank-ensemble"]
    if args.baseline_config:
        if args.baseline_config not in set(runs.config):
            raise UserError(f"--baseline-config {args.baseline_config!r} is not a configuration of these runs")
        runs[f"always {args.baseline_config}"] = (runs.config == args.baseline_config).astype(float)
        metric_names = [*metric_names, f"always {args.baseline_config}"]
    ruled = [name for name in metric_names if f"{name} draws" in runs.columns]
    for tie_break in args.tie_break:
        for name in ruled:
            runs[f"{name}+{tie_break}"] = with_tie_rule(runs, name, tie_break, args.tie_margin)
        metric_names = [*metric_names, *(f"{name}+{tie_break}" for name in ruled)]
    return runs, metric_names


def write_report(runs: pd.DataFrame, metric_names: list[str], out: Path, doc: Path | None, command: str,
                 seconds: float) -> int:
    """Judge the metrics on ``runs``; write the summary and report under ``out`` (and into ``doc``)."""
    from bib_ray.bench.suite import update_doc

    judged = judge(runs, metric_names)
    judged.to_csv(out / "selection_summary.csv", index=False)
    text = report(judged, runs, command, seconds)
    (out / "selection.md").write_text(text + "\n")
    if doc is not None:
        update_doc(doc, "selection", text)
    print(text)
    print(f"\nwritten: {out / 'selection_runs.csv'}, {out / 'selection_summary.csv'}, {out / 'selection.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("bib_ray.bench.selection", __doc__.splitlines()[0], add_arguments, run, argv)


if __name__ == "__main__":
    exit_with(main, "bib_ray.bench.selection")
