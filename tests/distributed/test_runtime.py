"""Connecting to Ray: a stop signal that comes while ``ray.init`` runs is a clean stop (``Stopped``), not
Ray's silent ``sys.exit(15)`` or its core worker's stack dump and abort."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from bib_ray.distributed import runtime

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
        runtime.connect(num_cpus=1)
    except runtime.Stopped as stop:
        print("stopped by", stop, flush=True)
        sys.exit(128 + stop.signum)
    print("connected", flush=True)
""")


def run_stopped_inside_ray_init(tmp_path, signame: str, stop_on_signals: bool = True) -> subprocess.CompletedProcess:
    script = STOP_INSIDE_RAY_INIT.format(signame=signame,
                                         stop_on_signals="runtime.stop_on_signals()" if stop_on_signals else "")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    env.pop("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", None)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_inside_ray_init_is_a_clean_stop(tmp_path, signame):
    done = run_stopped_inside_ray_init(tmp_path, signame)
    signum = getattr(signal, signame)
    assert done.returncode == 128 + signum, (done.returncode, done.stderr[-3000:])
    assert done.stdout.strip() == f"stopped by {signame}", done.stdout
    assert "SIGTERM received" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]


def test_without_stop_handlers_connect_leaves_rays_sigterm_handling_alone(tmp_path):
    """A library caller that did not ask for clean stops gets Ray's own behaviour (exit 15 from ray.init)."""
    done = run_stopped_inside_ray_init(tmp_path, "SIGTERM", stop_on_signals=False)
    assert done.returncode == signal.SIGTERM, (done.returncode, done.stderr[-3000:])
    assert "connected" not in done.stdout


def test_an_exit_inside_ray_init_that_no_sigterm_caused_is_not_a_stop(monkeypatch):
    import ray

    monkeypatch.setattr(runtime, "_stop_on_signals", True)
    monkeypatch.setattr(runtime, "stop_on_signals", lambda: None)  # leave this process's handlers alone
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def init_exits(**_):
        sys.exit(3)

    monkeypatch.setattr(ray, "init", init_exits)
    with pytest.raises(SystemExit) as raised:
        runtime.connect()
    assert raised.value.code == 3
