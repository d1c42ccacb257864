"""The benchmark suite harness (smallest setting, on the tests' Ray)."""

from __future__ import annotations

import pandas as pd
import pytest


def test_suite_smoke_preset_writes_csv_markdown_and_plot(shared_data_dir, local_ray, tmp_path):
    from bib_ray.bench.suite import METHODS, main

    out = tmp_path / "bench"
    readme = tmp_path / "README.md"
    readme.write_text("# r\n<!-- suite:smoke -->\nold table\n<!-- /suite:smoke -->\ntail\n")
    assert main(["--preset", "smoke", "--data-dir", str(shared_data_dir), "--out", str(out), "--quiet",
                 "--doc", str(readme)]) == 0
    frame = pd.read_csv(out / "suite.csv")
    assert set(frame.method) == set(METHODS) and set(frame.task) == {"tfbind8", "pab1"}
    assert len(frame) == 2 * len(METHODS)
    exact = frame[frame.task == "tfbind8"]
    assert exact.p100.between(0, 1).all() and (exact.scored == exact.designs).all()
    dms = frame[frame.task == "pab1"]
    assert (dms.oracle_kind == "approximate").all() and (dms.scored > 0).all()
    text = (out / "suite.md").read_text()
    assert "| tfbind8 | tiny | evolution |" in text and "| pab1 | ntk | bdi |" in text
    assert set(frame[frame.method == "bdi"].backbone) == {"ntk"}
    assert set(frame[frame.method != "bdi"].backbone) == {"tiny"}
    assert "worker" in text and "reproduce" in text and "fits" in text
    updated = readme.read_text()
    assert "old table" not in updated and text.strip() in updated and updated.endswith("tail\n")
    assert (out / "suite.png").stat().st_size > 10_000
    assert "](figures/suite-smoke.png)" in updated and (tmp_path / "figures" / "suite-smoke.png").is_file()
    assert frame.offline_best.notna().all()


def test_suite_rejects_unknown_methods(local_ray):
    from bib_ray.bench.suite import SuiteGrid, run_suite
    from bib_ray.errors import UserError

    with pytest.raises(UserError, match="unknown methods"):
        run_suite(SuiteGrid(["tfbind8"], ["tiny"], ["bib", "magic"], [0], steps=2, designs=4), progress=False)


def test_task_lists_keep_option_commas_with_their_task():
    from bib_ray.bench.suite import split_task_list

    assert split_task_list("gb1, ehrlich:length=64,motifs=4,pab1") == ["gb1", "ehrlich:length=64,motifs=4", "pab1"]
    assert split_task_list("ehrlich,ehrlich:states=8") == ["ehrlich", "ehrlich:states=8"]


def test_doc_block_must_exist(tmp_path):
    from bib_ray.bench.suite import update_doc
    from bib_ray.errors import UserError

    doc = tmp_path / "results.md"
    doc.write_text("no markers here\n")
    with pytest.raises(UserError, match="suite:dna"):
        update_doc(doc, "dna", "table")


def test_suite_writes_rows_as_they_finish_and_resumes_a_cut_off_run(shared_data_dir, local_ray, tmp_path,
                                                                       monkeypatch):
    import bib_ray.bench.suite as suite
    from bib_ray.errors import UserError

    out = tmp_path / "bench"
    flags = ["--tasks", "tfbind8", "--backbones", "onehot", "--methods", "bib,evolution", "--seeds", "0-1",
             "--steps", "2", "--designs", "4", "--data-dir", str(shared_data_dir), "--out", str(out), "--quiet"]

    def cut_off(*_args, **_kwargs):
        raise KeyboardInterrupt  # the run dies after its last cell, before the sorted CSV is written

    with monkeypatch.context() as patch:
        patch.setattr(suite, "sort_rows", cut_off)
        with pytest.raises(KeyboardInterrupt):
            suite.main(flags)
    written = pd.read_csv(out / "suite.csv")
    assert len(written) == 4 and list(written.columns) == suite.ROW_COLUMNS  # every finished row is on disk
    kept = written[~((written.method == "bib") & (written.seed == 1))]
    kept.to_csv(out / "suite.csv", index=False)
    kept_text = pd.read_csv(out / "suite.csv", dtype=str).sort_values(["method", "seed"], ignore_index=True)

    ran = []
    with monkeypatch.context() as patch:
        run_suite = suite.run_suite
        patch.setattr(suite, "run_suite", lambda *a, **k: ran.append(k["skip"]) or run_suite(*a, **k))
        assert suite.main(flags + ["--resume"]) == 0
    kept_cells = {("tfbind8", "onehot", method, seed) for method, seed in [("bib", 0), ("evolution", 0), ("evolution", 1)]}
    assert ran == [frozenset(kept_cells)]  # only the missing cell ran
    resumed = pd.read_csv(out / "suite.csv", dtype=str)
    assert len(resumed) == 4 and list(resumed.method) == ["bib", "bib", "evolution", "evolution"]
    rerun = (resumed.method == "bib") & (resumed.seed == "1")
    pd.testing.assert_frame_equal(resumed[~rerun].sort_values(["method", "seed"], ignore_index=True), kept_text)
    assert "3 earlier rows kept" in (out / "suite.md").read_text()

    with pytest.raises(UserError, match="outside this grid"):
        suite.main([f if f != "0-1" else "0" for f in flags] + ["--resume"])


def test_every_preset_names_known_tasks_backbones_and_methods():
    from bib_ray.backbones import list_backbones
    from bib_ray.bench.suite import NTK_GROUP, PRESETS, grid, split_task_list
    from bib_ray.tasks import TASKS

    task_names = {info.name for info in TASKS}
    backbone_names = {info.spec for info in list_backbones()}
    for name, values in PRESETS.items():
        assert grid(values["backbones"].split(","), values["methods"].split(",")), name
        assert {spec.partition(":")[0] for spec in split_task_list(values["tasks"])} <= task_names, name
        assert set(values["backbones"].split(",")) <= backbone_names | {NTK_GROUP}, name


def test_a_readme_without_the_block_is_refused_before_any_cell_runs(tmp_path, monkeypatch):
    import bib_ray.bench.suite as suite
    from bib_ray.errors import UserError

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("the suite started although its README block is missing")

    monkeypatch.setattr(suite, "run_suite", must_not_run)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- suite:dna -->\n<!-- /suite:dna -->\n")
    with pytest.raises(UserError, match="suite:smoke"):
        suite.main(["--preset", "smoke", "--out", str(tmp_path / "out"), "--doc", str(readme), "--quiet"])
