"""Cross-lane priority, levels and fair share inside a lane, live limits, rate limits, deadline boosts."""

from __future__ import annotations

import pytest

from laneway.errors import ConfigError, LaneNotFound
from laneway.lanes import DEFAULT_LANES, CommandState, LaneConfig, Priority, RateLimit, RetryPolicy
from tests.lanes.support import WAIT, lane, start_lanes


def test_default_lanes_and_custom_lanes_replace_or_extend_them(orch):
    lanes = orch.lanes
    assert [(c.name, c.priority, c.max_concurrency) for c in DEFAULT_LANES] == [
        ("system", 0, 5), ("control", 1, 3), ("query", 2, 10), ("session", 3, 5), ("skill", 4, 3), ("prompt", 5, 2)]
    assert lanes.lane_names() == ["system", "control", "query", "session", "skill", "prompt"]
    other = start_lanes(orch.__class__(name="other"), [lane("a", 1), lane("b", 0)],
                        extra_lanes=[lane("c", 2), LaneConfig("a", priority=3, max_concurrency=4)])
    assert other.lane_names() == ["b", "c", "a"] and other.lane_config("a").max_concurrency == 4
    with pytest.raises(LaneNotFound):
        other.submit("system", lambda: 1)
    with pytest.raises(ConfigError, match="reserve"):
        start_lanes(orch.__class__(name="tight"), [lane("x", min_concurrency=2, max_concurrency=2)], max_workers=1)
    with pytest.raises(ConfigError, match="min_concurrency"):
        LaneConfig("bad", min_concurrency=3, max_concurrency=2)


def test_control_submitted_after_100_queued_prompts_starts_before_all_of_them(orch, rec):
    # Only two workers in total, both busy with prompts: the next free worker must go to control.
    configs = [LaneConfig(c.name, priority=c.priority, max_concurrency=c.max_concurrency) for c in DEFAULT_LANES]
    lanes = start_lanes(orch, configs, max_workers=2)
    lanes.tools.register(rec.held(), name="held")
    handles = [lanes.submit("prompt", "held", {"tag": f"p{i}"}) for i in range(102)]
    assert rec.wait_started(2) == ["p0", "p1"]
    control = lanes.submit("control", "held", {"tag": "control"})
    assert control.position == 0
    rec.release("p0")
    assert rec.wait_started(3)[2] == "control"
    rec.release_all()
    assert control.result(timeout=WAIT) == "control"
    assert [h.result(timeout=WAIT) for h in handles][-1] == "p101"


def test_levels_then_fifo_within_a_lane(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.quick(), name="quick")
    lanes.pause("work")
    order = [("bg", Priority.BACKGROUND), ("n1", Priority.NORMAL), ("c1", Priority.CRITICAL), ("l1", Priority.LOW),
             ("n2", Priority.NORMAL), ("h1", Priority.HIGH), ("c2", Priority.CRITICAL)]
    positions = [lanes.submit("work", "quick", {"tag": t}, priority=p).position for t, p in order]
    assert positions == [0, 0, 0, 2, 2, 1, 1]  # commands of this caller that would run first
    lanes.resume("work")
    assert rec.wait_ended(7) == ["c1", "c2", "h1", "n1", "n2", "l1", "bg"]


def test_callers_take_turns_so_a_heavy_caller_cannot_starve_others(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.quick(), name="quick")
    lanes.pause("work")
    for i in range(10):
        lanes.submit("work", "quick", {"tag": f"heavy{i}"}, caller="heavy")
    lanes.submit("work", "quick", {"tag": "light-normal"}, caller="light")
    lanes.submit("work", "quick", {"tag": "light-high"}, caller="light", priority=Priority.HIGH)
    lanes.resume("work")
    ran = rec.wait_ended(12)
    # Round-robin across callers; inside the light caller's queue, priority breaks the tie.
    assert ran[:4] == ["heavy0", "light-high", "heavy1", "light-normal"]
    assert ran[4:] == [f"heavy{i}" for i in range(2, 10)]


def test_set_max_concurrent_takes_effect_live(orch, rec):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)])
    lanes.tools.register(rec.held(), name="held")
    handles = [lanes.submit("work", "held", {"tag": f"t{i}"}) for i in range(4)]
    rec.wait_started(1)
    assert lanes.lane_stats("work").active == 1 and lanes.lane_stats("work").pending == 3
    lanes.set_max_concurrent("work", 3)
    rec.wait_started(3)
    assert rec.active == 3 and lanes.lane_stats("work").max_concurrency == 3
    lanes.set_max_concurrent("work", 1)  # running ones go on; new ones wait for a free slot
    rec.release("t0", "t1")
    rec.wait_ended(2)
    assert len(rec.started) == 3
    rec.release("t2")
    rec.wait_started(4)
    rec.release_all()
    assert [h.result(timeout=WAIT) for h in handles] == ["t0", "t1", "t2", "t3"]
    with pytest.raises(ConfigError):
        lanes.set_max_concurrent("work", 0)


def test_min_concurrency_keeps_workers_for_its_lane(orch, rec):
    lanes = start_lanes(orch, [lane("urgent", 0, max_concurrency=1, min_concurrency=1), lane("bulk", 5, max_concurrency=10)],
                        max_workers=3)
    lanes.tools.register(rec.held(), name="held")
    for i in range(5):
        lanes.submit("bulk", "held", {"tag": f"b{i}"})
    rec.wait_started(2)
    assert lanes.lane_stats("bulk").active == 2  # the third worker is kept for "urgent"
    lanes.submit("urgent", "held", {"tag": "u"})
    assert rec.wait_started(3)[2] == "u"
    rec.release_all()


