"""Shared fixtures. Tests read real data from ../shared/data (or $BIB_RAY_DATA) and skip cleanly without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ensure_local_ray, shared_data_dir_or_none


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The directory holding tfbind8/, tfbind10/, gb1/, dms/ (../shared/data)."""
    found = shared_data_dir_or_none()
    if found is None:
        pytest.skip("shared data directory not found (set BIB_RAY_DATA)")
    return found


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


@pytest.fixture(scope="module")
def isolated_cluster(request, tmp_path_factory):
    """An ``IsolatedCluster`` for the module (options from ``request.param``: workers, head_cpus,
    worker_cpus, dashboard) whose workers cannot see ``head_only`` (outputs and artifacts) nor the
    data directory. ``shared`` is a folder both sides see (a sweep's storage). The test process is
    not connected: tests run the CLI with ``--address cluster.address`` or call ``ray.init`` themselves."""
    import ray

    from bib_ray.distributed.cluster_utils import IsolatedCluster, namespaces_permitted

    reason = namespaces_permitted()
    if reason is not None:
        pytest.skip(f"nodes that share no disk cannot be made here: {reason}")
    options = dict(getattr(request, "param", None) or {})
    root = tmp_path_factory.mktemp("cluster")
    head_only, shared = root / "head-only", root / "shared-storage"
    for folder in (head_only, shared):
        folder.mkdir()
    data = shared_data_dir_or_none()
    ray.shutdown()  # this process may hold the tests' local Ray
    cluster = IsolatedCluster(root, [head_only] + ([data] if data is not None else []), **options)
    try:
        cluster.start()
        cluster.head_only, cluster.shared = head_only, shared
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()
