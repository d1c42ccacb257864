"""The ``bib-ray`` command line: design, sweep, serve, score, bench, tasks, backbones."""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
import threading
import time
from pathlib import Path

from bib_ray.distributed.runtime import set_verbose, stop_on_signals, stopped_by
from bib_ray.errors import UserError
from bib_ray.flags import add_model_flags, model_flag_values

def ray_settings(args: argparse.Namespace):
    from bib_ray.distributed.settings import RaySettings
    from bib_ray.validation import parse_model

    return parse_model(RaySettings, model_flag_values(args, RaySettings), "invalid Ray settings")


def _design_values(args: argparse.Namespace) -> dict:
    from bib_ray.run.config import DesignConfig
    from bib_ray.validation import load_yaml_mapping

    values = load_yaml_mapping(args.config) if args.config else {}
    values.update(model_flag_values(args, DesignConfig))
    return values


def _fmt(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _mean_std(stat: dict) -> str:
    """'0.812 +- 0.010', or 'n/a' when no design was scored."""
    return "n/a" if stat["mean"] != stat["mean"] else f"{stat['mean']:.3f} +- {stat['std']:.3f}"


def _print_result(summary: dict, out: Path) -> None:
    scores = summary["scores"]
    print(f"\ntask {summary['task']['name']} | method {summary['method']} | backbone {summary['lm_id']}")
    if "ground_truth" in scores:
        print(scores["ground_truth"])
        for seed in summary["per_seed"]:
            print(f"  seed {seed['seed']}: proxy score mean {seed['proxy_score_mean']:.4g}, "
                  f"max {seed['proxy_score_max']:.4g}")
    else:
        for seed in summary["per_seed"]:
            o = seed["oracle"]
            extra = "".join(f", {o[k]} {k}" for k in ("unknown", "infeasible") if o[k])
            print(f"  seed {seed['seed']}: 100th {_fmt(o['p100'])}  50th {_fmt(o['p50'])}  "
                  f"(scored only: {_fmt(o['p100_scored'])} / {_fmt(o['p50_scored'])}; "
                  f"{o['ok']}/{o['designs']} scored{extra}; starting designs 100th {o['start_p100']:.3f}, "
                  f"best offline {o['offline_best']:.3f})")
        print(f"  normalised 100th percentile {_mean_std(scores['p100'])}, 50th {_mean_std(scores['p50'])} "
              f"over all designs, unscorable ones at 0 ({scores['oracle_kind']} oracle)")
        print(f"  over the scored designs only: 100th {_mean_std(scores['p100_scored'])}, "
              f"50th {_mean_std(scores['p50_scored'])}")
        if all(seed["oracle"]["ok"] == 0 for seed in summary["per_seed"]):
            print("  no design could be scored: every one is outside the oracle's support (see 'unknown' above)")
    batch = summary.get("batch")
    if batch is not None:
        print(describe_batch(batch))
    artifact = ", proxy/" if summary.get("artifact") else ""
    batch_files = ", batch.csv, batch.fasta" if batch is not None else ""
    print(f"outputs in {out} (designs.csv, designs.fasta{batch_files}, summary.json, plots{artifact})")


def describe_batch(batch: dict) -> str:
    """The batch in a line or two: how many were chosen from how many candidates, and the oracle's view."""
    line = (f"batch: {batch['chosen']} designs chosen from {batch['distinct']} distinct candidates "
            f"({batch['offline_dropped']} already in the offline data and {batch['excluded_dropped']} excluded "
            f"were dropped; bound {batch['bound']}, kappa {batch['settings']['kappa']:g})")
    if batch["short_by"]:
        line += (f"\n  only {batch['chosen']} of the {batch['settings']['size']} asked for: the run's candidates ran "
                 "out (more seeds, --designs or --batch-checkpoints, or a looser --batch-min-distance / "
                 "--batch-per-start give more)")
    oracle = batch.get("oracle")
    if oracle is not None:
        line += f"\n  batch: normalised 100th percentile {_fmt(oracle['p100'])}, 50th {_fmt(oracle['p50'])} over all " \
                f"{oracle['designs']} designs (the per-trajectory ones are above)"
    return line


def default_out_dir(config) -> Path:
    """runs/<task>-<method>-<time>: a new folder per run."""
    return Path("runs") / f"{config.task.replace(':', '_').replace('/', '_')}-{config.method_label()}-" \
        f"{time.strftime('%Y%m%d-%H%M%S')}"


def describe_task(task) -> str:
    """One line naming the task's size and alphabet, and whether the alphabet was detected or given."""
    from bib_ray.tasks.user_data import describe_alphabet

    from bib_ray.tasks.user_data import describe_replicates

    hint = " (--alphabet to choose)" if task.details.get("alphabet_source") == "detected" else ""
    line = f"task {task.name}: {len(task.y)} offline sequences of length {task.x.shape[1]}; " \
           f"{describe_alphabet(task)}{hint}"
    wild_type = task.details.get("wild_type")
    if wild_type is not None:
        shown = wild_type if len(wild_type) <= 40 else f"{wild_type[:37]}..."
        line += (f"\nwild type {shown} (from {task.details['wild_type_source']}): edits are counted from it (the data "
                 f"reach {task.mutation_radius} substitutions) and designs are written as its mutants")
    replicates = describe_replicates(task)
    return line if replicates is None else f"{line}\n{replicates}"


def cmd_design(args: argparse.Namespace) -> int:
    from bib_ray.run.config import build_config
    from bib_ray.run.constraints import beyond_radius_note
    from bib_ray.run.report import check_run_directory, publish_run_directory

    config = build_config(_design_values(args))
    settings = ray_settings(args)
    out = Path(args.out) if args.out else default_out_dir(config)
    check_run_directory(out, args.overwrite)
    args.stopped_hint = f"nothing of this run was written to {out}" + (" (the earlier run there is as it was)"
                                                                        if args.overwrite else "")
    task = config.load_task()  # bad data, exclusions or positions fail here, before Ray or a model
    print(describe_task(task), flush=True)
    note = beyond_radius_note(task, [config.max_mutations])
    if note is not None:
        print(note, file=sys.stderr, flush=True)
    if args.local:
        from bib_ray.run.engine import run_design
        from bib_ray.run.executor import LocalExecutor

        run = run_design(config, task, LocalExecutor(progress=not args.quiet))
    else:
        from bib_ray.distributed.design import run_design_on_ray

        run = run_design_on_ray(config, settings, progress=not args.quiet, task=task)
    summary = publish_run_directory(run, out)
    _print_result(summary, out)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from bib_ray.sweep.driver import METRIC, chosen_against_completed, experiment_location, run_sweep, stop_hint
    from bib_ray.sweep.config import load_sweep_config

    sweep = load_sweep_config(args.config)
    if args.data_dir:
        sweep.base["data_dir"] = args.data_dir
    storage = args.storage or os.environ.get("BIB_RAY_STORAGE") or None
    args.stopped_hint = functools.partial(stop_hint, experiment_location(storage or args.out, sweep.name))
    outcome = run_sweep(sweep, ray_settings(args), Path(args.out), resume=args.resume, progress=not args.quiet,
                        storage=storage)
    table = outcome.table
    print(f"\nsweep {sweep.name}: {len(table)} trials, metric {METRIC} ({sweep.metric}; the oracle is reporting only)")
    shown = table if table.error.astype(bool).any() else table.drop(columns="error")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"experiment and checkpoints: {outcome.experiment}; table: {outcome.out_dir / 'sweep_results.csv'}")
    if outcome.choice is not None:
        print(f"chosen trial {table.loc[outcome.choice.chosen, 'trial']}: {outcome.choice.line}")
    verdict = chosen_against_completed(table)
    if verdict is not None:
        print(verdict)
    if outcome.best_dir is not None:
        print(f"best trial's designs and proxy artifact: {outcome.best_dir}")
    if outcome.failure is not None:
        print(f"bib-ray: error: sweep {sweep.name} failed: {outcome.failure}", file=sys.stderr)
        return 1
    return 0


