import itertools

import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock
from tests.actors.support import Gate


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


@pytest.fixture(params=["thread", pytest.param("process", marks=pytest.mark.multiprocess)])
def placement(request):
    """Where the test's actors run: the suite holds for every placement (as Thespian runs one suite per system base)."""
    return request.param


@pytest.fixture
def gates(tmp_path):
    """Makes cross-process gates: ``gate = gates()``."""
    counter = itertools.count()
    return lambda: Gate(tmp_path / f"gate-{next(counter)}")
