"""Where task data files are found: --data-dir, then $BIB_RAY_DATA. Nothing is assumed otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from bib_ray.errors import UserError

DATA_ENV_VAR = "BIB_RAY_DATA"


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The data directory to use, or None when neither the argument nor the environment names one."""
    chosen = explicit if explicit not in (None, "") else os.environ.get(DATA_ENV_VAR) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise UserError(f"data directory {str(path)!r} does not exist")
    return path


def find_data_file(data_dir: Path | None, task: str, candidates: list[str]) -> Path:
    """First of ``candidates`` (paths relative to the data directory) that exists, else a UserError."""
    if data_dir is None:
        raise UserError(f"task {task!r} needs data files: pass --data-dir DIR or set {DATA_ENV_VAR} "
                        f"(looked for DIR/{candidates[0]})")
    for relative in candidates:
        if (data_dir / relative).is_file():
            return data_dir / relative
    raise UserError(f"task {task!r}: none of {candidates} found under {str(data_dir)!r}")
