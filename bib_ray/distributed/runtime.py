"""Connecting to Ray: an existing cluster (--address / $RAY_ADDRESS) or an embedded local one.

Quiet by default: Ray's own start-up and shutdown chatter (INFO lines, Serve's driver-side
notices) is hidden unless ``set_verbose(True)`` (the CLI's ``--verbose``); warnings and errors
always show, except Ray's notice that token authentication is on: authentication itself stays on
(Ray's default for a local start; ``RAY_AUTH_MODE=disabled`` is the user's call, never ours).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
from collections.abc import Iterator

from bib_ray.errors import UserError

QUIET_LOGGERS = ("ray", "ray.serve", "ray.tune", "ray.train", "ray.data")  # INFO chatter at the default level
AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"  # printed on every local start
_verbose = False


def _hide_auth_notice(record: logging.LogRecord) -> bool:
    return _verbose or not record.getMessage().startswith(AUTH_NOTICE)


logging.getLogger(AUTH_NOTICE_LOGGER).addFilter(_hide_auth_notice)


def _hide_chatter(record: logging.LogRecord) -> bool:
    return _verbose or record.levelno >= logging.WARNING


def set_verbose(verbose: bool) -> None:
    """Show (True) or hide (False, the default) Ray's INFO-level chatter in this process. A filter as well
    as a level: Serve re-levels its logger when it starts."""
    global _verbose
    _verbose = verbose
    level = logging.INFO if verbose else logging.WARNING
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if _hide_chatter not in logger.filters:
            logger.addFilter(_hide_chatter)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT asked this process to stop (``signum`` says which)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_stop_on_signals = False
_received: list[int] = []  # the stop signals this process received, first first


def _raise_stopped(signum: int, _frame) -> None:
    _received.append(signum)
    raise Stopped(signum)


def stopped_by(interrupt: KeyboardInterrupt) -> Stopped | None:
    """The stop behind ``interrupt``: itself, or, when Ray turned it into a plain KeyboardInterrupt (its
    blocking calls do), the first stop signal received; None for an interrupt no stop signal caused."""
    if isinstance(interrupt, Stopped):
        return interrupt
    return Stopped(_received[0]) if _received else None


def stop_on_signals() -> None:
    """From now on SIGTERM (what systemd, Docker and Kubernetes send) and SIGINT raise ``Stopped`` in the
    main thread, so the command can stop cleanly. ``connect`` keeps that true while ``ray.init`` runs (see
    there) and puts the handlers back after it."""
    global _stop_on_signals
    _stop_on_signals = True
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)


@contextlib.contextmanager
def _around_ray_init() -> Iterator[None]:
    """What ``ray.init`` changes in this process, put back afterwards: its logger levels, and, when the
    command stops on signals (``stop_on_signals``), the stop handlers. While it runs a SIGTERM still means
    ``Stopped``: ``ray.init`` sets its own SIGTERM handler (``sys.exit(15)``), turned back into ``Stopped``
    here; and the driver's core worker would install Abseil's failure-signal handler, which answers SIGTERM
    with a stack dump and an abort, so it is left off in this process only (Ray reads the switch when the
    driver's core worker starts; workers keep theirs). Python's ``faulthandler`` still reports a native crash."""
    from ray._private import ray_constants

    previous = ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    if _stop_on_signals:
        faulthandler.enable()
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        yield
    except SystemExit as exit_:
        if not _stop_on_signals or exit_.code != signal.SIGTERM:
            raise
        _received.append(signal.SIGTERM)
        raise Stopped(signal.SIGTERM) from None
    finally:
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = previous
        set_verbose(_verbose)  # ray.init re-levels its logger
        if _stop_on_signals:
            stop_on_signals()


def connect(address: str | None = None, num_cpus: int | None = None) -> str:
    """Initialise Ray once per process; returns a short description of where we are running."""
    import ray

    if ray.is_initialized():
        return "already connected"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    target = address or os.environ.get("RAY_ADDRESS") or None
    level = logging.INFO if _verbose else logging.WARNING
    try:
        with _around_ray_init():
            if target:
                ray.init(address=target, log_to_driver=_verbose, logging_level=level)
                return f"Ray cluster at {target}"
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=_verbose, logging_level=level)
    except (ConnectionError, ValueError, RuntimeError) as error:
        raise UserError(f"cannot start or reach Ray ({target or 'local'}): {error}") from None
    return f"embedded local Ray ({int(ray.cluster_resources().get('CPU', 0))} CPUs)"


def disconnect() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
