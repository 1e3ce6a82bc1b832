import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock


@pytest.fixture
def orch():
    o = Orchestrator(name="test", ask_timeout=10)
    yield o
    o.shutdown(timeout=5)


@pytest.fixture
def manual_orch():
    o = Orchestrator(name="test", ask_timeout=10, clock=ManualClock())
    yield o
    o.shutdown(timeout=5)
