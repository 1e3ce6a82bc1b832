"""Fixtures for the pool suite: orchestrators, pools over every backend, process checks."""

from __future__ import annotations

import os
import select
import time

import psutil
import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock
from tests.waiting import wait_until  # noqa: F401  (the pool tests import it from here)

#: Backends the process tests run over (the Ray helper appends its own param here).
BACKENDS = [pytest.param("zmq", id="zmq")]


@pytest.fixture
def orch():
    o = Orchestrator(name="pooltest", ask_timeout=30)
    yield o
    o.shutdown(timeout=3)


@pytest.fixture
def manual_orch():
    o = Orchestrator(name="pooltest", ask_timeout=30, clock=ManualClock())
    yield o
    o.shutdown(timeout=0.5)  # fake backends leave tasks in flight; do not wait for them


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def make_pool(orch, backend):
    """Start a pool on ``orch`` with the parametrized backend; waits until its workers connected."""

    def make(*, ready: bool = True, **config):
        pool = orch.start_pool(backend=backend, **config)
        if ready:
            assert pool.wait_ready(timeout=60), pool.workers()
        return pool

    return make


def child_pids() -> set[int]:
    """Pids of every live descendant of this test process."""
    return {p.pid for p in psutil.Process(os.getpid()).children(recursive=True) if _alive(p)}


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids, timeout: float = 15.0) -> set[int]:
    """Wait until none of ``pids`` runs (zombies count as gone); returns those alive at the deadline.

    Waits on a pidfd per process, which turns readable when the process ends and,
    unlike waiting on the process, never reaps a child behind the pool's back.
    """
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass  # already gone (and reaped)
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        alive = set(fds)
        while alive and (left := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                alive.discard(fd)
        return {fds[fd] for fd in alive}
    finally:
        for fd in fds:
            os.close(fd)


