"""``bib-ray serve``: deploy the scoring application on the embedded local Ray or a cluster."""

from __future__ import annotations

import os
import socket
import threading
import time

from bib_ray.errors import UserError
from bib_ray.service.settings import APPLICATION_NAME, ServeDeployment, ServiceSettings


PROXY_READY_TIMEOUT_ENV = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"  # Ray's default, 5 s, is short on a busy machine


def allow_slow_proxy_start(seconds: float = 60.0) -> None:
    """Give Serve's HTTP proxy ``seconds`` to start before its controller kills it as unhealthy (Ray's
    default of 5 s fails ``serve.start`` with ActorDiedError on a loaded machine). It must be set before
    Ray starts: the controller reads it from the environment it inherits. A value already set wins."""
    os.environ.setdefault(PROXY_READY_TIMEOUT_ENV, str(seconds))


def ensure_port_free(host: str, port: int) -> None:
    """UserError when ``host:port`` cannot be bound here (Serve would otherwise fail in its proxy actor)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port") from None


def wait_until_healthy(url: str, timeout_s: float = 120.0) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise UserError(f"the service at {url} did not become healthy within {timeout_s:.0f} s (see `serve status`)")


def deploy(settings: ServiceSettings, deployment: ServeDeployment, check_port: bool = True,
           name: str = APPLICATION_NAME) -> str:
    """Start Serve on ``deployment.host:port`` in the connected Ray, run the application, return its URL."""
    from ray import serve

    from bib_ray.service.app import scorer_application

    application = scorer_application(settings, deployment.deployment_options())
    if check_port:
        ensure_port_free(deployment.host, deployment.port)
    serve.start(http_options={"host": deployment.host, "port": deployment.port})
    serve.run(application, name=name, route_prefix=deployment.route_prefix,
              logging_config={"enable_access_log": False, "log_level": "WARNING"})
    url = f"http://{deployment.host}:{deployment.port}{deployment.route_prefix.rstrip('/')}"
    wait_until_healthy(url)
    return url


def shutdown() -> None:
    """Stop Serve (only when Ray is up: otherwise serve.shutdown would start a cluster to stop nothing)."""
    import ray
    from ray import serve

    if ray.is_initialized():
        serve.shutdown()


def begin_draining(name: str = APPLICATION_NAME) -> None:
    """Tell the application's replicas to answer new score requests 503 (Retry-After) from now on."""
    from ray.experimental.internal_kv import _internal_kv_put

    from bib_ray.service.app import drain_key

    _internal_kv_put(drain_key(name), b"1")


def requests_in_flight(name: str = APPLICATION_NAME) -> int:
    """Requests the application's replicas are answering now (summed over its replica actors)."""
    import ray

    prefix = f"SERVE_REPLICA::{name}#"
    replicas = [ray.get_actor(entry["name"], namespace=entry["namespace"])
                for entry in ray.util.list_named_actors(all_namespaces=True) if entry["name"].startswith(prefix)]
    counts = ray.get([replica.get_num_ongoing_requests.remote() for replica in replicas], timeout=10)
    return int(sum(counts))


def drain(seconds: float, name: str = APPLICATION_NAME) -> int:
    """Refuse new requests and wait, at most ``seconds``, until those in flight are answered; returns how
    many were still in flight when the wait ended."""
    begin_draining(name)
    deadline = time.monotonic() + seconds
    left = requests_in_flight(name)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = requests_in_flight(name)
    return left


def stop_local_service(drain_s: float, timeout_s: float = 60.0) -> bool:
    """Stop the service and the embedded local Ray: new requests are refused (503), those in flight get up
    to ``drain_s`` to finish, then Ray stops, and every Serve actor and Ray process with it. Gives it all
    ``drain_s + timeout_s`` (Ray's tracker has reports of shutdowns hanging); True when it finished. A
    second stop signal while waiting ends the wait (False)."""
    import ray

    from bib_ray.distributed.runtime import disconnect

    def stop() -> None:  # no serve.shutdown: once drained it only adds Ray's warning that its killed controller failed
        if ray.is_initialized():
            drain(drain_s)
        disconnect()

    worker = threading.Thread(target=stop, name="bib-ray-stop", daemon=True)
    worker.start()
    try:
        worker.join(drain_s + timeout_s)
    except KeyboardInterrupt:
        return False
    return not worker.is_alive()
