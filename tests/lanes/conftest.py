from __future__ import annotations

import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock

from tests.lanes.support import Recorder


@pytest.fixture
def orch():
    o = Orchestrator(name="lanes-test", ask_timeout=20, shutdown_timeout=5)
    yield o
    o.shutdown(timeout=5)


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def morch(clock):
    o = Orchestrator(name="lanes-manual", clock=clock, ask_timeout=20, shutdown_timeout=5)
    yield o
    o.shutdown(timeout=5)


@pytest.fixture
def rec():
    r = Recorder()
    yield r
    r.release_all()  # never leave a worker thread held at a gate
