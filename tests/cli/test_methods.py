"""The one method vocabulary: every method through ``bib-ray design`` on a user CSV, locally and on Ray."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from bib_ray.bench.suite import grid
from bib_ray.cli import main
from bib_ray.run.config import build_config
from bib_ray.core.methods import NTK_BACKBONE, Method
from bib_ray.core.optimizer import Mode
from bib_ray.core.support import SupportLevel
from bib_ray.run.constraints import task_support
from bib_ray.errors import UserError
from bib_ray.tasks import load_task

ALL = [method.value for method in Method]


@pytest.fixture(scope="module")
def user_csv(tmp_path_factory):
    """20 DNA rows of length 8, scored by their count of G."""
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), 8)) for _ in range(20)]
    path = tmp_path_factory.mktemp("data") / "mine.csv"
    path.write_text("sequence,score\n" + "".join(f"{s},{s.count('G')}\n" for s in sequences))
    return path


def design(user_csv, out, method: str, *extra: str) -> dict:
    code = main(["design", "--task", str(user_csv), "--method", method, "--steps", "3", "--designs", "4",
                 "--aux-epochs", "1", "--out", str(out), "--quiet", *extra])
    assert code == 0
    return json.loads((out / "summary.json").read_text())


def test_the_vocabulary_is_defined_once():
    assert ALL == ["bib", "bib+eta", "bidirectional", "forward", "forward+eta", "backward", "evolution", "bdi"]
    assert (Method.BIB.mode, Method.BIB.adaptive_eta) == (Mode.ADAPTIVE_GAMMA, False)
    assert (Method.BIB_ETA.mode, Method.BIB_ETA.adaptive_eta) == (Mode.ADAPTIVE_GAMMA, True)
    assert (Method.FORWARD_ETA.mode, Method.FORWARD_ETA.adaptive_eta) == (Mode.FORWARD, True)
    assert (Method.BDI.mode, Method.BACKWARD.mode) == (Mode.BIDIRECTIONAL, Mode.BACKWARD)
    assert Method.EVOLUTION.mode is None and not Method.EVOLUTION.is_gradient
    assert build_config({}).method is Method.BIB


def test_bdi_means_the_ntk_proxy():
    assert build_config({"method": "bdi"}).backbone == NTK_BACKBONE
    assert build_config({"method": "bib", "backbone": "ntk"}).uses_ntk_proxy
    with pytest.raises(UserError, match="method bdi runs on the NTK proxy"):
        build_config({"method": "bdi", "backbone": "tiny"})
    with pytest.raises(ValueError, match="does not run the gradient optimiser"):
        build_config({"method": "evolution"}).optimiser_settings()


def test_suite_grid_runs_bdi_on_the_ntk_and_other_methods_where_asked():
    assert grid(["tiny"], ["bib", "bdi"]) == {"tiny": ["bib"], NTK_BACKBONE: ["bdi"]}
    assert grid([NTK_BACKBONE], ["bib", "bdi"]) == {NTK_BACKBONE: ["bib", "bdi"]}


@pytest.mark.parametrize("method", ALL)
def test_every_method_designs_on_a_user_csv_locally(user_csv, tmp_path, method):
    summary = design(user_csv, tmp_path / method, method, "--local")
    assert summary["method"] == method
    designs = pd.read_csv(tmp_path / method / "designs.csv")
    assert len(designs) >= 1 and designs.sequence.str.fullmatch("[ACGT]{8}").all()
    assert summary["proxy"]["kind"] == "NTKProxy"  # the default backbone, ntk, and bdi's
    assert (summary["per_seed"][0]["final_gamma_mean"] is None) == (method == "evolution")


def test_bib_on_the_ntk_proxy_writes_an_artifact_that_scores_as_the_run_did(user_csv, tmp_path):
    from bib_ray.proxy.artifacts import load_proxy_artifact

    summary = design(user_csv, tmp_path / "ntk", "bib", "--backbone", "ntk", "--local")
    assert summary["proxy"]["kind"] == "NTKProxy" and summary["method"] == "bib" and summary["lm_id"] == "ntk"
    assert summary["hyperparameters"]["backbone"] == "ntk" and summary["artifact"] is not None
    loaded = load_proxy_artifact(tmp_path / "ntk" / "proxy")
    assert (loaded.kind, loaded.model_id, loaded.meta["kernel"]["depth"]) == ("ntk", "ntk", 5)
    designs = pd.read_csv(tmp_path / "ntk" / "designs.csv")
    scores = loaded.score(designs.sequence.tolist())
    np.testing.assert_allclose(scores["proxy_score"], designs.proxy_score, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scores["aux_mean"], designs.aux_mean, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["bib", "evolution", "bdi"])
def test_methods_on_ray_match_the_local_run(local_ray, user_csv, tmp_path, method):
    on_ray = design(user_csv, tmp_path / "ray", method, "--shards", "1")
    local = design(user_csv, tmp_path / "local", method, "--local")
    assert on_ray["method"] == local["method"] == method
    ray_designs = pd.read_csv(tmp_path / "ray" / "designs.csv")
    local_designs = pd.read_csv(tmp_path / "local" / "designs.csv")
    assert ray_designs.sequence.tolist() == local_designs.sequence.tolist()


def test_evolution_keeps_to_the_support(user_csv, tmp_path):
    design(user_csv, tmp_path / "evo", "evolution", "--local", "--max-mutations", "1")
    task = load_task(str(user_csv))
    designs = pd.read_csv(tmp_path / "evo" / "designs.csv")
    codes = np.stack([[task.alphabet.index(c) for c in s] for s in designs.sequence])
    letters_and_pairs = dataclasses.replace(task_support(task, SupportLevel.PAIRS, None), max_edits=None)
    assert letters_and_pairs.satisfied(codes).all()
    assert (designs.hamming_to_start <= 1).all()
