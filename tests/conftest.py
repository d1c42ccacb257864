"""Shared fixtures. Tests read real data from ../shared/data (or $BIB_RAY_DATA) and skip cleanly without it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Ray in tests: no token auth, no usage stats, loopback only, temp files under one private dir.
RAY_TEST_TMP = Path(tempfile.gettempdir()) / f"bib-ray-tests-{os.getuid()}"
for _key, _value in {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                     "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": str(RAY_TEST_TMP)}.items():
    os.environ.setdefault(_key, _value)
(RAY_TEST_TMP / "ray").mkdir(parents=True, exist_ok=True)


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


def ensure_local_ray(num_cpus: int = 4) -> None:
    """Start the tests' local Ray if no Ray is running in this process (one per session, reused)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _temp_dir=str(RAY_TEST_TMP))


@pytest.fixture
def local_ray():
    """A local Ray with 4 logical CPUs, started on first use and kept for the session."""
    ensure_local_ray()
    yield


def pytest_sessionfinish(session, exitstatus):
    import sys

    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
