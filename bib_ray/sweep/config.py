"""Validated configuration of a Tune sweep; ``tune_configs/*.yaml`` map onto it one to one.

    name: quick
    base: {task: tfbind8-r, steps: 40, designs: 32, seeds: [0]}   # DesignConfig fields of every trial
    space:                                                        # DesignConfig field -> distribution
      lr: {loguniform: [0.01, 0.3]}
      method: {choice: [bidirectional, bib, bib+eta]}
    search: {algorithm: random, num_samples: 8, max_concurrent: 2, seed: 0}
    scheduler: {kind: asha, grace_period: 2, reduction_factor: 2}
    metric: expected-max     # an offline selection metric (bib_ray.sweep.selection.METRICS); never the oracle
    selection: {pessimism: 1.0}   # optional SelectionSettings fields of the metric's evaluators
    report_every: 10         # optimisation steps between reports (ASHA's time unit)
    resources: {cpu: 1, gpu: 0}
    trial_retries: 3         # a failed trial (e.g. its node lost) runs again, from its last checkpoint if any
    tie_margin: 1.0          # trials within this many sd of the metric's best cannot be told apart from it
    tie_break: metric        # which tied trial goes to best/: metric (its best), defaults or conservative
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bib_ray.core.methods import NTK_BACKBONE
from bib_ray.run.config import DesignConfig, reference_steps
from bib_ray.validation import load_yaml_mapping, parse_model
from bib_ray.sweep.selection import DEFAULT_METRIC, METRIC_NAMES, SelectionSettings

TUNABLE = ("lr", "steps", "target", "beta_scale", "gamma_init", "gamma_lr", "eta_meta_lr", "method",
           "aux_members", "aux_hidden", "aux_epochs", "backbone", "support", "max_mutations")


class Distribution(BaseModel):
    """Exactly one of: choice / grid (lists of values), uniform / loguniform / randint ([low, high])."""

    model_config = ConfigDict(extra="forbid")

    choice: list[Any] | None = None
    grid: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        given = [k for k in ("choice", "grid", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of choice, grid, uniform, loguniform, randint")
        bounds = getattr(self, given[0])
        if given[0] in ("uniform", "loguniform", "randint") and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]} bounds must satisfy low < high")
        if given[0] == "loguniform" and bounds[0] <= 0:
            raise ValueError("loguniform bounds must be positive")
        if given[0] in ("choice", "grid") and not bounds:
            raise ValueError(f"{given[0]} needs at least one value")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("choice", "grid", "uniform", "loguniform", "randint") if getattr(self, k) is not None)

    def extreme_values(self) -> list[Any]:
        """Values to validate against DesignConfig: every listed value, or both bounds."""
        values = getattr(self, self.kind)
        return list(values)


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["random", "grid", "optuna", "hyperopt"] = "random"
    num_samples: int = Field(8, ge=1, description="trials (random/optuna/hyperopt) or repeats of the grid")
    max_concurrent: int = Field(2, ge=1)
    seed: int = 0


class SchedulerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="reports before a trial can be stopped")
    reduction_factor: float = Field(2.0, gt=1)


class TrialResources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class SweepConfig(BaseModel):
    """A sweep: the shared design settings, the search space, the search and the metric."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    base: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Distribution]
    search: SearchSettings = SearchSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    metric: str = Field(DEFAULT_METRIC, description="offline selection metric, one of "
                        f"{', '.join(METRIC_NAMES)} (bib_ray.sweep.selection)")
    selection: dict[str, bool | int | float] = Field(default_factory=dict, description="SelectionSettings fields")
    holdout_fraction: float = Field(0.2, gt=0, lt=0.9)
    report_every: int = Field(10, ge=1)
    resources: TrialResources = TrialResources()
    trial_retries: int = Field(3, ge=0, description="times a failed trial (e.g. its node was lost) is run again, "
                               "from its last checkpoint where it has one (Tune's FailureConfig.max_failures)")
    tie_margin: float = Field(1.0, ge=0, description="trials whose paired metric draws put the best within this "
                              "many standard deviations of them cannot be told apart from it (said in the "
                              "table and the printout; bib_ray.sweep.choice)")
    tie_break: Literal["metric", "defaults", "conservative"] = Field(
        "metric", description="which of the tied trials the sweep takes: the metric's best (measured best on "
        "the selection benchmark), the one closest to the defaults, or the most conservative")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRIC_NAMES:
            raise ValueError(f"unknown selection metric {metric!r}; choose from {', '.join(METRIC_NAMES)}")
        return metric

    @model_validator(mode="after")
    def _check(self) -> "SweepConfig":
        unknown = sorted(set(self.space) - set(TUNABLE))
        if unknown:
            raise ValueError(f"space: {unknown} cannot be tuned; tunable fields are {list(TUNABLE)}")
        overlap = sorted(set(self.space) & set(self.base))
        if overlap:
            raise ValueError(f"{overlap} appear in both base and space")
        base = DesignConfig.model_validate(self.base)
        if len(base.seeds) != 1:
            raise ValueError("a sweep trial runs one seed: give base.seeds a single value")
        for name, distribution in self.space.items():  # every value the space can take makes a valid run
            for value in distribution.extreme_values():
                DesignConfig.model_validate({**self.base, name: value})
        self.selection_settings()  # unknown fields and bad values fail here
        if self.metric == "top-rank" and NTK_BACKBONE in self.trial_backbones():
            raise ValueError("metric top-rank refits the linear head of an LM, which backbone ntk (the NTK proxy) "
                             "has none of: pick another metric or leave ntk out of the space")
        if self.search.algorithm == "grid" and any(d.kind != "grid" for d in self.space.values()):
            raise ValueError("search.algorithm grid needs every space entry to be a grid")
        if self.search.algorithm != "grid" and any(d.kind == "grid" for d in self.space.values()):
            raise ValueError("grid entries need search.algorithm: grid")
        return self

    def selection_settings(self) -> SelectionSettings:
        """The metric's evaluator settings (``selection:``)."""
        try:
            return SelectionSettings(**self.selection)
        except TypeError as error:
            raise ValueError(f"selection: {error}; fields are {list(SelectionSettings.__dataclass_fields__)}") \
                from None

    def trial_backbones(self) -> list[str]:
        """The backbone specs the trials use, as their configs spell them (``DesignConfig`` canonicalises each,
        adds the base's options, e.g. trust_remote_code, and makes method ``bdi`` run on ``ntk``)."""
        choices = [[{name: value} for value in self.space[name].extreme_values()] if name in self.space else [{}]
                   for name in ("backbone", "method")]
        return list(dict.fromkeys(DesignConfig.model_validate({**self.base, **backbone, **method}).backbone
                                  for backbone in choices[0] for method in choices[1]))

    def base_config(self) -> DesignConfig:
        return DesignConfig.model_validate(self.base)

    def edit_limits(self) -> list[int | None]:
        """Every ``max_mutations`` a trial may get: the space's values or bounds when it sweeps K, else the base's."""
        if "max_mutations" in self.space:
            return list(self.space["max_mutations"].extreme_values())
        return [self.base_config().max_mutations]

    def resolved_for(self, alphabet: str) -> "SweepConfig":
        """This sweep with ``base.steps`` filled in for a task with these letters when neither ``base`` nor
        ``space`` sets it (``DesignConfig.resolved_for``)."""
        if "steps" in self.base or "steps" in self.space:
            return self
        return self.model_copy(update={"base": {**self.base, "steps": reference_steps(alphabet)}})

    def max_reports(self) -> int:
        """Reports of the longest trial (ASHA's max_t); the sweep must be resolved for its task."""
        steps = self.space.get("steps")
        longest = max(steps.extreme_values()) if steps is not None else self.base_config().resolved_steps
        return math.ceil(longest / self.report_every)


def load_sweep_config(path: str) -> SweepConfig:
    return parse_model(SweepConfig, load_yaml_mapping(path), f"{path}: invalid sweep configuration")
