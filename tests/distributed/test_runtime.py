"""Connecting to Ray: a stop signal that comes while ``ray.init`` runs is a clean stop (``Stopped``), not
Ray's silent ``sys.exit(15)`` or its core worker's stack dump and abort."""

from __future__ import annotations

import signal
import sys

import pytest

from bib_ray.distributed import runtime
from tests.helpers import run_stopped_inside_ray_init


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
