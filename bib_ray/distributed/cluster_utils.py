"""Multi-node Ray clusters on one machine whose worker nodes share no disk with the head.

``IsolatedCluster`` starts a head and worker nodes with ``ray start``; each worker runs in its own
mount namespace (``unshare -m``, root only) with an empty tmpfs over every folder the head keeps to
itself, so a path only the head has fails there as it would on a second machine (DESIGN.md
section 7). The tests (``tests/conftest.py``) and the two-node benchmark use it, as Ray's own tests
use ``ray.cluster_utils``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def namespaces_permitted() -> str | None:
    """None when this process may make private mount namespaces with tmpfs mounts, else why not."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return "the unshare command is not installed"
    if os.geteuid() != 0:
        return "private mount namespaces need root (CI runs as root)"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /mnt && umount /mnt"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -m / mount tmpfs refused: {probe.stderr.strip()}"


class IsolatedCluster:
    """A Ray head plus worker nodes started with ``ray start``; each worker runs in its own mount
    namespace with an empty tmpfs over every folder in ``hidden`` (the head's data, outputs and
    artifacts), so a path only the head has fails there as on a second machine. All on 127.0.0.1.

    The head offers ``head_cpus`` CPUs (0: work can only land on workers); each worker offers
    ``worker_cpus`` CPUs and the custom resource ``{"worker": 1}``. ``node_timeout_s``: how long the head
    waits for a silent node's health checks before it declares the node dead (Ray's default: 15 s)."""

    def __init__(self, root: Path, hidden: list[Path], workers: int = 1, head_cpus: int = 0,
                 worker_cpus: int = 2, dashboard: bool = False, node_timeout_s: float | None = None) -> None:
        self.root, self.hidden = root, [Path(p).resolve() for p in hidden]
        self.workers, self.head_cpus, self.worker_cpus, self.dashboard = workers, head_cpus, worker_cpus, dashboard
        self.node_timeout_s = node_timeout_s
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.processes: list = []
        self.logs = root / "cluster-logs"
        # its own short temp dir: a plain ray.init() elsewhere must not find this cluster and join it
        self.temp_dir = Path(tempfile.mkdtemp(prefix="bibray-cluster-"))

    def env(self) -> dict:
        """Environment for processes of this cluster (and CLI subprocesses that join it)."""
        return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "",
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_TMPDIR": str(self.temp_dir)}

    def _spawn(self, name: str, command: list[str]) -> None:
        import subprocess

        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "w")
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                               start_new_session=True))

    def start(self) -> "IsolatedCluster":
        import shlex
        import sys

        ray = str(Path(sys.executable).with_name("ray"))
        common = ["--temp-dir", str(self.temp_dir), "--block", "--disable-usage-stats"]
        # one network namespace for all nodes: each node's dashboard agent needs its own HTTP port
        agent_port = ["--dashboard-agent-listen-port"]
        checks = [] if self.node_timeout_s is None else ["--system-config", json.dumps(
            {"health_check_period_ms": 500, "health_check_failure_threshold": max(1, round(self.node_timeout_s / 0.5))})]
        self._spawn("head", [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                             "--num-cpus", str(self.head_cpus), "--num-gpus", "0", *checks,
                             "--include-dashboard", str(self.dashboard).lower(), "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(self.dashboard_port), *agent_port, str(free_port()), *common])
        self._wait_for_nodes(1)
        # the worker's own Ray temp dir too: nodes sharing one session folder race on runtime_env files
        hidden = [*self.hidden, self.temp_dir]
        mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(p))}" for p in hidden)
        for index in range(self.workers):
            worker = [ray, "start", "--address", self.address, "--node-ip-address", "127.0.0.1",
                      "--num-cpus", str(self.worker_cpus), "--num-gpus", "0", "--resources", '{"worker": 1}',
                      *agent_port, str(free_port()), *common]
            self._spawn(f"worker-{index}", ["unshare", "-m", "--propagation", "private", "bash", "-c",
                                            f"{mounts} && exec {shlex.join(worker)}"])
        self._wait_for_nodes(1 + self.workers)
        return self

    def _wait_for_nodes(self, count: int, timeout_s: float = 90.0) -> None:
        import subprocess
        import sys
        import time

        probe = ("import ray,sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            run = subprocess.run([sys.executable, "-c", probe, self.address], capture_output=True, text=True,
                                 env=self.env(), timeout=60)
            if run.returncode == 0 and int(run.stdout.split()[-1]) >= count:
                return
            time.sleep(1.0)
        raise RuntimeError(f"cluster did not reach {count} nodes; logs:\n{self.log_tail()}")

    def kill_worker(self, index: int = 0) -> None:
        """Lose worker node ``index`` as a machine would be lost: SIGKILL to its whole process group (its
        raylet, object store and every worker process), no goodbye to the head."""
        import signal

        process = self.processes[1 + index]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def worker_of(self, pid: int) -> int | None:
        """The index of the worker node a process runs on (by its mount namespace), None for the head."""
        namespace = os.readlink(f"/proc/{pid}/ns/mnt")
        for index, process in enumerate(self.processes[1:]):
            if process.poll() is None and os.readlink(f"/proc/{process.pid}/ns/mnt") == namespace:
                return index
        return None

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()[-chars:]}" for p in sorted(self.logs.glob("*.log")))

    def stop(self) -> None:
        """SIGTERM each started process group, then SIGKILL what is left (never `ray stop`)."""
        import shutil
        import signal
        import subprocess

        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)
        self.processes = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
