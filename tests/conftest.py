"""Shared fixtures. Tests read real data from ../shared/data (or $BIB_RAY_DATA) and skip cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    candidate = Path(os.environ.get("BIB_RAY_DATA", REPO_ROOT.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The directory holding tfbind8/, tfbind10/, gb1/, dms/ (../shared/data)."""
    found = _shared_data_dir()
    if found is None:
        pytest.skip("shared data directory not found (set BIB_RAY_DATA)")
    return found
