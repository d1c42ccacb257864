"""PNG plots of a run's per-step history: proxy (and oracle) score vs step, and gamma / eta vs step."""

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
                 out_dir: Path, oracle: dict[int, dict[str, np.ndarray]] | None = None,
                 final_p100: dict[int, float] | None = None) -> list[Path]:
    """Write score_vs_step.png and, where the histories record gamma and eta (the gradient methods),
    gamma_eta_vs_step.png for per-seed histories; returns the paths written.

    With ``oracle`` (seed -> {"step", "p100", "p50"}, see ``evaluation.oracle_trace``) score_vs_step.png
    has a second panel: the oracle's normalised percentiles of the argmax designs along the run, and
    (``final_p100``, seed -> value) the 100th percentile of the final, support-decoded designs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = 2 if oracle else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0, 0]
    for seed, history in histories.items():
        _band(ax, label_mean + label_std * history["proxy_score"], f"seed {seed}")
    ax.set(xlabel="step", ylabel="proxy score (label units)", title="Proxy score of the designs")
    ax.legend(fontsize="small")
    if oracle:
        ax_oracle = axes[0, 1]
        for seed, trace in oracle.items():
            line, = ax_oracle.plot(trace["step"], trace["p100"], label=f"seed {seed} 100th")
            ax_oracle.plot(trace["step"], trace["p50"], linestyle="--", color=line.get_color(),
                           label=f"seed {seed} 50th")
            if final_p100 and seed in final_p100:
                ax_oracle.plot([trace["step"][-1]], [final_p100[seed]], marker="*", markersize=10,
                               color=line.get_color())
        ax_oracle.set(xlabel="step", ylabel="normalised oracle score (unscorable = 0)",
                      title="Oracle percentiles of the argmax designs (star: decoded)")
        ax_oracle.legend(fontsize="x-small", ncol=2)
    score_path = _save(fig, out_dir / "score_vs_step.png")
    if not all("gamma" in history and "eta" in history for history in histories.values()):
        return [score_path]
    fig, (ax_gamma, ax_eta) = plt.subplots(1, 2, figsize=(10, 4))
    for seed, history in histories.items():
        _band(ax_gamma, history["gamma"], f"seed {seed}")
        _band(ax_eta, history["eta"], f"seed {seed}")
    ax_gamma.set(xlabel="step", ylabel="gamma", title="gamma (forward weight)", ylim=(-0.02, 1.02))
    ax_eta.set(xlabel="step", ylabel="eta", title="eta (step size)")
    ax_gamma.legend(fontsize="small")
    return [score_path, _save(fig, out_dir / "gamma_eta_vs_step.png")]
