"""What tests share besides fixtures (``tests/conftest.py`` holds those): the repository root, the Ray
settings every test process uses, and the tests' local Ray. Imported one way: ``from tests.helpers import``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
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


# Sends the signal from inside ray.init, right after the driver's core worker started (Ray's SIGTERM handler
# and, unless left off, Abseil's failure-signal handler are in place then), so the timing is exact.
STOP_INSIDE_RAY_INIT = textwrap.dedent("""
    import os, signal, sys
    import ray._private.worker as worker
    from bib_ray.distributed import runtime

    connect_driver = worker.connect

    def connect_then_signal(*args, **kwargs):
        result = connect_driver(*args, **kwargs)
        os.kill(os.getpid(), signal.{signame})
        return result

    worker.connect = connect_then_signal
    {stop_on_signals}
    try:
        runtime.connect({address!r}, num_cpus={num_cpus!r})
    except runtime.Stopped as stop:
        print("stopped by", stop, flush=True)
        sys.exit(128 + stop.signum)
    print("connected", flush=True)
""")


def run_stopped_inside_ray_init(cwd: Path, signame: str, stop_on_signals: bool = True, address: str | None = None,
                                env: dict | None = None) -> subprocess.CompletedProcess:
    """A Python process that connects as the CLI does (a local Ray, or ``address``) and gets ``signame``
    from inside ``ray.init``; prints "stopped by NAME" and exits 128 + signum on a clean stop."""
    script = STOP_INSIDE_RAY_INIT.format(signame=signame, address=address, num_cpus=None if address else 1,
                                         stop_on_signals="runtime.stop_on_signals()" if stop_on_signals else "")
    env = {**(env or os.environ), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    env.pop("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", None)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180,
                          cwd=cwd)
