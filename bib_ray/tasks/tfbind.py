"""TFBind8 and TFBind10: exact-oracle DNA tasks from design-bench's files.

Splits:
    standard (design-bench): offline set = rows with y at or below the 50th percentile of y.
    r (BIB's "TFBind8(r)" / "TFBind10(r)"): offline set = the 5,000 lowest-scoring rows.
Starting designs are the best offline rows; scores are normalised with the min/max of all data.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from bib_ray.alphabets import DNA
from bib_ray.errors import UserError
from bib_ray.tasks.base import OracleKind, Task
from bib_ray.tasks.data_dir import find_data_file
from bib_ray.tasks.lookup_oracle import LookupOracle, build_table

R_SPLIT_SIZE = 5000
TFBIND8_DIRS = ["tfbind8", "tf_bind_8-SIX6_REF_R1"]
TFBIND10_TABLE = "tfbind10/tfbind10_pho4_table.npy"
TFBIND10_SHARD_DIR = "tf_bind_10-pho4"


def _shards(directory: Path, prefix: str, kind: str) -> list[Path]:
    """design-bench shard files PREFIX-KIND-<i>.npy in numeric order of i."""
    pattern = re.compile(rf"{re.escape(prefix)}-{kind}-(\d+)\.npy$")
    found = [(int(m.group(1)), p) for p in directory.glob(f"{prefix}-{kind}-*.npy") if (m := pattern.search(p.name))]
    return [p for _, p in sorted(found)]


def _load_shards(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _shards(directory, prefix, "x"), _shards(directory, prefix, "y")
    if not xs or len(xs) != len(ys):
        raise UserError(f"{directory}: expected matching {prefix}-x-<i>.npy and {prefix}-y-<i>.npy shards")
    x = np.concatenate([np.load(p) for p in xs]).astype(np.int64)
    y = np.concatenate([np.load(p) for p in ys]).astype(np.float64).reshape(-1)
    if x.shape[0] != y.shape[0] or x.min() < 0 or x.max() >= len(DNA):
        raise UserError(f"{directory}: shards are not DNA sequences coded 0..3 with one score per row")
    return x, y


def _offline_rows(y: np.ndarray, split: str) -> np.ndarray:
    if split == "standard":
        return np.flatnonzero(y <= np.percentile(y, 50))
    return np.sort(np.argsort(y, kind="stable")[:R_SPLIT_SIZE])


def _task(name: str, x: np.ndarray, y: np.ndarray, table: np.ndarray, split: str, description: str) -> Task:
    rows = _offline_rows(y, split)
    oracle = LookupOracle(table, len(DNA), OracleKind.EXACT)
    finite = table[~np.isnan(table)]
    return Task(name=name, alphabet=DNA, x=x[rows], y=y[rows], oracle=oracle,
                score_range=(float(finite.min()), float(finite.max())), description=description,
                details={"split": split, "offline_rows": int(len(rows)), "oracle_coverage": oracle.coverage})


def load_tfbind8_rows(data_dir: Path | None, name: str = "tfbind8") -> tuple[np.ndarray, np.ndarray]:
    """All 65,792 TFBind8 rows (x int64 (N, 8), y float64 (N,)) from design-bench's shard files."""
    first = find_data_file(data_dir, name, [f"{d}/tf_bind_8-x-0.npy" for d in TFBIND8_DIRS])
    return _load_shards(first.parent, "tf_bind_8")


def load_tfbind8(data_dir: Path | None, split: str = "standard") -> Task:
    """TFBind8 (SIX6_REF_R1): 65,792 rows covering all 4^8 8-mers (an exact lookup oracle)."""
    name = "tfbind8" if split == "standard" else "tfbind8-r"
    x, y = load_tfbind8_rows(data_dir, name)
    return _task(name, x, y, build_table(x, y, len(DNA)), split,
                 "transcription-factor binding of 8-mers (SIX6), exact oracle")


def load_tfbind10(data_dir: Path | None, split: str = "standard") -> Task:
    """TFBind10 (PHO4): all 4^10 10-mers, from the dense table or from design-bench's raw shards."""
    name = "tfbind10" if split == "standard" else "tfbind10-r"
    shard_dir = None if data_dir is None else data_dir / TFBIND10_SHARD_DIR
    if shard_dir is not None and shard_dir.is_dir() and not (data_dir / TFBIND10_TABLE).is_file():
        raw_x, raw_y = _load_shards(shard_dir, "tf_bind_10")
        table = build_table(raw_x, raw_y, len(DNA))  # last copy wins, as design-bench's exact oracle
    else:
        table = np.load(find_data_file(data_dir, name, [TFBIND10_TABLE])).astype(np.float64).reshape(-1)
        if table.shape[0] != len(DNA) ** 10:
            raise UserError(f"TFBind10 table must have 4^10 entries, found {table.shape[0]}")
    measured = np.flatnonzero(~np.isnan(table))
    x = (measured[:, None] // len(DNA) ** np.arange(9, -1, -1)) % len(DNA)
    return _task(name, x, table[measured], table, split,
                 "transcription-factor binding of 10-mers (PHO4), exact oracle")
