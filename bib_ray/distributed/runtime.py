"""Connecting to Ray: an existing cluster (--address / $RAY_ADDRESS) or an embedded local one."""

from __future__ import annotations

import os

from bib_ray.errors import UserError


def connect(address: str | None = None, num_cpus: int | None = None) -> str:
    """Initialise Ray once per process; returns a short description of where we are running."""
    import ray

    if ray.is_initialized():
        return "already connected"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    target = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if target:
            ray.init(address=target, log_to_driver=False)
            return f"Ray cluster at {target}"
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot start or reach Ray ({target or 'local'}): {error}") from None
    return f"embedded local Ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
