"""Choosing a sweep's trial, and saying how sure the choice is.

The metric's best trial is the candidate. Its *margin* over another trial is the mean of the paired
differences of their metric draws (``SelectionMetric.draws``: the same evaluator members, posterior seed or
design resamples for both) in units of those differences' standard deviation. Trials within
``tie_margin`` (default 1) of the best cannot be told apart from it, and the sweep says so. Which of the
tied trials it takes is ``tie_break``:

- ``metric`` (default): the metric's best all the same;
- ``defaults``: the trial closest to the defaults (fewest swept settings that differ from the sweep's
  base run), then the most conservative, then the metric;
- ``conservative``: the smallest mean Hamming distance from its designs to the nearest training row,
  then the metric.

The default is measured: on the selection benchmark's tuning split (reference grid, seeds 0-2, 16-member
evaluators) acting on ties raised ``mean-top``'s mean regret from 0.042 to 0.055-0.064 (``defaults``) and
0.055 (``conservative``, margin 1), or left it at 0.041 (``conservative``, margin 0.5); docs/selection.md.
Trials without draws (metrics without a spread) are chosen by the metric alone, and the line says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TIE_MARGIN = 1.0
TIE_BREAKS = ("metric", "defaults", "conservative")


def paired_margin(best: np.ndarray, other: np.ndarray) -> float:
    """mean(best - other) / std(best - other) over paired draws; inf when the difference never varies and is
    positive, 0 when it is always 0."""
    difference = np.asarray(best, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    spread = float(difference.std())
    mean = float(difference.mean())
    if spread <= 1e-12 * max(1.0, abs(mean)):
        return float("inf") if mean > 0 else 0.0
    return mean / spread


@dataclass(frozen=True)
class Choice:
    """The chosen row (a label of the table), the metric's own best, the margins (label -> margin of the
    metric's best over that trial), the trials tied with the best, the rule that decided, and one line."""

    chosen: object
    best: object
    margins: dict
    tied: list
    rule: str
    line: str


def choose_trial(table: pd.DataFrame, metric: str, draws: dict, changed: pd.Series, distance: pd.Series,
                 tie_margin: float = TIE_MARGIN, tie_break: str = "metric") -> Choice:
    """Choose among ``table``'s rows (completed trials with a metric): ``draws`` maps a row label to its
    metric draws (or None); ``changed``: swept settings that differ from the defaults, per row; ``distance``:
    mean Hamming distance from the row's designs to the nearest training row; ``tie_break`` one of
    ``TIE_BREAKS``."""
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {tie_break!r}")
    if table.empty:
        raise ValueError("no trial to choose from")
    best = table[metric].idxmax()
    if any(draws.get(label) is None for label in table.index):
        return Choice(best, best, {}, [best], "metric", f"{metric} has no spread here: chose its best trial")
    margins = {label: paired_margin(draws[best], draws[label]) for label in table.index if label != best}
    tied = [best] + [label for label, margin in margins.items() if margin < tie_margin]
    runner_up = max(margins, key=lambda label: table.loc[label, metric]) if margins else None
    spread = float(np.std(draws[best]))
    if len(tied) == 1:
        margin = f"{margins[runner_up]:.2f}" if runner_up is not None else "n/a"
        return Choice(best, best, margins, tied, "metric",
                      f"{metric} {table.loc[best, metric]:.4g} (spread {spread:.3g}); margin over the runner-up "
                      f"{margin} sd: told apart from every other trial")
    keys = {"metric": lambda label: (-table.loc[label, metric],),
            "defaults": lambda label: (changed[label], distance[label], -table.loc[label, metric]),
            "conservative": lambda label: (distance[label], -table.loc[label, metric])}[tie_break]
    chosen = min(tied, key=keys)
    rule = ("closest to the defaults" if changed[chosen] < changed[best] else
            "most conservative" if distance[chosen] < distance[best] else "metric's best")
    said = (f"{len(tied)} trials cannot be told apart: {metric}'s best and {len(tied) - 1} within {tie_margin:g} sd "
            f"of it by their paired draws (the runner-up by score is {margins[runner_up]:.2f} sd below): ")
    if tie_break == "metric":
        return Choice(chosen, best, margins, tied, rule, said + "kept the metric's best (tie_break: metric); "
                      "the tied trials are marked in the table: rerun them with more seeds before trusting one")
    return Choice(chosen, best, margins, tied, rule,
                  said + f"chose the {rule} of them (tie_break: {tie_break}; {changed[chosen]} setting(s) "
                  f"changed, designs {distance[chosen]:.2f} edits from the data)")


def settings_changed(table: pd.DataFrame, names: list[str], defaults: dict) -> pd.Series:
    """Per row, how many of the swept ``names`` differ from ``defaults`` (the base run's values; a missing
    value, None or NaN, equals only a missing default)."""
    def missing(value) -> bool:
        return value is None or (isinstance(value, float) and np.isnan(value))

    def differs(value, default) -> bool:
        if missing(value) or missing(default):
            return missing(value) != missing(default)
        if isinstance(value, float) or isinstance(default, float):
            try:
                return not np.isclose(float(value), float(default))
            except (TypeError, ValueError):
                return True
        return str(value) != str(default)

    return pd.Series({label: sum(differs(row[name], defaults.get(name)) for name in names)
                      for label, row in table.iterrows()}, dtype=int)
