from __future__ import annotations

import threading

import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock


@pytest.fixture
def orch():
    o = Orchestrator(name="routing", ask_timeout=10)
    yield o
    o.shutdown(timeout=5)


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def manual_orch(clock):
    o = Orchestrator(name="routing", ask_timeout=10, clock=clock)
    yield o
    o.shutdown(timeout=5)


class Gate:
    """Handlers block on it until the test opens it; counts who is inside (never sleeps)."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self._cond = threading.Condition()
        self.inside = 0
        self.entered = 0

    def __call__(self, payload):
        with self._cond:
            self.inside += 1
            self.entered += 1
            self._cond.notify_all()
        try:
            assert self.opened.wait(30), "gate never opened"
        finally:
            with self._cond:
                self.inside -= 1
        return payload

    def wait_entered(self, n: int, timeout: float = 20) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.entered >= n, timeout), f"{self.entered} < {n} entered"

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.open()
