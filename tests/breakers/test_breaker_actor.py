"""The breaker actor: guards calls, publishes transitions, half-opens on a clock timer, survives restarts."""

from __future__ import annotations

import threading

import pytest

from laneway import Orchestrator
from laneway.actors import ChildSpec, ManualClock, OneForOne
from laneway.breakers import (
    BreakerActor,
    BreakerConfig,
    BreakerState,
    CallOutcome,
    CircuitBreaker,
    GetBreakerStatistics,
    GuardedCall,
)
from laneway.errors import CircuitOpen, ConfigError


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def orch(clock):
    o = Orchestrator(name="breakers", ask_timeout=10, clock=clock)
    yield o
    o.shutdown(timeout=5)


class Replies:
    """Collects call outcomes (they arrive in the breaker actor's thread)."""

    def __init__(self) -> None:
        self.items: list[CallOutcome] = []
        self._cond = threading.Condition()

    def __call__(self, outcome: CallOutcome) -> None:
        with self._cond:
            self.items.append(outcome)
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 10) -> list[CallOutcome]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= n, timeout), self.items
            return list(self.items)


def failing(done):
    done(RuntimeError("agent down"))


def test_calls_run_outside_the_actor_and_report_back(orch, clock):
    cb = CircuitBreaker("a1", BreakerConfig(), clock=clock)
    ref = orch.spawn(BreakerActor, cb, name="breaker.a1")
    replies = Replies()
    threads = []

    def start(done):
        # The work runs on its own thread; the actor only started it.
        t = threading.Thread(target=lambda: done(None, threading.current_thread().name))
        threads.append(t)
        t.start()

    ref.tell(GuardedCall(start, replies))
    [outcome] = replies.wait(1)
    assert outcome.admitted and outcome.error is None and outcome.state is BreakerState.CLOSED
    assert outcome.value != "laneway:breaker.a1"
    assert ref.ask(GetBreakerStatistics()).successes == 1


def test_transitions_are_published_and_the_timer_half_opens_it(orch, clock):
    cb = CircuitBreaker("a2", BreakerConfig(failure_threshold=2, reset_timeout_s=30), clock=clock)
    ref = orch.spawn(BreakerActor, cb, name="breaker.a2")
    replies = Replies()
    with orch.events.subscribe("agent.circuit.state") as sub:
        for _ in range(2):
            ref.tell(GuardedCall(failing, replies))
        replies.wait(2)
        opened = sub.get(timeout=10)
        assert opened.source == "a2"
        assert (opened.data["agent_id"], opened.data["from"], opened.data["to"]) == ("a2", "closed", "open")
        assert opened.data["reset_timeout_s"] == 30
        # Open: rejected at once with a typed error; the work never starts.
        started = []
        ref.tell(GuardedCall(lambda done: started.append(done), replies))
        rejected = replies.wait(3)[2]
        assert not rejected.admitted and isinstance(rejected.error, CircuitOpen) and started == []
        # The reset timer fires on the orchestrator's clock: no sleeping, no polling.
        assert clock.wait_for_timers(1)
        clock.advance(30)
        half = sub.get(timeout=10)
        assert (half.data["from"], half.data["to"]) == ("open", "half_open")
        ref.tell(GuardedCall(lambda done: done(None, "probe ok"), replies))
        closed = sub.get(timeout=10)
        assert (closed.data["from"], closed.data["to"]) == ("half_open", "closed")
    assert replies.wait(4)[3].value == "probe ok"


def test_start_raising_counts_as_a_failure(orch, clock):
    cb = CircuitBreaker("a3", BreakerConfig(failure_threshold=1), clock=clock)
    ref = orch.spawn(BreakerActor, cb, name="breaker.a3")
    replies = Replies()

    def broken_start(done):
        raise OSError("cannot start")

    ref.tell(GuardedCall(broken_start, replies))
    [outcome] = replies.wait(1)
    assert isinstance(outcome.error, OSError) and outcome.state is BreakerState.OPEN


def test_done_is_reported_once_and_outcomes_survive_the_actor_stopping(orch, clock):
    cb = CircuitBreaker("a4", BreakerConfig(failure_threshold=1), clock=clock)
    ref = orch.spawn(BreakerActor, cb, name="breaker.a4")
    replies = Replies()
    held = []
    ref.tell(GuardedCall(held.append, replies))
    assert ref.ask(GetBreakerStatistics()).calls == 1
    ref.stop()
    done = held[0]
    done(RuntimeError("late failure"))
    done(None, "ignored second report")
    [outcome] = replies.wait(1)
    assert isinstance(outcome.error, RuntimeError)
    assert cb.state is BreakerState.OPEN  # recorded directly on the thread-safe breaker


def test_a_supervised_restart_keeps_the_breaker_state_and_rearms_the_timer(orch, clock):
    cb = CircuitBreaker("a5", BreakerConfig(failure_threshold=1, reset_timeout_s=10), clock=clock)
    sup = orch.spawn_supervisor("breakers", strategy=OneForOne(max_restarts=3, within_s=5))
    ref = sup.start_child(ChildSpec(BreakerActor, name="a5", args=(cb,)))
    replies = Replies()
    ref.tell(GuardedCall(failing, replies))
    replies.wait(1)
    assert cb.state is BreakerState.OPEN
    with orch.events.subscribe(["supervisor.child.restarted", "agent.circuit.state"]) as sub:
        ref.stop()  # a permanent child: its supervisor starts a fresh incarnation
        sub.wait_for(lambda e: e.key == "supervisor.child.restarted", 10)
        assert cb.state is BreakerState.OPEN
        clock.advance(10)
        moved = sub.wait_for(lambda e: e.key == "agent.circuit.state", 10)
    assert moved.data["to"] == "half_open"


def test_needs_a_circuit_breaker(orch):
    with pytest.raises(Exception) as info:
        orch.spawn(BreakerActor, "nope", name="bad")
    assert isinstance(info.value.__cause__, ConfigError)
