"""register_agent(..., placement="process"): an agent's handler in its own process, behind the router and breaker."""

from __future__ import annotations

import os
import signal

import pytest

from laneway import Orchestrator, errors
from laneway.lanes import RetryPolicy
from tests.waiting import poll, wait_until

pytestmark = pytest.mark.multiprocess


def where(payload):
    if payload == "fail":
        raise ValueError("bad payload")
    if isinstance(payload, str) and payload.startswith("wait:"):
        open(payload[5:] + ".running", "w").close()
        poll(lambda: os.path.exists(payload[5:]), 30)
    return os.getpid()


@pytest.fixture
def orch():
    o = Orchestrator(name="agents", ask_timeout=30)
    yield o
    o.shutdown(timeout=5)


def test_a_process_agent_runs_in_its_own_process_behind_its_breaker(orch):
    orch.register_agent("w", "executor", {"pid"}, 1, where, placement="process")
    pid = orch.router.run("p", capabilities="pid", timeout=30)
    assert pid != os.getpid()
    with pytest.raises(ValueError, match="bad payload"):
        orch.router.run("fail", capabilities="pid", timeout=30, retry=RetryPolicy.none())
    assert orch.router.agent("w").failed == 1
    assert orch.router.run("p", capabilities="pid", timeout=30) == pid  # a handler error is no crash


def test_a_killed_agent_process_fails_the_call_and_comes_back(orch, tmp_path):
    orch.register_agent("w", "executor", {"pid"}, 1, where, placement="process")
    pid = orch.router.run("p", capabilities="pid", timeout=30)
    gate = tmp_path / "gate"
    fut = orch.router.submit(f"wait:{gate}", capabilities="pid", timeout=30, retry=RetryPolicy.none())
    wait_until(lambda: os.path.exists(f"{gate}.running"), 30, what="the handler to run")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(errors.ActorProcessDied) as info:
        fut.get(30)
    assert info.value.pid == pid and "SIGKILL" in str(info.value)
    with orch.events.subscribe("supervisor.child.restarted") as sub:
        if not orch.lookup("agent.w/fn").is_alive():
            sub.get(timeout=30)
    assert orch.router.run("p", capabilities="pid", timeout=30) not in (pid, os.getpid())


def test_unregistering_a_process_agent_stops_its_process(orch):
    orch.register_agent("w", "executor", {"pid"}, 1, where, placement="process")
    sup = orch.lookup("agent.w")
    orch.unregister_agent("w")
    assert not sup.is_alive()
    with pytest.raises(errors.ConfigError, match="placement must be one of"):
        orch.register_agent("x", "executor", {"pid"}, 1, where, placement="gpu")
