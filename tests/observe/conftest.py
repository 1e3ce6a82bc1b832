from __future__ import annotations

import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def orch(clock):
    o = Orchestrator(name="observe-test", clock=clock, shutdown_timeout=5.0)
    yield o
    o.shutdown()
