"""Positions users protect: every method keeps them, locally and on Ray, in the designs and in the batch;
bad position specs are one error line before anything runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bib_ray.cli import main
from bib_ray.core.methods import Method

ALL = [method.value for method in Method]
FIXED = "1-3,7"  # 1-based: positions 0, 1, 2 and 6


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory):
    """40 DNA rows of length 8, scored by their count of G (so designs want G everywhere)."""
    rng = np.random.default_rng(1)
    sequences = {"".join(rng.choice(list("ACGT"), 8)) for _ in range(60)}
    path = tmp_path_factory.mktemp("data") / "mine.csv"
    path.write_text("sequence,score\n" + "".join(f"{s},{s.count('G')}\n" for s in sorted(sequences)[:40]))
    return path


def kept(table: pd.DataFrame) -> bool:
    fixed = [0, 1, 2, 6]
    return all(a[i] == b[i] for a, b in zip(table.sequence, table.start_sequence) for i in fixed)


def design(user_csv, out, method: str, *extra: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    backbone = [] if method == "bdi" else ["--backbone", "tiny"]  # tiny: backward moves within 6 steps on it
    code = main(["design", "--task", str(user_csv), "--method", method, *backbone, "--steps", "6", "--designs", "8",
                 "--aux-epochs", "1", "--batch", "12", "--fixed", FIXED, "--support", "none", "--out", str(out),
                 "--quiet", *extra])
    assert code == 0
    return pd.read_csv(out / "designs.csv"), pd.read_csv(out / "batch.csv")


@pytest.mark.parametrize("method", ALL)
def test_every_method_keeps_fixed_positions_locally(user_csv, tmp_path, method):
    designs, batch = design(user_csv, tmp_path / method, method, "--local")
    assert kept(designs) and kept(batch) and len(batch)
    moved = [a != b for a, b in zip(designs.sequence, designs.start_sequence)]
    assert any(moved), "the other positions still change"
    summary = json.loads((tmp_path / method / "summary.json").read_text())
    assert summary["fixed_positions"] == [1, 2, 3, 7]
    if summary["artifact"] is not None:
        meta = json.loads((tmp_path / method / "proxy" / "proxy.json").read_text())
        assert meta["fixed_positions"] == [1, 2, 3, 7]


@pytest.mark.parametrize("method", ALL)
def test_every_method_keeps_fixed_positions_on_ray(local_ray, user_csv, tmp_path, method):
    designs, batch = design(user_csv, tmp_path / method, method, "--shards", "2")
    assert kept(designs) and kept(batch) and len(batch)


def test_mutable_is_the_complement_of_fixed(user_csv, tmp_path):
    designs, _ = design(user_csv, tmp_path / "fixed", "bib", "--local")
    out = tmp_path / "mutable"
    assert main(["design", "--task", str(user_csv), "--steps", "6", "--designs", "8", "--aux-epochs", "1",
                 "--batch", "12", "--mutable", "4-6,8", "--support", "none", "--out", str(out), "--quiet",
                 "--local", "--backbone", "tiny"]) == 0
    assert pd.read_csv(out / "designs.csv").sequence.tolist() == designs.sequence.tolist()


@pytest.mark.parametrize("flags, message", [
    (["--fixed", "0-3"], "--fixed '0-3': '0-3': positions start at 1"),
    (["--fixed", "2-9"], "--fixed '2-9': position 9 is past the end of the designs (length 8"),
    (["--fixed", "1-8"], "--fixed '1-8' leaves no position to mutate"),
    (["--mutable", "3,x"], "--mutable '3,x': 'x' is not a position"),
    (["--fixed", "1", "--mutable", "2"], "give --fixed or --mutable, not both"),
    (["--exclude", "/nonexistent.fasta"], "--exclude /nonexistent.fasta: no such file"),
])
def test_bad_position_specs_are_one_line_before_ray(user_csv, tmp_path, capsys, flags, message):
    assert main(["design", "--task", str(user_csv), "--out", str(tmp_path / "o"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bib-ray: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
