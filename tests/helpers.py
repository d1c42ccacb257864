"""What tests share besides fixtures (``tests/conftest.py`` holds those): the repository root, the Ray
settings every test process uses, and the tests' local Ray. Imported one way: ``from tests.helpers import``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Ray in tests: no token auth, no usage stats, loopback only, temp files under one private dir.
RAY_TEST_TMP = Path(tempfile.gettempdir()) / f"bib-ray-tests-{os.getuid()}"
for _key, _value in {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                     "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": str(RAY_TEST_TMP)}.items():
    os.environ.setdefault(_key, _value)
(RAY_TEST_TMP / "ray").mkdir(parents=True, exist_ok=True)


def shared_data_dir_or_none() -> Path | None:
    """../shared/data (or $BIB_RAY_DATA) when it exists."""
    candidate = Path(os.environ.get("BIB_RAY_DATA", REPO_ROOT.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


def ensure_local_ray(num_cpus: int = 4) -> None:
    """Start the tests' local Ray if no Ray is running in this process (one per session, reused; a module
    fixture that needs Ray calls this, as the function-scoped ``local_ray`` fixture does)."""
    import ray

    from bib_ray.service.launch import allow_slow_proxy_start

    if not ray.is_initialized():
        allow_slow_proxy_start()  # Serve tests on a loaded machine: the proxy may take more than 5 s to start
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _temp_dir=str(RAY_TEST_TMP))