SERVE_STOP_WAIT_S = 60.0  # how long a stopping `bib-ray serve` waits for Serve and Ray beyond the drain time


def cmd_serve(args: argparse.Namespace) -> int:
    from bib_ray.distributed.runtime import connect
    from bib_ray.service import launch
    from bib_ray.service.settings import (DEFAULT_DEPLOYMENT, ServeDeployment, ServiceSettings, load_serve_yaml,
                                         parse_service_settings)

    deployment = load_serve_yaml(args.config) if args.config else ServeDeployment(**DEFAULT_DEPLOYMENT)
    actor_options = dict(deployment.ray_actor_options)
    for key, value in (("num_cpus", args.cpus_per_replica), ("num_gpus", args.gpus_per_replica)):
        if value is not None:
            if value < 0:
                raise UserError(f"--{key.replace('num_', '')}-per-replica must be >= 0, got {value}")
            actor_options[key] = value
    deployment = deployment.with_overrides(host=args.host, port=args.port, num_replicas=args.replicas,
                                           graceful_shutdown_timeout_s=args.drain_timeout,
                                           ray_actor_options=actor_options)
    values = dict(deployment.settings_args, artifact=args.artifact,
                  **model_flag_values(args, ServiceSettings, exclude=("artifact",)))
    settings = parse_service_settings(values).with_checked_artifact()
    settings.resolve_api_key()  # fail before starting Ray
    on_cluster = bool(args.address or os.environ.get("RAY_ADDRESS"))
    launch.allow_slow_proxy_start()
    where = connect(args.address)
    url = launch.deploy(settings, deployment, check_port=not on_cluster)
    drain = deployment.graceful_shutdown_timeout_s
    print(f"serving {settings.artifact} at {url} on {where} ({deployment.describe_replicas()}, {actor_options}); "
          f"docs at {url}/docs", flush=True)
    if on_cluster:
        print("the application keeps running on the cluster; stop it with `serve shutdown`")
        return 0
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt as interrupt:
        print(f"bib-ray serve: {stopped_by(interrupt) or 'SIGINT'} received: taking no new requests, finishing "
              f"those in flight (at most {drain:g} s)", file=sys.stderr, flush=True)
    if not launch.stop_local_service(drain, SERVE_STOP_WAIT_S):
        print(f"bib-ray serve: Serve and Ray did not stop within {drain + SERVE_STOP_WAIT_S:.0f} s (or a second stop "
              "signal came); exiting without waiting for them", file=sys.stderr, flush=True)
        os._exit(1)  # a normal exit would run Ray's atexit shutdown, the step that did not finish
    print("bib-ray serve: stopped", file=sys.stderr, flush=True)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from bib_ray.service.client import ProxyClient
    from bib_ray.service.settings import key_from_env
    from bib_ray.tasks.user_data import read_sequences

    sequences = read_sequences(args.file, args.sequence_column)
    api_key = key_from_env(args.api_key_env, "--api-key-env") if args.api_key_env else None
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    client = ProxyClient(args.url, api_key=api_key, timeout_s=args.timeout)
    table = pd.DataFrame(client.score(sequences))
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"scored {len(table)} sequences -> {args.out} ({client.retries_used} retried attempts)")
    else:
        print(table.to_csv(index=False), end="")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bib_ray.bench.suite import run

    return run(args, args.command_line)


