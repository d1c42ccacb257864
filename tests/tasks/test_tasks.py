"""Tasks: splits, oracles on known sequences, unknown / infeasible handling, data-directory rules."""

import shutil

import numpy as np
import pytest

from bib_ray.alphabets import DNA, PROTEIN, encode
from bib_ray.errors import UserError
from bib_ray.tasks.evaluation import evaluate_with_oracle
from bib_ray.tasks import OracleKind, load_task
from bib_ray.tasks.lookup_oracle import sequence_index

COMPLEMENT = np.array([3, 2, 1, 0])  # A<->T, C<->G in ACGT order


def revcomp(codes):
    return COMPLEMENT[codes[:, ::-1]]


@pytest.fixture(scope="module")
def tfbind8(shared_data_dir):
    return load_task("tfbind8", shared_data_dir)


def test_tfbind8_standard_split(tfbind8, shared_data_dir):
    raw_y = np.load(shared_data_dir / "tfbind8" / "tf_bind_8-y-0.npy").reshape(-1)
    assert len(tfbind8.y) == 32898
    assert tfbind8.y.max() <= np.percentile(raw_y, 50)
    assert tfbind8.score_range == (raw_y.min(), raw_y.max())
    assert tfbind8.oracle.kind is OracleKind.EXACT and tfbind8.details["oracle_coverage"] == 1.0


def test_tfbind8_oracle_is_the_table(tfbind8, shared_data_dir):
    raw_x = np.load(shared_data_dir / "tfbind8" / "tf_bind_8-x-0.npy")
    raw_y = np.load(shared_data_dir / "tfbind8" / "tf_bind_8-y-0.npy").reshape(-1)
    rows = np.random.default_rng(0).choice(len(raw_y), 500, replace=False)
    result = tfbind8.oracle(raw_x[rows])
    np.testing.assert_allclose(result.scores, raw_y[rows])
    assert set(result.status) == {"ok"}
    # known rows by hand: the best 8-mer of the offline set, as a string
    best = tfbind8.x[np.argmax(tfbind8.y)]
    assert tfbind8.oracle(best[None]).scores[0] == pytest.approx(tfbind8.y.max())


def test_tfbind8_reverse_complement_symmetry(tfbind8):
    codes = np.random.default_rng(1).integers(0, 4, (1000, 8))
    np.testing.assert_array_equal(tfbind8.oracle(codes).scores, tfbind8.oracle(revcomp(codes)).scores)


def test_tfbind8_r_split_and_starts(shared_data_dir):
    task = load_task("tfbind8-r", shared_data_dir)
    full = load_task("tfbind8", shared_data_dir)
    assert len(task.y) == 5000
    assert task.y.max() <= np.sort(full.oracle.table)[5000]
    starts = task.starting_designs(128)
    np.testing.assert_allclose(np.sort(task.oracle(starts).scores), np.sort(task.y)[-128:])


def test_tfbind10_oracle_and_splits(shared_data_dir):
    table = np.load(shared_data_dir / "tfbind10" / "tfbind10_pho4_table.npy")
    task = load_task("tfbind10-r", shared_data_dir)
    assert len(task.y) == 5000 and task.length == 10
    codes = np.random.default_rng(2).integers(0, 4, (300, 10))
    np.testing.assert_allclose(task.oracle(codes).scores, table[sequence_index(codes, 4)])
    assert task.oracle(encode(["AAAAAAAAAA"], DNA)).scores[0] == pytest.approx(table[0])
    assert task.score_range == pytest.approx((table.min(), table.max()))


def test_design_bench_layout_is_a_data_dir(tmp_path, shared_data_dir):
    folder = tmp_path / "tf_bind_8-SIX6_REF_R1"
    folder.mkdir()
    for name in ("tf_bind_8-x-0.npy", "tf_bind_8-y-0.npy"):
        shutil.copy(shared_data_dir / "tfbind8" / name, folder / name)
    task = load_task("tfbind8-r", tmp_path)
    assert len(task.y) == 5000


def test_data_dir_from_environment(monkeypatch, shared_data_dir):
    monkeypatch.setenv("BIB_RAY_DATA", str(shared_data_dir))
    assert len(load_task("tfbind8-r").y) == 5000


def test_missing_data_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.delenv("BIB_RAY_DATA", raising=False)
    with pytest.raises(UserError, match="--data-dir"):
        load_task("tfbind8")
    with pytest.raises(UserError, match="none of"):
        load_task("gb1", tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        load_task("gb1", tmp_path / "nowhere")
    with pytest.raises(UserError, match="unknown task"):
        load_task("tfbind9")


def test_gb1_unmeasured_variants_are_unknown(shared_data_dir):
    task = load_task("gb1", shared_data_dir)
    assert task.oracle.kind is OracleKind.NEAR_EXACT
    wild_type = encode(["VDGV"], PROTEIN)
    assert task.oracle(wild_type).scores[0] == pytest.approx(1.0)
    assert task.oracle(encode(["ADGV"], PROTEIN)).scores[0] == pytest.approx(0.0619096557142)
    unmeasured = np.flatnonzero(np.isnan(task.oracle.table))
    assert len(unmeasured) == 160000 - 149361
    codes = (unmeasured[:3, None] // 20 ** np.arange(3, -1, -1)) % 20
    designs = np.concatenate([codes, wild_type])
    evaluation = evaluate_with_oracle(task, designs)
    assert list(evaluation.status) == ["unknown"] * 3 + ["ok"]
    assert evaluation.summary["unknown"] == 3 and evaluation.summary["ok"] == 1
    assert evaluation.summary["p100_raw"] == pytest.approx(1.0)  # unknowns neither 0 nor dropped silently
    full = task.full_sequences(wild_type)
    assert "".join(PROTEIN[i] for i in full[0]) == "MQYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"


def test_ehrlich_infeasible_designs_are_explicit():
    task = load_task("ehrlich:states=8,length=16,motifs=2,motif_length=4,offline=300")
    assert task.oracle.kind is OracleKind.CLOSED_FORM and task.alphabet == PROTEIN[:8]
    assert task.y.max() < 1.0 and len(task.y) > 50
    function = task.oracle.function
    optimum = function.optimal_solution().numpy()[None]
    infeasible = None
    for candidate in np.random.default_rng(0).integers(0, 8, (200, 16)):
        if task.oracle(candidate[None]).status[0] == "infeasible":
            infeasible = candidate[None]
            break
    assert infeasible is not None
    evaluation = evaluate_with_oracle(task, np.concatenate([optimum, infeasible]))
    assert list(evaluation.status) == ["ok", "infeasible"]
    assert evaluation.summary["infeasible"] == 1
    assert evaluation.summary["p100"] == 1.0 and evaluation.summary["p50"] == pytest.approx(0.5)
    with pytest.raises(UserError, match="unknown ehrlich option"):
        load_task("ehrlich:colours=3")
