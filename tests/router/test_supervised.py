"""The router actor is supervised: a crash in one of its handlers leaves no task hanging and the router working."""

from __future__ import annotations

import threading

import pytest

from laneway.errors import RouterRestarted, SystemShutdown
from laneway.lanes import RetryPolicy
from laneway.router._actor import RouterActor

WAIT = 20


class CrashOnce:
    """Replaces a RouterActor method: the first call raises (a bug in the router), later calls run the original."""

    def __init__(self, original, times: int = 1) -> None:
        self.original = original
        self.left = times
        self.crashed = threading.Event()

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return lambda *args, **kwargs: self(instance, *args, **kwargs)

    def __call__(self, actor, *args, **kwargs):
        if self.left:
            self.left -= 1
            self.crashed.set()
            raise RuntimeError("router bug (injected)")
        return self.original(actor, *args, **kwargs)


def _restarted(orch):
    seen = threading.Event()
    orch.events.add_listener(
        lambda e: seen.set() if e.data.get("child") == "actor" else None, "supervisor.child.restarted"
    )
    return seen


@pytest.mark.timeout(60)
def test_a_crash_while_an_agent_runs_a_task_fails_it_typed_and_routes_the_waiting_ones(orch, gate, monkeypatch):
    orch.register_agent("a", "executor", {"x"}, 1, gate)
    router = orch.router
    restarted = _restarted(orch)
    running = router.submit("first", capabilities="x", timeout=WAIT, retry=RetryPolicy.none())
    gate.wait_entered(1)
    waiting = router.submit("second", capabilities="x", timeout=WAIT, retry=RetryPolicy.none())
    # The router crashes handling the first task's outcome (a bug in its bookkeeping).
    crash = CrashOnce(RouterActor._account)
    monkeypatch.setattr(RouterActor, "_account", crash)
    gate.open()
    assert crash.crashed.wait(WAIT)
    with pytest.raises(RouterRestarted, match="crashed while agent a ran task"):
        running.get(WAIT)
    assert waiting.get(WAIT) == "second"  # had not started: routed again by the restarted router
    # The supervisor announces the restart after the new router started, which may already have routed "second".
    assert restarted.wait(WAIT)
    assert router.run("third", capabilities="x", timeout=WAIT) == "third"
    assert router.wait_idle(WAIT)
    [letter] = orch.dead_letters.list("router")
    assert isinstance(letter.error, RouterRestarted) or "RouterRestarted" in repr(letter.error)
    assert [a.agent_id for a in router.agents()] == ["a"]
    assert router.agent("a").in_flight == 0


@pytest.mark.timeout(60)
def test_a_task_whose_submit_crashed_the_router_is_taken_over_not_lost(orch, monkeypatch):
    orch.register_agent("a", "executor", {"x"}, 2, str.upper)
    router = orch.router
    crash = CrashOnce(RouterActor._accept)
    monkeypatch.setattr(RouterActor, "_accept", crash)
    future = router.submit("lost?", capabilities="x", timeout=WAIT)
    assert crash.crashed.wait(WAIT)
    assert future.get(WAIT) == "LOST?"
    assert router.run("later", capabilities="x", timeout=WAIT) == "LATER"
    assert router.wait_idle(WAIT)


@pytest.mark.timeout(60)
def test_a_router_that_keeps_crashing_stops_for_good_and_fails_its_tasks(orch, monkeypatch):
    orch.register_agent("a", "executor", {"x"}, 2, str.upper)
    router = orch.router
    gave_up = threading.Event()
    orch.events.add_listener(lambda e: gave_up.set(), "supervisor.escalated")
    crash = CrashOnce(RouterActor._route, times=1_000)
    monkeypatch.setattr(RouterActor, "_route", crash)
    future = router.submit("doomed", capabilities="x", timeout=None)
    assert gave_up.wait(WAIT)
    with pytest.raises(SystemShutdown, match="crashed too often"):
        future.get(WAIT)
    with pytest.raises(SystemShutdown):
        router.submit("after", capabilities="x")
    assert router.wait_idle(WAIT)