def cmd_tasks(_: argparse.Namespace) -> int:
    from bib_ray.tasks import TASKS

    width = max(len(t.name) for t in TASKS)
    for info in TASKS:
        print(f"{info.name:<{width}}  {'[needs --data-dir] ' if info.needs_data else ''}{info.description}")
    return 0


def cmd_backbones(_: argparse.Namespace) -> int:
    from bib_ray.backbones import list_backbones

    infos = list_backbones()
    width = max(len(b.spec) for b in infos)
    for info in infos:
        state = "available" if info.available else "missing  "
        note = f" ({info.note})" if info.note else ""
        print(f"{info.spec:<{width}}  {state}  {info.description}{note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bib_ray.distributed.settings import RaySettings
    from bib_ray.run.config import DesignConfig
    from bib_ray.service.settings import DEFAULT_DRAIN_TIMEOUT_S, ServiceSettings

    parser = argparse.ArgumentParser(prog="bib-ray", description=__doc__.splitlines()[0])
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--verbose", action="store_true", help="also show Ray's own start-up, shutdown and "
                        "worker log lines (hidden by default; warnings and errors always show)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=functools.partial(argparse.ArgumentParser, parents=[output]))
    design = commands.add_parser("design", help="fit the proxy and design sequences")
    design.add_argument("--config", help="YAML file of design settings (flags override it)")
    add_model_flags(design, DesignConfig)
    design.add_argument("--out", help="output directory, new or empty (default runs/<task>-<method>-<time>)")
    design.add_argument("--overwrite", action="store_true", help="--out may hold an earlier run: its outputs "
                        "are replaced once this run has finished")
    design.add_argument("--quiet", action="store_true", help="no progress bars")
    design.add_argument("--local", action="store_true", help="run in this process, without Ray")
    add_model_flags(design, RaySettings)
    design.set_defaults(handler=cmd_design)
    sweep = commands.add_parser("sweep", help="Ray Tune search over the outer hyper-parameters")
    sweep.add_argument("--config", required=True, help="sweep YAML, e.g. tune_configs/quick.yaml")
    sweep.add_argument("--data-dir", help="task data directory for every trial (default $BIB_RAY_DATA)")
    sweep.add_argument("--out", default="runs/sweeps", help="local folder for the results table and the best "
                       "trial's outputs, fetched from the storage (default runs/sweeps)")
    sweep.add_argument("--storage", help="where Tune keeps the experiment and each trial's checkpoint: s3://..., "
                       "gs://... or a folder every node sees (default $BIB_RAY_STORAGE, else --out: fine on "
                       "one node)")
    sweep.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name "
                       "(from --storage when given)")
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    add_model_flags(sweep, RaySettings)
    sweep.set_defaults(handler=cmd_sweep)
    serve = commands.add_parser("serve", help="serve a fitted proxy artifact over HTTP (Ray Serve)")
    serve.add_argument("artifact", help="proxy artifact directory, e.g. runs/<run>/proxy")
    serve.add_argument("--config", help="Serve YAML, e.g. deployments/proxy_service.yaml (flags override it)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8000)")
    serve.add_argument("--replicas", help="replicas of the scoring deployment, a count or auto (Serve's autoscaler, "
                       "1 to 4 replicas unless the YAML's autoscaling_config says otherwise; default 1)")
    serve.add_argument("--drain-timeout", type=float, help="seconds a stopping service (SIGTERM, Ctrl-C) gives the "
                       f"requests in flight (default {DEFAULT_DRAIN_TIMEOUT_S:g})")
    serve.add_argument("--cpus-per-replica", type=float, help="CPUs per replica (default 1)")
    serve.add_argument("--gpus-per-replica", type=float, help="GPUs per replica, fractions allowed (default 0)")
    add_model_flags(serve, ServiceSettings, exclude=("artifact",))
    serve.add_argument("--address", help="Ray cluster to deploy on (default $RAY_ADDRESS, else embedded local Ray)")
    serve.set_defaults(handler=cmd_serve)
    score = commands.add_parser("score", help="score a CSV/FASTA of sequences through a running service")
    score.add_argument("file", help="CSV/TSV with a sequence column, or FASTA")
    score.add_argument("--url", required=True, help="service URL, e.g. http://127.0.0.1:8000")
    score.add_argument("--out", help="CSV to write (default: print CSV to stdout)")
    score.add_argument("--sequence-column", help="name of the sequence column of a CSV/TSV")
    score.add_argument("--api-key-env", help="env var holding the service's API key")
    score.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    score.set_defaults(handler=cmd_score)
    from bib_ray.bench import suite

    bench = commands.add_parser("bench", help="the benchmark suite: method x task x backbone x seed grids on Ray",
                                description=suite.__doc__.splitlines()[0])
    suite.add_arguments(bench)
    bench.set_defaults(handler=cmd_bench)
    commands.add_parser("tasks", help="list the tasks").set_defaults(handler=cmd_tasks)
    commands.add_parser("backbones", help="list the LM backbones").set_defaults(handler=cmd_backbones)
    return parser


