"""Routing by capability, role and load; waiting; handlers; introspection; validation."""

from __future__ import annotations

import asyncio
import collections

import pytest

from laneway.breakers import BreakerConfig, BreakerState
from laneway.errors import (
    AgentNotFound,
    AgentTimeout,
    ConfigError,
    NoCapableAgent,
    NoEligibleAgent,
    SystemShutdown,
)
from laneway.lanes import RetryPolicy
from laneway.router import AgentInfo, AlphaRole, RoutedWork, RoutingStrategy

def tagger(name):
    return lambda payload: (name, payload)


def test_routes_only_to_agents_with_every_capability_and_the_role(orch):
    orch.register_agent("both", AlphaRole.ANALYZER, {"sql", "py"}, 2, tagger("both"))
    orch.register_agent("py-exec", "executor", ["py"], 2, tagger("py-exec"))
    orch.register_agent("other", "α1", "web", 2, tagger("other"))
    router = orch.router
    assert router.run(1, capabilities={"sql", "py"}, timeout=10) == ("both", 1)
    assert router.run(2, capabilities="py", role=AlphaRole.EXECUTOR, timeout=10) == ("py-exec", 2)
    assert router.run(3, capabilities=["web"], role="observer", timeout=10) == ("other", 3)
    seen = {router.run(i, capabilities="py", timeout=10)[0] for i in range(6)}
    assert seen == {"both", "py-exec"}


def test_no_agent_with_the_capability_fails_at_once_without_a_dead_letter(orch):
    orch.register_agent("a", "executor", {"py"}, 1, tagger("a"))
    with pytest.raises(NoCapableAgent, match="sql"):
        orch.router.run(1, capabilities={"py", "sql"})  # no timeout: it would hang if it waited
    with pytest.raises(NoCapableAgent, match="validator"):
        orch.router.run(1, capabilities={"py"}, role=AlphaRole.VALIDATOR)
    assert orch.dead_letters.list("router") == []
    assert orch.router.statistics().failed == 2


def test_a_task_waits_for_capacity_and_runs_when_it_frees(orch, gate):
    orch.register_agent("solo", "executor", {"x"}, 1, gate)
    first = orch.router.submit("first", capabilities="x")
    gate.wait_entered(1)
    second = orch.router.submit("second", capabilities="x")
    stats = orch.router.statistics()
    assert (stats.running, stats.waiting) == (1, 1)
    assert orch.router.agent("solo").in_flight == 1
    gate.open()
    assert (first.get(10), second.get(10)) == ("first", "second")
    assert orch.router.wait_idle(10)
    assert orch.router.agent("solo").completed == 2


def test_a_waiting_task_fails_with_no_eligible_agent_after_its_timeout(manual_orch, clock, gate):
    orch = manual_orch
    orch.register_agent("solo", "executor", {"x"}, 1, gate)
    orch.router.submit("busy", capabilities="x")
    gate.wait_entered(1)
    late = orch.router.submit({"n": 2}, capabilities="x", timeout=5, context="ctx-1")
    assert clock.wait_for_timers(1)
    clock.advance(4.9)
    assert not late.done()
    clock.advance(0.1)
    with pytest.raises(NoEligibleAgent, match="within 5.0s"):
        late.get(10)
    [letter] = orch.dead_letters.list("router")
    assert letter.work_id and letter.attempts == 0 and "deadline" in letter.reason
    assert letter.payload == RoutedWork({"n": 2}, ("x",), None, "ctx-1", orch.router.retry)
    gate.open()
    # A dead letter goes back through the router when resubmitted.
    assert orch.dead_letters.resubmit(letter.id).get(10) == {"n": 2}


def test_least_busy_spreads_by_load_ratio(orch, gate):
    orch.register_agent("big", "executor", {"x"}, 4, gate)
    orch.register_agent("small", "executor", {"x"}, 1, gate)
    futures = [orch.router.submit(i, capabilities="x") for i in range(3)]
    gate.wait_entered(3)
    load = {a.agent_id: a.in_flight for a in orch.router.agents()}
    # big:2/4 and small:1/1, whichever order they came in: never small:0 while big has 2.
    assert load == {"big": 2, "small": 1}
    gate.open()
    assert [f.get(10) for f in futures] == [0, 1, 2]


def test_round_robin_cycles_through_agents(orch):
    router = orch.start_router(strategy="round_robin")
    for name in "abc":
        orch.register_agent(name, "executor", {"x"}, 5, tagger(name))
    order = [router.run(i, capabilities="x", timeout=10)[0] for i in range(9)]
    assert sorted(order[:3]) == ["a", "b", "c"]
    assert order[3:6] == order[:3] and order[6:] == order[:3]


def test_random_strategy_follows_weights(orch):
    router = orch.start_router(strategy=RoutingStrategy.RANDOM, seed=7)
    orch.register_agent("light", "executor", {"x"}, 50, tagger("light"), weight=1)
    orch.register_agent("heavy", "executor", {"x"}, 50, tagger("heavy"), weight=9)
    counts = collections.Counter(router.run(i, capabilities="x", timeout=10)[0] for i in range(60))
    assert counts["heavy"] > 2 * counts["light"]


