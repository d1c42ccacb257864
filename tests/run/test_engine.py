"""The run written once: ``run_design`` sequences the stages over any executor, and its hook and aux
reuse behave as documented."""

from __future__ import annotations

import numpy as np
import pytest

from bib_ray.run.config import build_config
from bib_ray.run.engine import run_design
from bib_ray.run.executor import LocalExecutor
from bib_ray.tasks import load_task

SMALL = "ehrlich:states=8,length=12,motifs=2,motif_length=3,offline=200"


class RecordingExecutor(LocalExecutor):
    """A LocalExecutor that records which stage ran with which seeds."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[int] | int]] = []

    def fit(self, task, settings):
        self.calls.append(("fit", 0))
        return super().fit(task, settings)

    def train_aux(self, fitted, settings, seeds):
        self.calls.append(("train_aux", list(seeds)))
        return super().train_aux(fitted, settings, seeds)

    def run_trajectories(self, fitted, auxes, settings, logits, batch_size, on_step=None):
        self.calls.append(("run_trajectories", len(logits)))
        return super().run_trajectories(fitted, auxes, settings, logits, batch_size, on_step)

    def evolve(self, fitted, problem, settings, seeds, batch_size):
        self.calls.append(("evolve", list(seeds)))
        return super().evolve(fitted, problem, settings, seeds, batch_size)

    def score(self, fitted, auxes, codes, batch_size):
        self.calls.append(("score", len(codes)))
        return super().score(fitted, auxes, codes, batch_size)


@pytest.mark.parametrize("method, branch", [("bib", "run_trajectories"), ("evolution", "evolve")])
def test_every_stage_runs_once_for_all_seeds(method, branch):
    config = build_config(dict(task=SMALL, method=method, steps=3, designs=6, seeds=[0, 1, 2], aux_epochs=1))
    executor = RecordingExecutor()
    run = run_design(config, load_task(SMALL), executor)
    expected_branch = (branch, 3) if branch == "run_trajectories" else (branch, [0, 1, 2])
    assert executor.calls == [("fit", 0), ("train_aux", [0, 1, 2]), expected_branch, ("score", 3)]
    assert [result.seed for result in run.seeds] == [0, 1, 2]
    assert len(run.designs) == 18 and set(run.designs.seed) == {0, 1, 2}


def test_step_hook_sees_every_trajectory_of_every_seed_after_every_step():
    config = build_config(dict(task=SMALL, method="forward", steps=4, designs=6, seeds=[0, 1], aux_epochs=1,
                               trajectory_batch=4))  # the hook still sees all 6 at once
    seen = []
    run = run_design(config, load_task(SMALL), LocalExecutor(), on_step=lambda seed, step, logits: seen.append(
        (seed, step, tuple(logits.shape))))
    assert seen == [(seed, step, (6, 12, 8)) for seed in (0, 1) for step in range(4)]
    hooked = run_design(config, load_task(SMALL), LocalExecutor())
    np.testing.assert_array_equal(run.seeds[1].trajectory.final_codes, hooked.seeds[1].trajectory.final_codes)


def test_reused_aux_ensembles_are_shared_between_runs_on_one_proxy():
    task = load_task(SMALL)
    config = build_config(dict(task=SMALL, steps=2, designs=4, aux_epochs=1))
    sharing, fresh = LocalExecutor(reuse_aux=True), LocalExecutor()
    fitted = sharing.fit(task, config.proxy_settings())
    first = run_design(config, task, sharing, fitted=fitted).seeds[0].aux
    forward = build_config(dict(task=SMALL, steps=2, designs=4, aux_epochs=1, method="forward"))
    again = run_design(forward, task, sharing, fitted=fitted).seeds[0].aux
    assert again is first
    assert run_design(config, task, fresh, fitted=fitted).seeds[0].aux is not first
