import itertools
import os
import signal

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


@pytest.fixture(scope="module")
def ray_module():
    """A local Ray instance for one test module (the pool's Ray tests start their own per module too)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_ADDRESS", "local")
    started = not ray.is_initialized()
    before = signal.getsignal(signal.SIGTERM)
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
    signal.signal(signal.SIGTERM, before)  # ray.init installs its own, which would outlive it


@pytest.fixture(
    params=[
        "thread",
        pytest.param("process", marks=pytest.mark.multiprocess),
        pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.multiprocess]),
    ]
)
def placement(request):
    """Where the test's actors run: the suite holds for every placement (as Thespian runs one suite per system base)."""
    if request.param == "ray":
        request.getfixturevalue("ray_module")
    return request.param


@pytest.fixture
def gates(tmp_path):
    """Makes cross-process gates: ``gate = gates()``."""
    counter = itertools.count()
    return lambda: Gate(tmp_path / f"gate-{next(counter)}")