def test_rate_limit_is_enforced_at_dequeue(morch, clock, rec):
    lanes = start_lanes(morch, [lane("api", max_concurrency=5, rate_limit=RateLimit(per_second=2, per_minute=5))])
    lanes.tools.register(rec.quick(), name="quick")
    handles = [lanes.submit("api", "quick", {"tag": f"r{i}"}) for i in range(6)]
    rec.wait_ended(2)
    assert lanes.lane_stats("api").pending == 4  # accepted, held back by the limit
    clock.advance(1.0)
    rec.wait_ended(4)
    clock.advance(1.0)
    rec.wait_ended(5)  # the per-minute window allows only 5
    assert lanes.lane_stats("api").pending == 1
    clock.advance(58.0)
    rec.wait_ended(6)
    assert [h.result(timeout=WAIT) for h in handles] == [f"r{i}" for i in range(6)]


def test_deadline_boosts_promote_a_waiting_command(morch, clock, rec):
    lanes = start_lanes(morch, [lane("work")])
    lanes.tools.register(rec.quick(), name="quick")
    lanes.pause("work")
    with morch.events.subscribe("queue.command.boosted") as sub:
        for i in range(3):
            lanes.submit("work", "quick", {"tag": f"n{i}"}, priority=Priority.NORMAL)
        urgent = lanes.submit("work", "quick", {"tag": "due"}, priority=Priority.LOW, deadline_s=100)
        clock.advance(25)  # 75 % of the deadline left: LOW -> NORMAL
        assert sub.get(timeout=WAIT).data["priority"] == "normal"
        clock.advance(25)  # 50 % left: NORMAL -> HIGH
        assert sub.get(timeout=WAIT).data == {"command_id": urgent.command_id, "caller": "default", "priority": "high"}
    lanes.resume("work")
    assert rec.wait_ended(4)[0] == "due"


def test_pressure_and_idle_events(orch, rec):
    lanes = start_lanes(orch, [lane("work", max_concurrency=2, pressure_threshold=3)])
    lanes.tools.register(rec.quick(), name="quick")
    with orch.events.subscribe(("queue.lane.pressure", "queue.lane.idle")) as sub:
        lanes.pause("work")
        for i in range(3):
            lanes.submit("work", "quick", {"tag": str(i)})
        e = sub.get(timeout=WAIT)
        assert (e.key, e.source, e.data["pending"], e.data["threshold"]) == ("queue.lane.pressure", "work", 3, 3)
        lanes.resume("work")
        e = sub.get(timeout=WAIT)
        assert (e.key, e.source) == ("queue.lane.idle", "work")
        assert lanes.lane_stats("work").completed == 3


def test_oldest_queued_age_is_that_of_the_oldest_queued_or_retry_waiting_command(morch, clock, rec):
    lanes = start_lanes(morch, [lane("work", max_concurrency=1), lane("other", priority=1)])
    lanes.tools.register(rec.held(), name="held")
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first call fails")
        return "ok"

    lanes.tools.register(flaky, name="flaky", parameters=[])

    def ages() -> tuple[tuple[int, float], float, float]:
        one, every = lanes.lane_stats("work"), lanes.statistics()
        assert every.lane("work").oldest_queued_age_s == one.oldest_queued_age_s
        return (one.pending, one.oldest_queued_age_s), every.lane("other").oldest_queued_age_s, every.lane("work").pending

    with morch.events.subscribe("queue.command.retry") as sub:
        retried = lanes.submit("work", "flaky", retry=RetryPolicy.fixed(2, 10))  # fails at 0, retries at 10
        sub.get(timeout=WAIT)
    clock.advance(1)
    lanes.submit("work", "held", {"tag": "a"})  # runs from 1
    rec.wait_started(1)
    clock.advance(1)
    lanes.submit("work", "held", {"tag": "b"})  # queued at 2
    clock.advance(2)
    assert ages() == ((2, 4.0), 0.0, 2)  # the retry-waiting command, waiting since 0, is the oldest
    rec.release("a")
    assert rec.wait_started(2) == ["a", "b"]
    assert ages() == ((1, 4.0), 0.0, 1)
    clock.advance(6)  # the retry falls due and queues behind b
    assert lanes.state(retried.command_id) is CommandState.QUEUED
    assert ages() == ((1, 10.0), 0.0, 1)
    lanes.submit("other", "held", {"tag": "c"})
    rec.release("b", "c")
    assert retried.result(timeout=WAIT) == "ok"
    assert ages() == ((0, 0.0), 0.0, 0)


def test_statistics_report_counts_ages_throughput_and_latency(morch, clock, rec):
    lanes = start_lanes(morch, [lane("work", max_concurrency=1)])
    lanes.tools.register(rec.held(), name="held")
    first = lanes.submit("work", "held", {"tag": "a"})
    lanes.submit("work", "held", {"tag": "b"})
    rec.wait_started(1)
    clock.advance(3)
    s = lanes.lane_stats("work")
    assert (s.pending, s.active, s.oldest_queued_age_s, s.latency_p50_s) == (1, 1, 3.0, None)
    rec.release("a")
    first.result(timeout=WAIT)
    clock.advance(1)
    rec.release("b")
    rec.wait_ended(2)
    s = lanes.statistics().lane("work")
    assert (s.completed, s.pending, s.active) == (2, 0, 0)
    assert s.latency_p50_s == 3.0 and s.latency_p99_s == 4.0  # submit-to-completion on the manual clock
    assert s.throughput_per_s == pytest.approx(2 / 4)  # 2 completions in the lane's 4 s of life
    assert lanes.statistics().max_workers == 64
