"""Writing a design run's directory: designs.csv, designs.fasta, history.csv, summary.json,
plots, and the fitted proxy artifact (proxy/)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.proxy.artifacts import save_proxy_artifact
from bib_ray.errors import UserError
from bib_ray.tasks.evaluation import oracle_trace
from bib_ray.run.results import DesignRun
from bib_ray.run.plots import plot_history

PACKAGES = ("bib-ray", "torch", "transformers", "numpy", "pandas", "pydantic", "ray", "pytorch-holo")
NO_GROUND_TRUTH = "no ground truth available: designs are scored by the proxy only"


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _mean_std(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.mean(array)), "std": float(np.std(array, ddof=1)) if array.size > 1 else 0.0}


def oracle_traces(run: DesignRun) -> dict[int, dict[str, np.ndarray]]:
    """Per seed: the oracle's percentiles of the argmax designs at about 20 steps (none without an oracle)."""
    traces = {}
    for result in run.seeds:
        trace = oracle_trace(run.fitted.task, result.trajectory.history["codes"])
        if trace is not None:
            traces[result.seed] = trace
    return traces


def history_table(run: DesignRun, traces: dict[int, dict[str, np.ndarray]] | None = None) -> pd.DataFrame:
    """Per seed and step: the mean over designs of every recorded quantity (proxy score in label units),
    and, at the steps in ``traces``, the oracle percentiles of the argmax designs (oracle_p100, oracle_p50)."""
    proxy = run.fitted.proxy
    frames = []
    for result in run.seeds:
        history = result.trajectory.history
        frame = pd.DataFrame({key: values.mean(1) for key, values in history.items() if values.ndim == 2})
        frame["proxy_score"] = proxy.label_mean + proxy.label_std * frame["proxy_score"]
        if "aux_score" in frame:
            frame["aux_score"] = proxy.label_mean + proxy.label_std * frame["aux_score"]
        frame.insert(0, "step", np.arange(1, len(frame) + 1))
        frame.insert(0, "seed", result.seed)
        trace = (traces or {}).get(result.seed)
        if trace is not None:
            for key in ("p100", "p50"):
                frame[f"oracle_{key}"] = pd.Series(trace[key], index=trace["step"] - 1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def build_summary(run: DesignRun) -> dict:
    task, fitted, config = run.fitted.task, run.fitted, run.config
    per_seed = []
    for result in run.seeds:
        table = result.designs
        per_seed.append({
            "seed": result.seed,
            "oracle": result.oracle_summary,
            "proxy_score_mean": float(table["proxy_score"].mean()),
            "proxy_score_max": float(table["proxy_score"].max()),
            "unique_designs": int(table["sequence"].nunique()),
            "hamming_to_start_mean": float(table["hamming_to_start"].mean()),
            "hamming_to_offline_mean": float(table["hamming_to_offline"].mean()),
            "aux": result.aux_metrics,
            **{f"final_{key}_mean": float(result.trajectory.history[key][-1].mean())
               if key in result.trajectory.history else None for key in ("gamma", "eta")},
            "timings": result.timings,
        })
    if task.oracle is None:
        scores = {"ground_truth": NO_GROUND_TRUTH}
    else:
        scores = {key: _mean_std([seed["oracle"][key] for seed in per_seed])
                  for key in ("p100", "p50", "p100_scored", "p50_scored", "start_p100", "start_p50")}
        scores["percentiles"] = ("p100/p50: over all designs, unscorable (unknown or infeasible) ones at the "
                                 "task's minimum; *_scored: over the scored designs only")
        scores["oracle_kind"] = task.oracle_kind.value
    return {
        "task": {"name": task.name, "description": task.description, "oracle_kind": task.oracle_kind.value,
                 "alphabet": task.alphabet, "length": task.length, "offline_rows": int(len(task.y)),
                 "score_range": task.score_range, "details": task.details},
        "method": config.method_label(),
        "backbone": fitted.lm.description,
        "lm_id": config.backbone if config.uses_ntk_proxy else fitted.lm.spec,
        "seeds": config.seeds,
        "hyperparameters": config.model_dump(mode="json"),
        "proxy": {"beta": fitted.proxy.beta, "label_mean": fitted.proxy.label_mean,
                  "label_std": fitted.proxy.label_std, "kind": type(fitted.proxy).__name__,
                  "dim": getattr(fitted.proxy, "dim", None)},
        "scores": scores,
        "per_seed": per_seed,
        "fixed_positions": fixed_positions(run),
        "batch": None if run.batch is None else run.batch.summary,
        "timings": {**fitted.timings, "total_s": run.total_s,
                    "optimise_s_per_seed": _mean_std([r.timings["optimise_s"] for r in run.seeds]),
                    "step_ms": _mean_std([r.timings["step_ms"] for r in run.seeds])},
        "device": fitted.lm.device,
        "versions": package_versions(),
    }


def fixed_positions(run: DesignRun) -> list[int] | None:
    """The 1-based positions no design changed (None: none fixed)."""
    fixed = run.config.fixed_positions(run.fitted.task.length)
    return None if fixed is None else [int(i) + 1 for i in np.flatnonzero(fixed)]


def _write_fasta(table: pd.DataFrame, path: Path, name: str = "seed{seed}_design{design}") -> None:
    lines = []
    for row in table.itertuples(index=False):
        header = f">{name.format(**row._asdict())} proxy_score={row.proxy_score:.6g}"
        if "oracle_status" in table.columns:
            oracle = "NA" if row.oracle_status != "ok" else f"{row.oracle_score:.6g}"
            header += f" oracle_score={oracle} oracle_status={row.oracle_status}"
        lines += [header, row.sequence]
    path.write_text("\n".join(lines) + "\n")


RUN_OUTPUTS = ("designs.csv", "designs.fasta", "batch.csv", "batch.fasta", "history.csv", "score_vs_step.png",
               "gamma_eta_vs_step.png", "summary.json", "proxy")  # what write_run_directory may write; summary.json marks a run


def check_run_directory(out: Path, overwrite: bool) -> None:
    """UserError unless ``out`` is new, empty, or (with ``overwrite``) an earlier run's directory:
    an earlier run's designs are never replaced silently, and a folder that is not a run is never touched."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the run's outputs")
    if not any(out.iterdir()):
        return
    if not (out / "summary.json").is_file():
        raise UserError(f"--out {out} is not empty and holds no bib-ray run (no summary.json); "
                        "give a new or empty folder")
    if not overwrite:
        raise UserError(f"--out {out} holds an earlier run's designs; pass --overwrite to replace them, "
                        "or give another folder")


def remove_run_outputs(out: Path) -> None:
    """Delete an earlier run's outputs (``RUN_OUTPUTS``) from ``out``; other files stay."""
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def write_run_directory(run: DesignRun, out: Path, home: Path | None = None) -> dict:
    """Write every output of ``run`` under ``out``; returns the summary. The proxy artifact (proxy/)
    holds the run's proxy (an LM's linear head or the NTK proxy) and the first seed's aux ensemble. ``home``: where
    the files will end up, if they are moved there (the artifact's path in the summary names it)."""
    out.mkdir(parents=True, exist_ok=True)
    designs = run.designs
    designs.to_csv(out / "designs.csv", index=False)
    _write_fasta(designs, out / "designs.fasta")
    if run.batch is not None:
        run.batch.table.to_csv(out / "batch.csv", index=False)
        _write_fasta(run.batch.table, out / "batch.fasta", "rank{rank}_seed{seed}_trajectory{trajectory}_step{step}")
    traces = oracle_traces(run)
    history_table(run, traces).to_csv(out / "history.csv", index=False)
    plot_history({r.seed: r.trajectory.history for r in run.seeds}, run.fitted.proxy.label_mean,
                 run.fitted.proxy.label_std, out, traces,
                 {r.seed: r.oracle_summary["p100"] for r in run.seeds if r.oracle_summary is not None})
    first = run.seeds[0]
    summary = build_summary(run)
    save_proxy_artifact(out / "proxy", run.fitted.task, run.fitted.lm, run.fitted.statistics, run.fitted.proxy,
                        first.aux, fixed_positions=summary["fixed_positions"])
    summary["artifact"] = {"path": str(((home or out) / "proxy").resolve()), "aux_seed": first.seed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def publish_run_directory(run: DesignRun, out: Path) -> dict:
    """Write ``run`` so that ``out`` never holds half of it: into a staging folder beside ``out``, then moved
    into ``out`` (replacing an earlier run's outputs, other files left alone), SIGTERM and SIGINT held back
    while the files move and raised once they are all in place. Returns the summary."""
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.incoming-", dir=out.parent))
    try:
        summary = write_run_directory(run, staging, home=out)
        with held_signals():
            out.mkdir(exist_ok=True)
            remove_run_outputs(out)
            for item in staging.iterdir():
                os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


@contextmanager
def held_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
    """While the block runs, a stop signal is recorded instead of acted on; afterwards the first one
    recorded is sent again, to the handlers that were there before."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, _: received.append(number)) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])
