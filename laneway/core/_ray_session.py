"""Joining Ray: start a local instance or connect to a cluster, and leave it as found.

Ray's connection is per process (``ray.init`` / ``ray.shutdown`` are global), so
this is the one place in laneway with process-wide state: a count of the users
(Ray pool backends, actor systems with Ray-placed actors) of a connection that
laneway itself opened. The last one to finish shuts Ray down, so a pool that
stops first never pulls Ray from under actors still running on it; a connection
the application opened is never shut down by laneway.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from laneway.errors import PoolError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_users = 0  # users of a Ray connection that laneway opened


def acquire_ray(address: str | None, num_cpus: int | None, init_options: dict[str, Any]) -> bool:
    """Make sure Ray is initialized; True if this call's session must later be :func:`release_ray`d.

    Raises:
        PoolError: Ray could not start or connect.
    """
    global _users
    import ray

    with _lock:
        if ray.is_initialized():
            if _users:
                _users += 1
                return True
            log.info("using the Ray connection the application opened (address/num_cpus ignored)")
            return False
        options = {"include_dashboard": False, **init_options}
        # No address: RAY_ADDRESS if the environment names a cluster, else a new local
        # instance of our own ("local"), never whatever `ray start` left running here,
        # which would refuse num_cpus and is not ours to size.
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":
            options["num_cpus"] = num_cpus
        main = threading.current_thread() is threading.main_thread()
        sigterm = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(address=address, **options)
        except Exception as exc:
            where = "a local Ray instance" if address == "local" else f"the Ray cluster at {address!r}"
            raise PoolError(f"could not start or join {where}: {exc}") from exc
        if sigterm is not None:
            # ray.init takes SIGTERM over; the program's (or the Orchestrator's) handling stays.
            signal.signal(signal.SIGTERM, sigterm)
        _users = 1
        log.info("Ray started (%s)", f"local, num_cpus={num_cpus}" if address == "local" else address)
        return True


def release_ray() -> None:
    """One user that :func:`acquire_ray` counted is done; the last one shuts Ray down."""
    global _users
    import ray

    with _lock:
        _users = max(0, _users - 1)
        if _users == 0 and ray.is_initialized():
            ray.shutdown()
            log.info("Ray shut down")


def ray_client_mode() -> bool:
    """True when connected through Ray Client (``ray://``), which has no streaming generators."""
    try:
        from ray.util.client import ray as client
    except ImportError:
        return False
    return bool(client.is_connected())
