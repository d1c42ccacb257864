"""Speed of the core engine on TFBind8 with the tiny backbone (2 CPU cores in the README).

    python -m bib_ray.bench.engine_speed --data-dir ../shared/data

(a) one run (128 designs x 100 steps, Adaptive-gamma): all trajectories batched vs the same
    optimiser looping over one candidate at a time;
(b) step time with N = 5,000 (tfbind8-r) vs N = 65,792 (every TFBind8 row) offline rows;
(c) step cost of each mode relative to a plain fixed-gamma step, with the adaptive modules'
    gradients taken through one batched LM backward vs one backward per gradient.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bib_ray.core.methods import Method
from bib_ray.core.optimizer import BIBOptimiser, CotangentBatching, OptimiserSettings
from bib_ray.proxy.fitting import FittedProxy
from bib_ray.run.config import DesignConfig
from bib_ray.run.engine import initial_logits
from bib_ray.run.executor import LocalExecutor
from bib_ray.tasks import Task, load_task
from bib_ray.tasks.data_dir import resolve_data_dir
from bib_ray.tasks.tfbind import load_tfbind8_rows


def _optimiser(fitted: FittedProxy, aux, **overrides) -> BIBOptimiser:
    settings = DesignConfig(backbone="tiny", **overrides).optimiser_settings()
    return BIBOptimiser(fitted.embedder.embed_designs, fitted.proxy, settings, aux if settings.needs_aux else None)


def _initial_logits(fitted: FittedProxy, designs: int, seed: int = 0) -> torch.Tensor:
    return initial_logits(fitted.task, designs, seed, OptimiserSettings().init_std)


def time_run(optimiser: BIBOptimiser, logits: torch.Tensor) -> float:
    started = time.perf_counter()
    optimiser.run_from_logits(logits.clone())
    return time.perf_counter() - started


def batched_vs_loop(fitted: FittedProxy, aux, designs: int, steps: int) -> list[tuple[str, str]]:
    optimiser = _optimiser(fitted, aux, method=Method.BIB, steps=steps)
    logits = _initial_logits(fitted, designs)
    time_run(optimiser, logits[:4])  # warm-up
    batched = time_run(optimiser, logits)
    looped = sum(time_run(optimiser, logits[i:i + 1]) for i in range(designs))
    return [("(a) batched run: wall time", f"{batched:.2f} s ({designs} designs x {steps} steps, adaptive-gamma)"),
            ("(a) one candidate at a time: wall time", f"{looped:.2f} s"),
            ("(a) speed-up (goal >= 50x)", f"{looped / batched:.1f}x")]


def interleaved_step_ms(runs: dict[str, tuple[BIBOptimiser, torch.Tensor]], repeats: int) -> dict[str, float]:
    """Per-step wall time (ms, median over ``repeats``) of several optimisers, timed in rotation so
    that drifting machine load affects all of them alike."""
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for optimiser, logits in runs.values():
        time_run(optimiser, logits)  # warm-up
    for _ in range(repeats):
        for label, (optimiser, logits) in runs.items():
            samples[label].append(time_run(optimiser, logits) / optimiser.settings.steps)
    return {label: 1000 * float(np.median(values)) for label, values in samples.items()}


def lm_costs(fitted: FittedProxy, logits: torch.Tensor, repeats: int = 20) -> tuple[float, float]:
    """Median ms of one LM forward (F) and of one extra vector-Jacobian product (V) at this batch size."""
    from bib_ray.core.design_variables import straight_through

    def forward() -> None:
        with torch.no_grad():
            fitted.embedder.embed_designs(straight_through(logits))

    def forward_vjps(count: int) -> None:
        z = logits.clone().requires_grad_(True)
        phi = fitted.embedder.embed_designs(straight_through(z))
        for i in range(count):
            torch.autograd.grad(phi, z, torch.ones_like(phi), retain_graph=i < count - 1)

    def median_ms(fn, *args) -> float:
        fn(*args)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn(*args)
            samples.append(time.perf_counter() - started)
        return 1000 * float(np.median(samples))

    f = median_ms(forward)
    v = (median_ms(forward_vjps, 3) - median_ms(forward_vjps, 1)) / 2
    return f, v


def all_rows_task(data_dir: str | None) -> Task:
    """TFBind8 with every one of its 65,792 rows as the offline set."""
    full = load_task("tfbind8", data_dir)
    x, y = load_tfbind8_rows(resolve_data_dir(data_dir))
    return Task(name="tfbind8-all", alphabet=full.alphabet, x=x, y=y, oracle=full.oracle,
                score_range=full.score_range)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="data directory (default $BIB_RAY_DATA)")
    parser.add_argument("--designs", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--timing-steps", type=int, default=20, help="steps per timed run in (b) and (c)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows: list[tuple[str, str]] = [("torch threads", str(torch.get_num_threads()))]

    executor, config = LocalExecutor(), DesignConfig(backbone="tiny")
    fitted_r = executor.fit(load_task("tfbind8-r", args.data_dir), config.proxy_settings())
    (aux_r, _), = executor.train_aux(fitted_r, config.aux_settings(), [0])
    rows += batched_vs_loop(fitted_r, aux_r, args.designs, args.steps)

    fitted_all = executor.fit(all_rows_task(args.data_dir), config.proxy_settings())
    (aux_all, _), = executor.train_aux(fitted_all, config.aux_settings(), [0])
    sizes = {label: (_optimiser(fitted, aux, method=Method.BIB, steps=args.timing_steps),
                     _initial_logits(fitted, args.designs))
             for label, fitted, aux in (("5,000", fitted_r, aux_r), ("65,792", fitted_all, aux_all))}
    timed = interleaved_step_ms(sizes, args.repeats)
    rows += [(f"(b) step time, N = {label} rows", f"{ms:.1f} ms") for label, ms in timed.items()]
    rows.append(("(b) ratio 65,792 / 5,000 (goal <= 1.1x)", f"{timed['65,792'] / timed['5,000']:.2f}x"))

    logits = _initial_logits(fitted_r, args.designs)
    variants = [
        ("plain bidirectional (fixed gamma)", dict(method=Method.BIDIRECTIONAL)),
        ("forward only", dict(method=Method.FORWARD)),
        ("adaptive-gamma, batched cotangents", dict(method=Method.BIB)),
        ("adaptive-gamma, one backward each", dict(method=Method.BIB, cotangents=CotangentBatching.SEQUENTIAL)),
        ("adaptive-gamma+eta, batched cotangents", dict(method=Method.BIB_ETA)),
        ("forward+adaptive-eta, batched cotangents", dict(method=Method.FORWARD_ETA)),
    ]
    f_ms, v_ms = lm_costs(fitted_r, logits)
    rows.append(("(c) LM forward F / one vector-Jacobian product V", f"{f_ms:.1f} ms / {v_ms:.1f} ms"))
    rows.append(("(c) bound for exact adaptive-gamma (F+3V)/(F+V)", f"{(f_ms + 3 * v_ms) / (f_ms + v_ms):.2f}x "
                 "(3 gradients through the LM instead of 1)"))
    timed = interleaved_step_ms({label: (_optimiser(fitted_r, aux_r, steps=args.timing_steps, **overrides), logits)
                                 for label, overrides in variants}, args.repeats)
    base = timed[variants[0][0]]
    for label, ms in timed.items():
        goal = " (goal <= 1.3x)" if label == "adaptive-gamma, batched cotangents" else ""
        rows.append((f"(c) step: {label}", f"{ms:.1f} ms = {ms / base:.2f}x plain{goal}"))

    width = max(len(name) for name, _ in rows)
    print(f"\n{'measure':<{width}}  value\n{'-' * width}  {'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
