"""Routed tasks carry a priority, the router's queue is bounded, and a refused registration leaves nothing behind."""

from __future__ import annotations

import threading

import pytest

from laneway.errors import ActorDead, ConfigError, LaneFull, SystemShutdown
from laneway.lanes import Priority
from laneway.router import AlphaRole

WAIT = 20


class OrderedGate:
    """A one-at-a-time agent handler: the first call blocks until opened; records the order payloads ran in."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.order: list = []

    def __call__(self, payload):
        self.order.append(payload)
        self.entered.set()
        assert self.opened.wait(WAIT), "gate never opened"
        return payload


def test_waiting_tasks_are_dispatched_by_priority_then_age(orch):
    gate = OrderedGate()
    orch.register_agent("solo", AlphaRole.EXECUTOR, {"x"}, 1, gate)
    router = orch.router
    first = router.submit("busy", capabilities={"x"})
    assert gate.entered.wait(WAIT)
    futures = [
        router.submit("low", capabilities={"x"}, priority=Priority.LOW),
        router.submit("normal-1", capabilities={"x"}, priority=2),
        router.submit("background", capabilities={"x"}, priority=4),
        router.submit("critical", capabilities={"x"}, priority=Priority.CRITICAL),
        router.submit("normal-2", capabilities={"x"}, priority=None),
        router.submit("high", capabilities={"x"}, priority=1),
    ]
    assert router.statistics().waiting == 6  # processed after every Route: all are queued
    gate.opened.set()
    assert [f.get(WAIT) for f in [first, *futures]] == ["busy", "low", "normal-1", "background", "critical", "normal-2", "high"]
    assert gate.order == ["busy", "critical", "high", "normal-1", "normal-2", "low", "background"]


@pytest.mark.parametrize("bad", [5, -1, "high", 1.0, True])
def test_a_bad_priority_is_a_config_error_naming_the_scale(orch, bad):
    orch.register_agent("a", AlphaRole.EXECUTOR, {"x"}, 1, str)
    with pytest.raises(ConfigError, match=r"priority must be a Priority or an int from 0 \(CRITICAL"):
        orch.router.submit("p", capabilities={"x"}, priority=bad)
    with pytest.raises(ConfigError, match="priority"):
        orch.router.submit_nowait("p", capabilities={"x"}, priority=bad)


def test_the_queue_is_bounded_with_the_lanes_backpressure(orch):
    gate = OrderedGate()
    router = orch.start_router(max_pending=2)
    router.register_agent("solo", AlphaRole.EXECUTOR, {"x"}, 1, gate)
    running = router.submit("running", capabilities={"x"})
    assert gate.entered.wait(WAIT)
    queued = [router.submit(f"q{i}", capabilities={"x"}) for i in range(2)]
    with pytest.raises(LaneFull, match="router router is full"):
        router.submit("refused", capabilities={"x"}, block_timeout=0)
    with pytest.raises(LaneFull, match="stayed full"):
        router.submit("refused", capabilities={"x"}, block_timeout=0.05)
    # A blocked submit gets in once a queued task starts.
    started = threading.Event()
    late: list = []

    def submit_blocking():
        late.append(router.submit("late", capabilities={"x"}, block_timeout=WAIT))
        started.set()

    t = threading.Thread(target=submit_blocking)
    t.start()
    gate.opened.set()
    assert started.wait(WAIT)
    t.join(WAIT)
    assert [f.get(WAIT) for f in [running, *queued, *late]] == ["running", "q0", "q1", "late"]
    assert "refused" not in gate.order
    assert router.wait_idle(WAIT)


def test_a_submit_waiting_for_room_is_woken_by_shutdown(orch):
    gate = OrderedGate()
    router = orch.start_router(max_pending=1)
    router.register_agent("solo", AlphaRole.EXECUTOR, {"x"}, 1, gate)
    router.submit("running", capabilities={"x"})
    assert gate.entered.wait(WAIT)
    router.submit("queued", capabilities={"x"})
    outcome: list = []

    def submit_blocking():
        try:
            router.submit("late", capabilities={"x"}, block_timeout=WAIT)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=submit_blocking)
    t.start()
    closer = threading.Thread(target=router.close, kwargs={"timeout": WAIT})
    closer.start()  # waits for the running task, which waits for the gate
    t.join(WAIT)
    assert not t.is_alive() and len(outcome) == 1 and isinstance(outcome[0], SystemShutdown)
    gate.opened.set()
    closer.join(WAIT)
    assert not closer.is_alive()


def test_bad_queue_options_are_config_errors(orch):
    with pytest.raises(ConfigError, match="max_pending must be an int >= 1"):
        orch.start_router(max_pending=0)
    orch.register_agent("a", AlphaRole.EXECUTOR, {"x"}, 1, str)
    with pytest.raises(ConfigError, match="block_timeout"):
        orch.router.submit("p", capabilities={"x"}, block_timeout=-1)


def test_a_failed_registration_leaves_no_breaker_actor_behind(orch):
    router = orch.router
    router._supervisor.stop(timeout=WAIT)  # the router actor is gone for good: Register cannot be answered
    with pytest.raises(ActorDead):
        router.register_agent("a", AlphaRole.EXECUTOR, {"x"}, 1, str)
    assert router._breakers.which_children() == []
    with pytest.raises(LookupError):
        orch.lookup("router.breakers/a")