REPLACED_FLAGS = ("--mode", "--adaptive-eta")  # gone: --method names every method


def refuse_replaced_flags(argv: list[str]) -> None:
    """UserError naming --method when ``argv`` uses a flag that --method replaced."""
    used = sorted({arg.split("=", 1)[0] for arg in argv if arg.split("=", 1)[0] in REPLACED_FLAGS})
    if used:
        from bib_ray.core.methods import methods_help

        raise UserError(f"{' and '.join(used)}: replaced by --method, one of {methods_help()} "
                        "(e.g. --method bib+eta for adaptive gamma with adaptive eta)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        refuse_replaced_flags(argv)
        args = build_parser().parse_args(argv)
        set_verbose(args.verbose)
        args.command_line = shlex.join(["bib-ray", *argv])
        if threading.current_thread() is threading.main_thread():
            stop_on_signals()
        return args.handler(args)
    except UserError as error:
        print(f"bib-ray: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        stop = stopped_by(interrupt)
        if stop is None:
            print("bib-ray: interrupted", file=sys.stderr)
            return 130
        hint = getattr(args, "stopped_hint", None) if "args" in locals() else None
        hint = hint() if callable(hint) else hint  # a hint that depends on how far the command got
        print(f"bib-ray: stopped by {stop}{f'; {hint}' if hint else ''}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:  # the reader went away (`bib-ray tasks | head -3`): stop quietly, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when stdout is flushed at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
