"""Failover, retries, dead letters, and breakers seen through the router."""

from __future__ import annotations

import threading

import pytest

from laneway.breakers import BreakerConfig, BreakerState
from laneway.lanes import RetryPolicy
from laneway.router import AlphaRole


class AgentDown(Exception):
    pass


def always_fails(payload):
    raise AgentDown("agent is down")


def echo(name):
    return lambda payload: (name, payload)


def test_a_failed_task_fails_over_to_another_agent(orch):
    orch.register_agent("bad", "executor", {"x"}, 4, always_fails)
    orch.register_agent("good", "executor", {"x"}, 4, echo("good"))
    retry = RetryPolicy.fixed(1, 0.0)
    results = [orch.router.run(i, capabilities="x", timeout=10, retry=retry) for i in range(6)]
    assert results == [("good", i) for i in range(6)]
    bad = orch.router.agent("bad")
    assert bad.failed >= 1  # some tasks went to it first and moved on
    assert orch.router.statistics().retries == bad.failed


def test_without_retries_the_handler_error_reaches_the_caller_and_the_dead_letters(orch):
    orch.register_agent("bad", "executor", {"x"}, 1, always_fails)
    with pytest.raises(AgentDown, match="agent is down"):
        orch.router.run({"job": 1}, capabilities="x", timeout=10, retry=RetryPolicy.none())
    [letter] = orch.dead_letters.list("router")
    assert letter.attempts == 1 and "AgentDown" in letter.error and "retries used up" in letter.reason
    assert letter.payload.payload == {"job": 1}


def test_errors_in_no_retry_on_are_not_retried(orch):
    calls = []

    def reject(payload):
        calls.append(payload)
        raise ValueError("invalid input")

    orch.register_agent("v1", "validator", {"check"}, 2, reject)
    orch.register_agent("v2", "validator", {"check"}, 2, reject)
    with pytest.raises(ValueError):
        orch.router.run(1, capabilities="check", timeout=10, retry=RetryPolicy.fixed(3, 0, no_retry_on=(ValueError,)))
    assert calls == [1]


def test_every_attempt_failing_ends_with_the_last_error(orch):
    errors = iter(range(100))

    def numbered(payload):
        raise AgentDown(f"failure {next(errors)}")

    orch.register_agent("a", "executor", {"x"}, 1, numbered)
    orch.register_agent("b", "executor", {"x"}, 1, numbered)
    with pytest.raises(AgentDown, match="failure 2"):
        orch.router.run(1, capabilities="x", timeout=10, retry=RetryPolicy.fixed(2, 0.0))
    assert orch.dead_letters.list("router")[0].attempts == 3


def test_retry_delays_run_on_the_clock(manual_orch, clock):
    orch = manual_orch
    orch.register_agent("bad", "executor", {"x"}, 1, always_fails, breaker={"failure_threshold": 10})
    fut = orch.router.submit(1, capabilities="x", retry=RetryPolicy.fixed(1, 5.0))
    assert clock.wait_for_timers(1)  # the retry timer: attempt 1 failed
    stats = orch.router.statistics()
    assert (stats.retry_pending, stats.retries) == (1, 1)
    orch.register_agent("good", "executor", {"x"}, 1, echo("good"))
    clock.advance(5)
    assert fut.get(10) == ("good", 1)


def test_ten_agents_two_keep_failing_and_all_work_completes_on_the_others(orch):
    orch.start_router(breaker=BreakerConfig(failure_threshold=3, reset_timeout_s=600))
    bad = {"agent-3", "agent-7"}
    for n in range(10):
        agent_id = f"agent-{n}"
        handler = always_fails if agent_id in bad else echo(agent_id)
        orch.register_agent(agent_id, AlphaRole.EXECUTOR, {"work"}, 4, handler)
    with orch.events.subscribe("agent.circuit.state") as sub:
        futures = [orch.router.submit(i, capabilities="work", timeout=30, retry=RetryPolicy.fixed(4, 0.0)) for i in range(300)]
        results = [f.get(30) for f in futures]
        opened = {e.data["agent_id"] for e in sub.drain() if e.data["to"] == "open"}
    assert [payload for _, payload in results] == list(range(300))
    assert {agent for agent, _ in results}.isdisjoint(bad)
    assert opened == bad
    infos = {a.agent_id: a for a in orch.router.agents()}
    assert sum(a.completed for a in infos.values()) == 300
    for agent_id in bad:
        info = infos[agent_id]
        assert info.breaker is BreakerState.OPEN and info.completed == 0
        # Once open it gets nothing more: at most the threshold plus what was in flight when it tripped.
        assert 3 <= info.failed <= 3 + info.max_concurrent
    assert orch.router.statistics().failed == 0
    assert orch.dead_letters.list("router") == []


