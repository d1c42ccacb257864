"""Clean stops: SIGTERM (what systemd, Docker and Kubernetes send) on ``bib-ray design`` exits non-zero
with one line and never leaves half a run in ``--out``; a stop signal that comes while the outputs move
into place waits for them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bib_ray.run.report import held_signals


def test_a_stop_signal_during_the_final_moves_waits_for_them():
    received = []
    previous = signal.signal(signal.SIGTERM, lambda number, _: received.append(number))
    try:
        with held_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert received == [], "held while the block runs"
        assert received == [signal.SIGTERM], "delivered once it is done"
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["--local", "ray"])
@pytest.mark.parametrize("earlier", [False, True], ids=["new-out", "overwrite"])
def test_sigterm_on_design_exits_non_zero_and_leaves_no_half_run(shared_data_dir, tmp_path, where, earlier):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "bib_ray.cli", "design", "--task", "tfbind8-r", "--data-dir", str(shared_data_dir),
            "--out", str(out), "--quiet", *([where] if where == "--local" else ["--shards", "2"])]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    if earlier:
        first = subprocess.run(base + ["--steps", "2", "--designs", "8"], env=env, capture_output=True, text=True,
                               timeout=300)
        assert first.returncode == 0, first.stderr[-2000:]
        before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
        summary = (out / "summary.json").read_text()
    process = subprocess.Popen(base + ["--seeds", "0-4", "--steps", "400"] + (["--overwrite"] if earlier else []),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(12)  # Ray and the model are up, the trajectories running
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(f"bib-ray: stopped by SIGTERM; nothing of this run was written to {out}"), err[-2000:]
    assert "Traceback" not in err and "SIGTERM received at time" not in err, err[-2000:]
    if earlier:
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
        assert json.loads((out / "summary.json").read_text()) == json.loads(summary)
    else:
        assert not out.exists()
    assert not list(tmp_path.glob(".run.incoming-*")), "no staging folder left behind"
