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

    from bib_ray.service.launch import allow_slow_proxy_start

    if not ray.is_initialized():
        allow_slow_proxy_start()  # Serve tests on a loaded machine: the proxy may take more than 5 s to start
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


# ---------------------------------------------------------------------------------------------
# Multi-node clusters whose worker nodes share no disk with the head (DESIGN.md section 7)
# ---------------------------------------------------------------------------------------------

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
    ``worker_cpus`` CPUs and the custom resource ``{"worker": 1}``."""

    def __init__(self, root: Path, hidden: list[Path], workers: int = 1, head_cpus: int = 0,
                 worker_cpus: int = 2, dashboard: bool = False) -> None:
        self.root, self.hidden = root, [Path(p).resolve() for p in hidden]
        self.workers, self.head_cpus, self.worker_cpus, self.dashboard = workers, head_cpus, worker_cpus, dashboard
        self.port = _free_port()
        self.dashboard_port = _free_port()
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
        self._spawn("head", [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                             "--num-cpus", str(self.head_cpus), "--num-gpus", "0",
                             "--include-dashboard", str(self.dashboard).lower(), "--dashboard-host", "127.0.0.1",
                             "--dashboard-port", str(self.dashboard_port), *agent_port, str(_free_port()), *common])
        self._wait_for_nodes(1)
        # the worker's own Ray temp dir too: nodes sharing one session folder race on runtime_env files
        hidden = [*self.hidden, self.temp_dir]
        mounts = " && ".join(f"mount -t tmpfs none {shlex.quote(str(p))}" for p in hidden)
        for index in range(self.workers):
            worker = [ray, "start", "--address", self.address, "--node-ip-address", "127.0.0.1",
                      "--num-cpus", str(self.worker_cpus), "--num-gpus", "0", "--resources", '{"worker": 1}',
                      *agent_port, str(_free_port()), *common]
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


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def isolated_cluster(request, tmp_path_factory):
    """An ``IsolatedCluster`` for the module (options from ``request.param``: workers, head_cpus,
    worker_cpus, dashboard) whose workers cannot see ``head_only`` (outputs and artifacts) nor the
    data directory. ``shared`` is a folder both sides see (a sweep's storage). The test process is
    not connected: tests run the CLI with ``--address cluster.address`` or call ``ray.init`` themselves."""
    import ray

    reason = namespaces_permitted()
    if reason is not None:
        pytest.skip(f"nodes that share no disk cannot be made here: {reason}")
    options = dict(getattr(request, "param", None) or {})
    root = tmp_path_factory.mktemp("cluster")
    head_only, shared = root / "head-only", root / "shared-storage"
    for folder in (head_only, shared):
        folder.mkdir()
    data = _shared_data_dir()
    ray.shutdown()  # this process may hold the tests' local Ray
    cluster = IsolatedCluster(root, [head_only] + ([data] if data is not None else []), **options)
    try:
        cluster.start()
        cluster.head_only, cluster.shared = head_only, shared
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()
