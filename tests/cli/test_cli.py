"""End-to-end CLI runs, their outputs, the proxy artifact, and readable errors for bad arguments."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bib_ray.proxy.artifacts import load_proxy_artifact
from bib_ray.cli import main
from bib_ray.specs import parse_seeds
from bib_ray.errors import UserError
from tests.helpers import ensure_local_ray


@pytest.fixture(scope="module")
def tfbind_run(tmp_path_factory, shared_data_dir):
    """The default path: `bib-ray design` on (the tests') local Ray with two shard actors."""
    ensure_local_ray()
    out = tmp_path_factory.mktemp("run") / "tfbind8-r"
    code = main(["design", "--task", "tfbind8-r", "--data-dir", str(shared_data_dir), "--steps", "6",
                 "--designs", "16", "--seeds", "0,1", "--method", "bib+eta",
                 "--aux-epochs", "2", "--shards", "2", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_run_directory_contents(tfbind_run):
    names = {p.name for p in tfbind_run.iterdir()}
    assert {"designs.csv", "designs.fasta", "summary.json", "history.csv", "score_vs_step.png",
            "gamma_eta_vs_step.png", "proxy"} <= names
    designs = pd.read_csv(tfbind_run / "designs.csv")
    assert len(designs) == 32 and set(designs.seed) == {0, 1}
    assert designs.sequence.str.fullmatch("[ACGT]{8}").all()
    assert {"proxy_score", "aux_mean", "aux_std", "oracle_score", "oracle_status", "normalised_score",
            "hamming_to_start", "hamming_to_offline"} <= set(designs.columns)
    assert (tfbind_run / "designs.fasta").read_text().count(">") == 32
    for png in ("score_vs_step.png", "gamma_eta_vs_step.png"):
        assert (tfbind_run / png).read_bytes()[:4] == b"\x89PNG"


def test_summary_reports_scores_and_identity(tfbind_run):
    summary = json.loads((tfbind_run / "summary.json").read_text())
    assert summary["task"]["name"] == "tfbind8-r" and summary["task"]["oracle_kind"] == "exact"
    assert summary["method"] == "bib+eta" and summary["lm_id"] == "ntk"  # the default backbone
    assert summary["proxy"]["kind"] == "NTKProxy" and summary["timings"]["kernel_on_shards_s"] > 0
    assert summary["seeds"] == [0, 1] and summary["hyperparameters"]["steps"] == 6
    designs = pd.read_csv(tfbind_run / "designs.csv")
    for seed in summary["per_seed"]:
        rows = designs[designs.seed == seed["seed"]]
        assert seed["oracle"]["p100"] == pytest.approx(rows.normalised_score.max())
        assert seed["oracle"]["p50"] == pytest.approx(np.percentile(rows.normalised_score, 50))
    p100 = [s["oracle"]["p100"] for s in summary["per_seed"]]
    assert summary["scores"]["p100"]["mean"] == pytest.approx(np.mean(p100))
    assert summary["versions"]["torch"].startswith("2.13.0")
    assert summary["timings"]["embed_offline_s"] > 0 and summary["timings"]["shards"] == 2
    history = pd.read_csv(tfbind_run / "history.csv")
    assert len(history) == 12 and {"proxy_score", "gamma", "eta", "aux_score"} <= set(history.columns)


def test_artifact_reproduces_design_scores(tfbind_run):
    loaded = load_proxy_artifact(tfbind_run / "proxy")
    designs = pd.read_csv(tfbind_run / "designs.csv")
    seed0 = designs[designs.seed == 0]
    scores = loaded.score(seed0.sequence.tolist())
    np.testing.assert_allclose(scores["proxy_score"], seed0.proxy_score, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(scores["aux_mean"], seed0.aux_mean, rtol=1e-5, atol=1e-7)
    assert len(loaded.sha256) == 64 and loaded.meta["task"]["alphabet"] == "ACGT"
    assert not list((tfbind_run / "proxy").glob("*.pkl")) and not list((tfbind_run / "proxy").glob("*.pt"))


def test_artifact_refuses_a_different_backbone(tfbind_run, tmp_path):
    import shutil

    copy = tmp_path / "proxy"
    shutil.copytree(tfbind_run / "proxy", copy)
    meta = json.loads((copy / "proxy.json").read_text())
    meta["backbone"]["spec"] = "tiny:seed=7"
    (copy / "proxy.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="does not reproduce"):
        load_proxy_artifact(copy)


def test_user_file_run_says_no_ground_truth(tmp_path, capsys):
    rows = ["sequence,score"] + [f"{s},{s.count('G')}" for s in
                                 ("ACGTAC", "GGGTAC", "ACGGGC", "TTTTAC", "ACGTGG", "CCCCAA", "GAGAGA", "TGCATG")]
    data = tmp_path / "mine.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["design", "--task", str(data), "--steps", "3", "--designs", "4", "--method", "forward",
                 "--aux-epochs", "1", "--out", str(out), "--quiet", "--local"]) == 0
    assert "no ground truth available" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scores"] == {"ground_truth": "no ground truth available: designs are scored by the proxy only"}
    assert "oracle_score" not in pd.read_csv(out / "designs.csv").columns


def test_design_notes_an_edit_limit_past_the_scans_mutation_radius(tmp_path, capsys):
    rows = ["mutant,mutated_sequence,DMS_score", "A1C,CKLMW,0.5", "K2R:L3A,ARAMW,1.0", "M4W,AKLWW,-0.2",
            "A1D,DKLMW,0.1", "K2E,AELMW,0.3", "L3V:W5F,AKVMF,0.9", "M4L,AKLLW,0.2", "W5Y,AKLMY,0.4"]
    data = tmp_path / "scan.csv"
    data.write_text("\n".join(rows) + "\n")
    common = ["design", "--task", str(data), "--steps", "2", "--designs", "4", "--method", "forward",
              "--aux-epochs", "1", "--quiet", "--local"]
    assert main([*common, "--max-mutations", "3", "--out", str(tmp_path / "k3")]) == 0
    assert "max_mutations 3 exceeds the 2 substitution(s)" in capsys.readouterr().err
    assert main([*common, "--max-mutations", "2", "--out", str(tmp_path / "k2")]) == 0
    assert "exceeds" not in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["design", "--local", "--steps", "0"], "steps: Input should be greater than or equal to 1"),
    (["design", "--local", "--method", "sideways"], "method: Input should be 'bib'"),
    (["design", "--local", "--mode", "forward"], "--mode: replaced by --method, one of bib, bib+eta"),
    (["design", "--local", "--adaptive-eta"], "--adaptive-eta: replaced by --method"),
    (["design", "--local", "--method", "bdi", "--backbone", "tiny"], "method bdi runs on the NTK proxy"),
    (["design", "--local", "--seeds", "a,b"], "--seeds 'a,b'"),
    (["design", "--local", "--seeds", "1,1"], "seeds must be distinct"),
    (["design", "--local", "--task", "nosuch"], "unknown task 'nosuch'"),
    (["design", "--local", "--backbone", "gpt5"], "unknown backbone 'gpt5'"),
    (["design", "--local", "--device", "tpu"], "device 'tpu'"),
    (["design", "--local", "--config", "/nonexistent.yaml"], "does not exist"),
    (["design", "--shards", "0"], "shards: Input should be greater than or equal to 1"),
    (["sweep", "--config", "/nonexistent.yaml"], "does not exist"),
    (["bench", "--methods", "bib,magic"], "unknown methods ['magic']"),
])
def test_bad_arguments_are_readable(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("BIB_RAY_DATA", raising=False)
    assert main(argv + ["--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bib-ray: error:") and message in err and "Traceback" not in err


def test_yaml_config_with_flag_override(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("task: ehrlich:states=6,length=12,motifs=1,motif_length=3,offline=200\n"
                      "steps: 50\ndesigns: 4\nmethod: bidirectional\naux_epochs: 1\n")
    out = tmp_path / "o"
    assert main(["design", "--config", str(config), "--steps", "2", "--out", str(out), "--quiet", "--local"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hyperparameters"]["steps"] == 2 and summary["method"] == "bidirectional"
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    assert main(["design", "--config", str(bad), "--out", str(out), "--quiet"]) == 2
    old = tmp_path / "old.yaml"
    old.write_text("mode: forward\nadaptive_eta: true\n")
    capsys.readouterr()
    assert main(["design", "--config", str(old), "--out", str(out), "--quiet", "--local"]) == 2
    assert "mode and adaptive_eta: replaced by method (--method / method:)" in capsys.readouterr().err


def test_steps_default_to_the_references_t_for_the_alphabet(tmp_path):
    """Unset --steps: 25 on a protein-like alphabet (protein/BIB.py), as recorded and as run."""
    out = tmp_path / "o"
    assert main(["design", "--task", "ehrlich:states=6,length=12,motifs=1,motif_length=3,offline=200",
                 "--designs", "4", "--aux-epochs", "1", "--out", str(out), "--quiet", "--local"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hyperparameters"]["steps"] == 25
    assert len(pd.read_csv(out / "history.csv")) == 25


def test_parse_seeds():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]


def test_module_entry_point_default_job_and_listing(tmp_path):
    """`python -m bib_ray.cli` runs (small) on the embedded default, Ehrlich + tiny backbone, with no data dir."""
    listing = subprocess.run([sys.executable, "-m", "bib_ray.cli", "tasks"], capture_output=True, text=True)
    assert listing.returncode == 0 and "tfbind8-r" in listing.stdout
    run = subprocess.run([sys.executable, "-m", "bib_ray.cli", "design", "--steps", "3", "--designs", "8",
                          "--aux-epochs", "1", "--out", str(tmp_path / "d"), "--quiet"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert "task ehrlich" in run.stdout and "closed-form oracle" in run.stdout
    for chatter in ("Token authentication is enabled", "Started a local Ray instance"):  # quiet by default ...
        assert chatter not in run.stderr, run.stderr
    assert (tmp_path / ".ray" / "auth_token").is_file()  # ... and Ray still generated its token: auth is on


def test_output_cut_off_by_its_reader_is_not_a_traceback():
    """`| true` closes the pipe before the CLI (a second of imports) writes: every write meets EPIPE."""
    listing = subprocess.run(f"{sys.executable} -m bib_ray.cli tasks | true", shell=True, capture_output=True,
                             text=True)
    assert listing.stderr == ""


def test_a_second_design_into_the_same_out_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["design", "--task", "ehrlich:states=6,length=12,motifs=1,motif_length=3,offline=200", "--steps", "2",
             "--designs", "4", "--aux-epochs", "1", "--local", "--quiet", "--out", str(out)]
    assert main(flags) == 0
    first = (out / "designs.csv").read_bytes()
    capsys.readouterr()
    assert main(flags + ["--seeds", "1"]) == 2
    assert "holds an earlier run's designs; pass --overwrite" in capsys.readouterr().err
    assert (out / "designs.csv").read_bytes() == first
    assert main(flags + ["--seeds", "1", "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["seeds"] == [1]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "lab.txt").write_text("keep me")
    assert main(flags[:-1] + [str(other), "--overwrite"]) == 2
    assert "holds no bib-ray run" in capsys.readouterr().err and (other / "lab.txt").read_text() == "keep me"


def test_bench_is_a_subcommand_and_the_suite_does_not_import_the_cli(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0 and "--preset" in capsys.readouterr().out
    probe = subprocess.run([sys.executable, "-c", "import sys, bib_ray.bench.suite; print('bib_ray.cli' in sys.modules)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "False", probe.stderr
