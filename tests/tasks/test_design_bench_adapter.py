"""``design-bench:TFBind8-Exact-v0`` through the real design-bench package, on the shared TFBind8 files.

Needs design-bench (``pip install --no-deps design-bench==2.0.20``); where it is not installed, or
cannot be imported even with the adapter's shims, these tests skip and say why.
The shared files are copied into a temporary folder in design-bench's layout
(``tf_bind_8-SIX6_REF_R1/tf_bind_8-{x,y}-0.npy``) and the adapter points design-bench's DATA_DIR
there, so nothing is written into site-packages and nothing is downloaded.
"""

from __future__ import annotations

import importlib
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

from bib_ray.errors import UserError
from bib_ray.tasks.base import DesignStatus, OracleKind, Task
from bib_ray.tasks.design_bench_adapter import import_design_bench, load_design_bench_task

TASK = "TFBind8-Exact-v0"
FOLDER = "tf_bind_8-SIX6_REF_R1"
STANDARD_OFFLINE_ROWS = 32_898  # y <= 50th percentile of the 65,792 rows
COMPLEMENT = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module")
def design_bench() -> types.ModuleType:
    """The design_bench module as the adapter imports it, or a skip saying why it cannot be had."""
    try:
        return import_design_bench()
    except UserError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def table(shared_data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The full TFBind8 table: x int32 (65792, 8), y float32 (65792,)."""
    x = np.load(shared_data_dir / "tfbind8" / "tf_bind_8-x-0.npy")
    y = np.load(shared_data_dir / "tfbind8" / "tf_bind_8-y-0.npy").reshape(-1)
    return x, y


@pytest.fixture(scope="module")
def data_dir(design_bench: types.ModuleType, shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("design_bench_data")
    (root / FOLDER).mkdir()
    for name in ("tf_bind_8-x-0.npy", "tf_bind_8-y-0.npy"):
        shutil.copyfile(shared_data_dir / "tfbind8" / name, root / FOLDER / name)
    return root


@pytest.fixture(scope="module")
def task(data_dir: Path) -> Task:
    return load_design_bench_task(TASK, data_dir=data_dir)


def test_unsupported_task_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not supported"):
        load_design_bench_task("Superconductor-RandomForest-v0")


def test_offline_split_and_alphabet(task: Task, table: tuple[np.ndarray, np.ndarray]) -> None:
    _, all_y = table
    assert task.name == "design-bench:" + TASK
    assert task.alphabet == "ACGT"
    assert task.x.shape == (STANDARD_OFFLINE_ROWS, 8) and task.x.dtype == np.int64
    assert task.y.shape == (STANDARD_OFFLINE_ROWS,) and task.y.dtype == np.float64
    assert task.y.max() <= np.percentile(all_y, 50)
    assert task.oracle_kind is OracleKind.EXACT
    assert task.details["dataset_rows"] == all_y.shape[0]


def test_integer_codes_pair_as_complementary_bases(task: Task, table: tuple[np.ndarray, np.ndarray]) -> None:
    """Rows 32896.. are the reverse complements of rows 0..32895: decoded with A, C, G, T they must pair."""
    x, _ = table
    half = x.shape[0] // 2
    forward, reverse = task.sequences(x[:half]), task.sequences(x[half:])
    assert all(r == f.translate(COMPLEMENT)[::-1] for f, r in zip(forward, reverse, strict=True))


def test_oracle_returns_the_table(task: Task, table: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = table
    rng = np.random.default_rng(0)
    rows = np.concatenate([np.arange(50), np.arange(x.shape[0] - 50, x.shape[0]),
                           [int(np.argmax(y)), int(np.argmin(y))], rng.choice(x.shape[0], 300, replace=False)])
    result = task.oracle(x[rows].astype(np.int64))
    np.testing.assert_array_equal(result.scores, y[rows].astype(np.float64))
    assert (result.status == DesignStatus.OK.value).all()
    offline = task.oracle(task.x[:200])
    np.testing.assert_array_equal(offline.scores, task.y[:200])


def test_oracle_rejects_malformed_designs(task: Task) -> None:
    with pytest.raises(ValueError):
        task.oracle(np.zeros((2, 7), dtype=np.int64))
    with pytest.raises(ValueError):
        task.oracle(np.full((2, 8), 4, dtype=np.int64))
    assert task.oracle(np.zeros((0, 8), dtype=np.int64)).scores.shape == (0,)


def test_score_range_is_the_whole_dataset(task: Task, table: tuple[np.ndarray, np.ndarray]) -> None:
    _, y = table
    assert task.score_range == (float(y.min()), float(y.max()))
    assert task.score_range == (0.0, 1.0)  # design-bench stores TFBind8 min-max normalised
    assert task.normalise(np.array([y.max()]))[0] == 1.0


def test_loading_leaves_design_bench_and_numpy_state_alone(data_dir: Path) -> None:
    disk_resource = importlib.import_module("design_bench.disk_resource")
    before_dir = disk_resource.DATA_DIR
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    load_design_bench_task(TASK, data_dir=data_dir)
    assert np.random.random() == expected
    assert disk_resource.DATA_DIR == before_dir


def test_missing_data_is_a_user_error_without_download(design_bench: types.ModuleType, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="missing"):
        load_design_bench_task(TASK, data_dir=tmp_path)


def test_unknown_design_bench_task_is_a_user_error(data_dir: Path) -> None:
    with pytest.raises(UserError, match="unknown design-bench task"):
        load_design_bench_task("TFBind8-NoSuchOracle-v0", data_dir=data_dir)
