"""A task's support constraints in a run: the decode keeps designs feasible, the default edit limit, and
how unscorable designs count."""

from __future__ import annotations

import numpy as np
import pytest

from bib_ray.alphabets import PROTEIN, encode
from bib_ray.core.support import SupportLevel
from bib_ray.run.config import DesignConfig
from bib_ray.run.constraints import beyond_radius_note, edit_base, task_support
from bib_ray.run.engine import run_design
from bib_ray.run.executor import LocalExecutor
from bib_ray.tasks import load_task
from bib_ray.tasks.base import Task
from bib_ray.tasks.evaluation import evaluate_with_oracle


def test_design_run_keeps_ehrlich_designs_feasible():
    """End to end: with the default support (pairs) every decoded Ehrlich design is feasible and
    obeys the learned constraints; the summary reports both kinds of percentile."""
    config = DesignConfig(task="ehrlich:states=8,length=16,motifs=2,motif_length=4,offline=300", steps=10,
                          designs=16, method="forward", lr=0.5, aux_epochs=2)
    task = load_task(config.task)
    run = run_design(config, task, LocalExecutor())
    result = run.seeds[0]
    summary = result.oracle_summary
    assert summary["infeasible"] == 0 and summary["ok"] == 16
    assert {"p100", "p50", "p100_scored", "p50_scored"} <= set(summary)
    constraints = task_support(run.fitted.task, config.support, config.max_mutations)
    final = result.trajectory.final_codes
    assert constraints.satisfied(final, edit_base(run.fitted.task, result.trajectory.start_codes)).all()


def test_unscorable_designs_count_as_the_minimum(shared_data_dir):
    task = load_task("gb1", shared_data_dir)
    unmeasured = np.flatnonzero(np.isnan(task.oracle.table))[:3]
    codes = np.concatenate([(unmeasured[:, None] // 20 ** np.arange(3, -1, -1)) % 20, encode(["VDGV"], PROTEIN)])
    summary = evaluate_with_oracle(task, codes).summary
    assert summary["unknown"] == 3 and summary["p50"] == 0.0  # three of four at the task's minimum
    assert summary["p50_scored"] == summary["p100_scored"] == summary["p100"] == pytest.approx(task.normalise(1.0))


def test_default_edit_limit():
    plain = Task(name="t", alphabet="ACGT", x=np.zeros((3, 10), dtype=np.int64), y=np.arange(3.0))
    scan = Task(name="s", alphabet="ACGT", x=np.zeros((3, 10), dtype=np.int64), y=np.arange(3.0),
                reference=np.zeros(10, dtype=np.int64), details={"mutation_radius": 2})
    assert task_support(plain, SupportLevel.PAIRS, None).max_edits == 4  # ceil(10 / 3)
    assert task_support(scan, SupportLevel.LETTERS, None).max_edits == 2  # the scan's radius
    assert task_support(plain, SupportLevel.PAIRS, 6).max_edits == 6
    assert task_support(plain, SupportLevel.NONE, None).max_edits is None


def test_an_edit_limit_past_the_datas_mutation_radius_gets_a_note():
    plain = Task(name="t", alphabet="ACGT", x=np.zeros((3, 10), dtype=np.int64), y=np.arange(3.0))
    scan = Task(name="s", alphabet="ACGT", x=np.zeros((3, 10), dtype=np.int64), y=np.arange(3.0),
                reference=np.zeros(10, dtype=np.int64), details={"mutation_radius": 2})
    note = beyond_radius_note(scan, [None, 1, 4, 3])
    assert note is not None and "max_mutations 3, 4 exceeds the 2 substitution(s)" in note and "of s reach" in note
    assert beyond_radius_note(scan, [None, 1, 2]) is None  # within the radius, or the task's default
    assert beyond_radius_note(plain, [9]) is None  # no wild type, no radius