def test_an_open_breaker_is_routed_around_and_a_half_open_one_wakes_the_waiting_task(manual_orch, clock):
    orch = manual_orch
    healthy = threading.Event()

    def flaky(payload):
        if not healthy.is_set():
            raise AgentDown("still down")
        return payload

    orch.register_agent("flaky", "executor", {"x"}, 3, flaky, breaker={"failure_threshold": 1, "reset_timeout_s": 10})
    with orch.events.subscribe("agent.circuit.state") as sub:
        with pytest.raises(AgentDown):
            orch.router.run(1, capabilities="x", retry=RetryPolicy.none())
        assert sub.get(10).data["to"] == "open"
        waiting = orch.router.submit(2, capabilities="x")  # no timeout: waits for the breaker
        assert orch.router.statistics().waiting == 1
        assert orch.router.agent("flaky").breaker is BreakerState.OPEN
        healthy.set()
        assert clock.wait_for_timers(1)
        clock.advance(10)  # reset timeout: half-open wakes the router; the waiting task is the probe
        assert waiting.get(10) == 2
        assert [sub.get(10).data["to"] for _ in range(2)] == ["half_open", "closed"]


def test_only_one_probe_goes_through_a_half_open_breaker(manual_orch, clock, gate):
    orch = manual_orch
    mode = {"fail": True}

    def handler(payload):
        if mode["fail"]:
            raise AgentDown("down")
        return gate(payload)

    orch.register_agent("p", "executor", {"x"}, 5, handler, breaker={"failure_threshold": 1, "reset_timeout_s": 1})
    with pytest.raises(AgentDown):
        orch.router.run(0, capabilities="x", retry=RetryPolicy.none())
    mode["fail"] = False
    futures = [orch.router.submit(i, capabilities="x") for i in range(1, 4)]
    assert orch.router.statistics().waiting == 3
    assert clock.wait_for_timers(1)
    clock.advance(1)
    gate.wait_entered(1)
    info = orch.router.agent("p")
    assert (info.breaker, info.in_flight) == (BreakerState.HALF_OPEN, 1)
    assert orch.router.statistics().waiting == 2
    gate.open()
    assert [f.get(10) for f in futures] == [1, 2, 3]
    assert orch.router.agent("p").breaker is BreakerState.CLOSED


def test_a_tripped_breaker_sends_work_elsewhere_and_reset_brings_it_back(orch):
    orch.register_agent("a", "executor", {"x"}, 2, echo("a"))
    orch.register_agent("b", "executor", {"x"}, 2, echo("b"))
    orch.router.breaker("a").trip()
    assert {orch.router.run(i, capabilities="x", timeout=10)[0] for i in range(4)} == {"b"}
    orch.router.breaker("a").reset()
    assert "a" in {orch.router.run(i, capabilities="x", timeout=10)[0] for i in range(4)}


def test_dead_letters_persist_in_sqlite_and_resubmit_after_a_restart(tmp_path):
    from laneway import Orchestrator

    path = tmp_path / "laneway.db"
    with Orchestrator(name="first", store=str(path)) as orch:
        orch.register_agent("bad", "executor", {"x"}, 1, always_fails)
        with pytest.raises(AgentDown):
            orch.router.run({"doc": 7}, capabilities="x", role="executor", context={"wf": "w1"}, timeout=10,
                            retry=RetryPolicy.none())
    with Orchestrator(name="second", store=str(path)) as orch:
        [letter] = orch.dead_letters.list("router")
        assert letter.payload.payload == {"doc": 7} and letter.payload.role is AlphaRole.EXECUTOR
        orch.register_agent("good", "executor", {"x"}, 1, lambda payload, ctx: (payload, ctx))
        assert orch.dead_letters.resubmit(letter.id).get(10) == ({"doc": 7}, {"wf": "w1"})
        assert orch.dead_letters.list("router") == []
