"""PNG plots of a run's per-step history: proxy score vs step, and gamma / eta vs step."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _band(ax, values: np.ndarray, label: str) -> None:
    """Mean over designs with a 10-90 percentile band; values (steps, B)."""
    steps = np.arange(1, values.shape[0] + 1)
    ax.plot(steps, values.mean(1), label=label)
    ax.fill_between(steps, np.percentile(values, 10, axis=1), np.percentile(values, 90, axis=1), alpha=0.2)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(histories: dict[int, dict[str, np.ndarray]], label_mean: float, label_std: float,
                 out_dir: Path) -> list[Path]:
    """Write score_vs_step.png and gamma_eta_vs_step.png for per-seed histories; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, history in histories.items():
        _band(ax, label_mean + label_std * history["proxy_score"], f"seed {seed}")
    ax.set(xlabel="step", ylabel="proxy score (label units)", title="Proxy score of the designs")
    ax.legend(fontsize="small")
    score_path = _save(fig, out_dir / "score_vs_step.png")

    fig, (ax_gamma, ax_eta) = plt.subplots(1, 2, figsize=(10, 4))
    for seed, history in histories.items():
        _band(ax_gamma, history["gamma"], f"seed {seed}")
        _band(ax_eta, history["eta"], f"seed {seed}")
    ax_gamma.set(xlabel="step", ylabel="gamma", title="gamma (forward weight)", ylim=(-0.02, 1.02))
    ax_eta.set(xlabel="step", ylabel="eta", title="eta (step size)")
    ax_gamma.legend(fontsize="small")
    return [score_path, _save(fig, out_dir / "gamma_eta_vs_step.png")]
