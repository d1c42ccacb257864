"""Protein DMS tasks (avgfp, e4b, pab1): parsing against the wild type, BIB's offline split,
the approximate oracle's support rules, quality record and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bib_ray.alphabets import PROTEIN, encode
from bib_ray.errors import UserError
from bib_ray.tasks import load_task
from bib_ray.tasks.base import DesignStatus, OracleKind
from bib_ray.tasks.dms import SCANS, mutation_radius, parse_variant
from bib_ray.tasks.dms_oracle import train_dms_oracle


def scan_table(shared_data_dir: Path, name: str) -> pd.DataFrame:
    table = pd.read_csv(shared_data_dir / SCANS[name].file, sep="\t")
    return table[~table["variant"].str.contains(r"\*")]


@pytest.mark.parametrize("name,length,radius", [("avgfp", 237, 10), ("e4b", 102, 5), ("pab1", 75, 2)])
def test_dms_task_split_radius_and_oracle_kind(shared_data_dir, name, length, radius):
    task = load_task(name, shared_data_dir)
    table = scan_table(shared_data_dir, name)
    median = np.median(table["score"])
    assert task.length == length and task.alphabet == PROTEIN
    assert len(task.y) == int((table["score"] <= median).sum()) and task.y.max() <= median
    assert task.details["mutation_radius"] == radius
    assert task.oracle_kind is OracleKind.APPROXIMATE
    assert task.details["nonsense_variants_set_aside"] > 0
    assert task.score_range == (table["score"].min(), table["score"].max())


def test_offline_rows_are_the_variants_applied_to_the_wild_type(shared_data_dir):
    task = load_task("pab1", shared_data_dir)
    table = scan_table(shared_data_dir, "pab1")
    low = table[table["score"] <= np.median(table["score"])].iloc[0]
    sequence = list(SCANS["pab1"].wild_type)
    for token in low["variant"].split(","):
        sequence[int(token[1:-1]) - 126] = token[-1]
    matches = np.flatnonzero((task.x == encode(["".join(sequence)], PROTEIN)[0]).all(1))
    assert len(matches) == 1 and task.y[matches[0]] == pytest.approx(low["score"])


def test_oracle_support_rules(shared_data_dir):
    task = load_task("pab1", shared_data_dir)
    oracle = task.oracle
    wild_type = encode([SCANS["pab1"].wild_type], PROTEIN)[0]
    inside = task.x[:3]
    too_far = wild_type.copy()
    changed = np.flatnonzero(oracle.feature_index.max(1) >= 0)[:3]  # three positions the scan mutates
    for position in changed:
        too_far[position] = int(np.flatnonzero(oracle.feature_index[position] >= 0)[0])
    unseen = wild_type.copy()
    position, residue = np.argwhere((oracle.feature_index < 0) & (np.arange(20)[None] != wild_type[:, None]))[0]
    unseen[position] = residue
    result = oracle(np.stack([*inside, wild_type, too_far, unseen]))
    assert list(result.status) == [DesignStatus.OK.value] * 4 + [DesignStatus.UNKNOWN.value] * 2
    assert np.isfinite(result.scores[:4]).all() and np.isnan(result.scores[4:]).all()


def test_oracle_quality_is_recorded_and_useful(shared_data_dir):
    task = load_task("pab1", shared_data_dir)
    assert task.details["oracle_validation_rows"] > 1000
    assert task.details["oracle_validation_spearman"] > 0.8  # measured 0.91; a broken fit lands near 0


def test_oracle_training_is_deterministic():
    rng = np.random.default_rng(0)
    wild_type = rng.integers(0, 20, 30)
    variants = [np.unique(rng.integers(0, 30, rng.integers(1, 3))) * 20 + rng.integers(0, 20) for _ in range(400)]
    scores = np.array([len(v) + 0.1 * rng.standard_normal() for v in variants])
    first = train_dms_oracle(wild_type, variants, scores, 20, radius=2)
    second = train_dms_oracle(wild_type, variants, scores, 20, radius=2)
    probe = np.stack([wild_type] * 2)
    probe[1, variants[0] // 20] = variants[0] % 20
    np.testing.assert_array_equal(first(probe).scores, second(probe).scores)


def test_parse_variant_errors_name_the_row(tmp_path):
    scan = SCANS["pab1"]
    assert parse_variant("G126A,N127D", scan, 0, tmp_path) == [(0, PROTEIN.index("A")), (1, PROTEIN.index("D"))]
    assert parse_variant("N127*", scan, 0, tmp_path) == [(1, -1)]
    with pytest.raises(UserError, match="row 5: A126C does not match the pab1 wild type"):
        parse_variant("A126C", scan, 4, tmp_path)
    with pytest.raises(UserError, match="row 1: cannot read substitution 'G126'"):
        parse_variant("G126", scan, 0, tmp_path)


def test_mutation_radius_is_the_largest_count_with_one_percent_support():
    counts = np.array([1] * 50 + [2] * 40 + [3] * 9 + [4] * 1 + [5] * 0)
    assert mutation_radius(counts) == 4
    assert mutation_radius(np.array([1] * 1000 + [2] * 5)) == 1


def test_design_within_the_mutation_radius_is_scored(shared_data_dir, tmp_path):
    from bib_ray.cli import main

    out = tmp_path / "run"
    assert main(["design", "--task", "pab1", "--data-dir", str(shared_data_dir), "--steps", "10", "--designs", "16",
                 "--max-mutations", "2", "--local", "--quiet", "--out", str(out)]) == 0
    designs = pd.read_csv(out / "designs.csv")
    wild_type = encode([SCANS["pab1"].wild_type], PROTEIN)[0]
    distance = (encode(designs["sequence"].tolist(), PROTEIN) != wild_type).sum(1)
    assert distance.max() <= 2
    assert (designs["oracle_status"] == "ok").sum() > 0


def test_observed_letters_only_keeps_designs_inside_the_scan(shared_data_dir, tmp_path):
    """Without the mask (and with ``--support none``) some pab1 designs use unmeasured substitutions
    (unknown to the oracle); with it every design is built from letters the offline data shows."""
    from bib_ray.cli import main

    task = load_task("pab1", shared_data_dir)
    observed = task.observed_letters()
    assert observed.shape == (task.length, 20) and observed[np.arange(task.length), task.reference].all()
    assert observed[np.arange(task.length)[None, :], task.x].all() and not observed.all()
    statuses = {}
    for masked in (False, True):
        out = tmp_path / ("on" if masked else "off")
        switch = ["--support", "none"] + (["--observed-letters-only"] if masked else [])
        assert main(["design", "--task", "pab1", "--data-dir", str(shared_data_dir), "--steps", "15", "--designs",
                     "32", "--max-mutations", "2", "--method", "forward", "--lr", "0.5", "--local", "--quiet",
                     "--out", str(out)] + switch) == 0
        statuses[masked] = pd.read_csv(out / "designs.csv")["oracle_status"]
    assert (statuses[False] == "unknown").any()
    restricted = encode(pd.read_csv(tmp_path / "on" / "designs.csv")["sequence"].tolist(), PROTEIN)
    assert observed[np.arange(task.length)[None, :], restricted].all() and (statuses[True] == "ok").all()


def test_masked_letters_are_checked_and_never_chosen():
    import torch

    from bib_ray.core.design_variables import MASKED_LOGIT, init_logits, mask_logits
    from bib_ray.core.evolution import EvolutionProblem, EvolutionSettings, evolve
    from bib_ray.core.support import SupportConstraints

    allowed = np.ones((4, 3), dtype=bool)
    allowed[:, 2] = False
    logits = init_logits(torch.zeros(5, 4, dtype=torch.long), 3, torch.Generator().manual_seed(0))
    masked = mask_logits(logits, allowed)
    assert (masked[..., 2] == MASKED_LOGIT).all() and torch.equal(masked[..., :2], logits[..., :2])
    with pytest.raises(ValueError, match="not allowed"):
        mask_logits(init_logits(torch.full((1, 4), 2), 3, torch.Generator().manual_seed(0)), allowed)
    with pytest.raises(ValueError, match="does not match"):
        mask_logits(logits, allowed[:3])
    result = evolve(EvolutionProblem(np.zeros((8, 4), dtype=np.int64), 3, SupportConstraints(allowed)),
                    lambda c: (c == 2).sum(1) + (c == 1).sum(1) * 0.5, EvolutionSettings(rounds=20, population=8),
                    seed=0)
    assert not (result.final_codes == 2).any() and (result.final_codes == 1).any()