def test_async_handlers_and_ctx(orch):
    async def summarize(payload, ctx):
        await asyncio.sleep(0)
        return f"{payload}@{ctx['step']}"

    def check(payload, *, ctx=None):
        return (payload, ctx)

    def plain(payload):
        return payload * 2

    orch.register_agent("summ", AlphaRole.COMPRESSOR, {"summarize"}, 2, summarize)
    orch.register_agent("check", AlphaRole.VALIDATOR, {"check"}, 2, check)
    orch.register_agent("plain", AlphaRole.EXECUTOR, {"double"}, 2, plain)
    router = orch.router
    assert router.run("doc", capabilities="summarize", context={"step": 3}, timeout=10) == "doc@3"
    assert router.run("x", capabilities="check", context="wf-1", timeout=10) == ("x", "wf-1")
    assert router.run(21, capabilities="double", context="ignored", timeout=10) == 42

    async def from_asyncio():
        return await router.submit(5, capabilities="double", timeout=10)

    assert asyncio.run(from_asyncio()) == 10


def test_task_events_carry_agent_and_latency_and_introspection_adds_up(orch):
    def work(payload):
        if payload == "bad":
            raise ValueError("bad payload")
        return payload

    orch.register_agent("w", "executor", {"x"}, 2, work)
    with orch.events.subscribe("agent.task") as sub:
        assert orch.router.run("ok", capabilities="x", timeout=10) == "ok"
        with pytest.raises(ValueError):
            orch.router.run("bad", capabilities="x", timeout=10, retry=RetryPolicy.none())
        keys = [sub.get(10) for _ in range(4)]
    assert [e.key for e in keys] == ["agent.task.started", "agent.task.completed", "agent.task.started", "agent.task.failed"]
    done = keys[1]
    assert done.source == "w" and done.data["agent_id"] == "w" and done.data["latency_s"] >= 0
    assert "bad payload" in keys[3].data["error"]
    info = orch.router.agent("w")
    assert isinstance(info, AgentInfo)
    assert (info.completed, info.failed, info.in_flight, info.load) == (1, 1, 0, 0.0)
    assert info.breaker is BreakerState.CLOSED and info.mean_latency_s is not None
    assert info.capabilities == frozenset({"x"}) and info.role is AlphaRole.EXECUTOR
    stats = orch.router.statistics()
    assert (stats.submitted, stats.completed, stats.failed, stats.dead_lettered, stats.agents) == (2, 1, 1, 1, 1)


@pytest.mark.parametrize(
    "args, options, word",
    [
        (("", "executor", {"x"}, 1), {}, "agent_id"),
        (("a/b", "executor", {"x"}, 1), {}, "agent_id"),
        (("a", "wizard", {"x"}, 1), {}, "role"),
        (("a", "executor", {""}, 1), {}, "capabilities"),
        (("a", "executor", 5, 1), {}, "capabilities"),
        (("a", "executor", {"x"}, 0), {}, "max_concurrent"),
        (("a", "executor", {"x"}, 1), {"colour": "red"}, "colour"),
        (("a", "executor", {"x"}, 1), {"weight": 0}, "weight"),
        (("a", "executor", {"x"}, 1), {"breaker": {"fail_max": 1}}, "fail_max"),
        (("a", "executor", {"x"}, 1), {"breaker": "strict"}, "breaker"),
    ],
)
def test_bad_registrations_raise_config_errors_naming_the_problem(orch, args, options, word):
    with pytest.raises(ConfigError, match=word):
        orch.register_agent(*args, tagger("a"), **options)


def test_handler_checks_and_duplicate_ids(orch):
    async def coro(payload):
        return payload

    with pytest.raises(ConfigError, match="callable"):
        orch.register_agent("a", "executor", {"x"}, 1, "not callable")
    with pytest.raises(ConfigError, match="async"):
        orch.register_agent("a", "executor", {"x"}, 1, coro, cpu_bound=True)
    orch.register_agent("a", "executor", {"x"}, 1, tagger("a"))
    with pytest.raises(ConfigError, match="already registered"):
        orch.register_agent("a", "executor", {"y"}, 1, tagger("a"))
    with pytest.raises(ConfigError, match="timeout"):
        orch.router.submit(1, capabilities="x", timeout=-1)
    with pytest.raises(ConfigError, match="retry"):
        orch.router.submit(1, capabilities="x", retry=3)


def test_per_agent_breaker_overrides_the_router_default(orch):
    orch.start_router(breaker=BreakerConfig(failure_threshold=7))
    orch.register_agent("strict", "executor", {"x"}, 1, tagger("s"), breaker={"failure_threshold": 1})
    orch.register_agent("lenient", "executor", {"x"}, 1, tagger("l"))
    assert orch.router.breaker("strict").config.failure_threshold == 1
    assert orch.router.breaker("lenient").config.failure_threshold == 7
    with pytest.raises(AgentNotFound):
        orch.router.breaker("nobody")


def test_unregistering_the_last_capable_agent_fails_its_waiting_tasks(orch, gate):
    orch.register_agent("only", "executor", {"x"}, 1, gate)
    orch.router.submit("running", capabilities="x")
    gate.wait_entered(1)
    waiting = orch.router.submit("waiting", capabilities="x")
    info = orch.router.unregister_agent("only")
    assert info.agent_id == "only"
    with pytest.raises(NoCapableAgent):
        waiting.get(10)
    assert [a.agent_id for a in orch.router.agents()] == []
    with pytest.raises(AgentNotFound):
        orch.router.unregister_agent("only")
    with pytest.raises(AgentNotFound):
        orch.router.agent("only")
    gate.open()
    assert orch.router.wait_idle(10)
    # Its breaker actor stops once its last task ended.
    assert orch.router._breakers.which_children() == []


def test_cancelling_the_future_withdraws_a_waiting_task(orch, gate):
    orch.register_agent("solo", "executor", {"x"}, 1, gate)
    orch.router.submit("running", capabilities="x")
    gate.wait_entered(1)
    waiting = orch.router.submit("waiting", capabilities="x")
    assert waiting.cancel()
    gate.open()
    assert orch.router.wait_idle(10)
    assert gate.entered == 1
    assert orch.router.statistics().failed == 1
    assert orch.dead_letters.list("router") == []


def test_a_running_async_task_past_its_deadline_is_cancelled(manual_orch, clock):
    async def stuck(payload):
        await asyncio.Future()  # never finishes on its own

    orch = manual_orch
    orch.register_agent("stuck", "executor", {"x"}, 1, stuck)
    with orch.events.subscribe("agent.task") as sub:
        fut = orch.router.submit(1, capabilities="x", timeout=3, retry=RetryPolicy.none())
        sub.wait_for(lambda e: e.key == "agent.task.started", 10)
        clock.advance(3)
        with pytest.raises(AgentTimeout, match="within 3.0s"):
            fut.get(10)
        failed = sub.wait_for(lambda e: e.key == "agent.task.failed", 10)
    assert "AgentTimeout" in failed.data["error"]
    assert orch.router.wait_idle(10)
    assert orch.router.agent("stuck").in_flight == 0


def test_shutdown_fails_waiting_tasks_into_dead_letters_and_refuses_new_work(orch, gate):
    orch.register_agent("solo", "executor", {"x"}, 1, gate)
    running = orch.router.submit("running", capabilities="x")
    gate.wait_entered(1)
    waiting = orch.router.submit("waiting", capabilities="x")
    gate.open()
    orch.router.close(timeout=10)
    assert running.get(10) == "running"
    with pytest.raises(SystemShutdown):
        waiting.get(10)
    with pytest.raises(SystemShutdown):
        orch.router.submit("late", capabilities="x")
    letters = orch.dead_letters.list("router")
    assert [letter.payload.payload for letter in letters] == ["waiting"]


def test_roles_have_numbers_symbols_and_meanings():
    assert len(AlphaRole) == 10
    assert [r.symbol for r in AlphaRole] == [f"α{n}" for n in range(1, 11)]
    assert AlphaRole.OBSERVER.meaning.startswith("observe and collect")
    assert AlphaRole.coerce(10) is AlphaRole.COORDINATOR
    assert AlphaRole.coerce("Alpha4") is AlphaRole.ORCHESTRATOR
    for bad in (0, 11, True, "alpha", None):
        with pytest.raises(ConfigError):
            AlphaRole.coerce(bad)
    with pytest.raises(ConfigError, match="strategy"):
        RoutingStrategy.coerce("fastest")


def test_submit_nowait_starts_now_or_raises_without_queueing(orch, gate):
    orch.register_agent("solo", "executor", {"x"}, 1, gate)
    first = orch.router.submit_nowait("first", capabilities="x")
    gate.wait_entered(1)
    with pytest.raises(NoEligibleAgent, match="eligible now"):
        orch.router.submit_nowait("second", capabilities="x")
    with pytest.raises(NoCapableAgent):
        orch.router.submit_nowait("third", capabilities="y")
    assert orch.router.statistics().waiting == 0
    gate.open()
    assert first.get(10) == "first"
    assert orch.router.wait_idle(10)
    assert orch.router.statistics().submitted == 1


def test_a_caller_cancelling_a_running_async_task_does_not_count_against_the_agent(orch):
    async def forever(payload):
        await asyncio.Future()

    orch.register_agent("slow", "executor", {"x"}, 1, forever, breaker={"failure_threshold": 1})
    with orch.events.subscribe("agent.task") as sub:
        fut = orch.router.submit(1, capabilities="x")
        sub.wait_for(lambda e: e.key == "agent.task.started", 10)
        fut.cancel()
        sub.wait_for(lambda e: e.key == "agent.task.failed", 10)
    assert orch.router.wait_idle(10)
    assert orch.router.agent("slow").breaker is BreakerState.CLOSED
    assert orch.router.breaker("slow").statistics().failures == 0
