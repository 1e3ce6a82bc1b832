"""Timeouts, retry policies, dead letters and re-submission, cancellation and preemption."""

from __future__ import annotations

import threading

import pytest

from laneway.errors import CommandCancelled, CommandTimeout, Preempted
from laneway.lanes import CancellationToken, CommandState, PreemptAction, Priority, RetryPolicy
from tests.lanes.support import WAIT, lane, start_lanes


class Flaky:
    """Fails its first ``failures`` calls, then returns "ok"."""

    def __init__(self, failures: int, error: type[Exception] = RuntimeError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "ok"


def test_timeout_cancels_the_token_fails_typed_and_dead_letters(morch, clock):
    lanes = start_lanes(morch, [lane("work", timeout_s=5)])
    seen: list[CancellationToken] = []

    def slow(cancel_token: CancellationToken) -> str:
        seen.append(cancel_token)
        cancel_token.wait(WAIT)
        return "too late"

    lanes.tools.register(slow)
    with morch.events.subscribe("queue.command") as sub:
        h = lanes.submit("work", "slow")
        sub.wait_for(lambda e: e.key == "queue.command.started", WAIT)
        clock.advance(5)
        with pytest.raises(CommandTimeout, match="5s timeout"):
            h.result(timeout=WAIT)
        assert [e.key for e in sub.drain()] == ["queue.command.timeout", "queue.command.failed",
                                                 "queue.command.dead_lettered"]
    assert seen[0].cancelled and "timed out" in seen[0].reason
    [letter] = lanes.dead_letters()
    assert (letter.source, letter.work_id, letter.attempts) == ("lane:work", h.command_id, 1)
    assert "CommandTimeout" in letter.error
    s = lanes.lane_stats("work")
    assert (s.timed_out, s.failed, s.dead_lettered, s.completed) == (1, 1, 1, 0)


def test_exponential_retry_backs_off_on_the_clock_then_succeeds(morch, clock):
    lanes = start_lanes(morch, [lane("work")])
    flaky = Flaky(2)
    lanes.tools.register(flaky, name="flaky", parameters=[])
    with morch.events.subscribe("queue.command.retry") as sub:
        h = lanes.submit("work", "flaky", retry=RetryPolicy.exponential(3))
        first = sub.get(timeout=WAIT)
        assert (first.data["attempt"], first.data["delay_s"]) == (1, 0.1)
        clock.advance(0.05)
        assert flaky.calls == 1 and lanes.state(h.command_id) is CommandState.RETRY_WAIT
        clock.advance(0.05)
        assert sub.get(timeout=WAIT).data["delay_s"] == 0.2
        clock.advance(0.2)
    assert h.result(timeout=WAIT) == "ok"
    assert flaky.calls == 3 and lanes.lane_stats("work").retried == 2 and not lanes.dead_letters()


def test_fixed_retry_then_dead_letter_then_resubmit(morch, clock):
    lanes = start_lanes(morch, [lane("work")])
    flaky = Flaky(3)
    lanes.tools.register(flaky, name="flaky", parameters=[])
    with morch.events.subscribe("queue.command.retry") as sub:
        h = lanes.submit("work", "flaky", retry=RetryPolicy.fixed(2, 1.5))
        for _ in range(2):
            assert sub.get(timeout=WAIT).data["delay_s"] == 1.5
            clock.advance(1.5)
    with pytest.raises(RuntimeError, match="failure 3"):
        h.result(timeout=WAIT)
    [letter] = lanes.dead_letters("work")
    assert letter.attempts == 3 and "failure 3" in letter.error and letter.payload["tool"] == "flaky"
    again = lanes.resubmit(letter.id)  # the tool works now
    assert again.result(timeout=WAIT) == "ok" and not lanes.dead_letters()
    assert morch.dead_letters.list("lane:") == []


def test_no_retry_and_no_retry_on_go_straight_to_the_dead_letter_queue(orch):
    lanes = start_lanes(orch, [lane("work")])
    flaky = Flaky(5, ValueError)
    lanes.tools.register(flaky, name="flaky", parameters=[])
    with pytest.raises(ValueError):
        lanes.submit("work", "flaky", retry=RetryPolicy.exponential(3, no_retry_on=(ValueError,))).result(timeout=WAIT)
    with pytest.raises(ValueError):
        lanes.submit("work", "flaky", retry=RetryPolicy.none()).result(timeout=WAIT)
    assert flaky.calls == 2 and len(lanes.dead_letters()) == 2 and lanes.lane_stats("work").retried == 0


def test_cancel_a_queued_command_it_never_runs(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.held(), name="held")
    running = lanes.submit("work", "held", {"tag": "running"})
    queued = lanes.submit("work", "held", {"tag": "queued"})
    rec.wait_started(1)
    assert queued.cancel("not needed") and not lanes.cancel(queued.command_id)
    with pytest.raises(CommandCancelled, match="not needed"):
        queued.result(timeout=WAIT)
    assert not lanes.cancel("no-such-id")
    rec.release_all()
    assert running.result(timeout=WAIT) == "running"
    assert rec.started == ["running"] and lanes.lane_stats("work").cancelled == 1


def test_cancel_a_running_command_through_its_token(orch):
    lanes = start_lanes(orch, [lane("work")])
    started, stopped = threading.Event(), threading.Event()

    def long_job(steps: int) -> int:
        from laneway.lanes import current_token

        token = current_token()
        started.set()
        for i in range(steps):
            if token.wait(0.01):
                stopped.set()
                token.raise_if_cancelled()
        return steps

    lanes.tools.register(long_job)
    h = lanes.submit("work", "long_job", {"steps": 10_000})
    assert started.wait(WAIT)
    assert lanes.cancel(h.command_id, "user pressed stop")
    with pytest.raises(CommandCancelled, match="user pressed stop"):
        h.result(timeout=WAIT)
    assert stopped.wait(WAIT)
    assert lanes.drain(WAIT).drained  # its slot came back once the tool returned


def test_cancel_an_async_command_cancels_its_task(orch):
    import asyncio

    lanes = start_lanes(orch, [lane("work")])
    started, cancelled = threading.Event(), threading.Event()

    async def waits_forever(cancel_token) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lanes.tools.register(waits_forever)
    h = lanes.submit("work", "waits_forever")
    assert started.wait(WAIT)
    h.cancel()
    assert cancelled.wait(WAIT)
    with pytest.raises(CommandCancelled):
        h.result(timeout=WAIT)


@pytest.mark.parametrize("action", [PreemptAction.REQUEUE, PreemptAction.FAIL])
def test_higher_priority_work_preempts_a_preemptible_run(orch, rec, action):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1, preempt=action)])
    lanes.tools.register(rec.quick(), name="quick")
    runs = []
    first_started = threading.Event()

    def background(cancel_token: CancellationToken) -> str:
        runs.append(cancel_token)
        first_started.set()
        if len(runs) == 1:
            cancel_token.wait(WAIT)
            cancel_token.raise_if_cancelled()
        return "background done"

    lanes.tools.register(background, preemptible=True)
    victim = lanes.submit("work", "background", priority=Priority.LOW)
    assert first_started.wait(WAIT)
    urgent = lanes.submit("work", "quick", {"tag": "urgent"}, priority=Priority.HIGH)
    assert urgent.result(timeout=WAIT) == "urgent"
    assert runs[0].cancelled and runs[0].preempted
    assert lanes.lane_stats("work").preempted == 1
    if action is PreemptAction.REQUEUE:
        assert victim.result(timeout=WAIT) == "background done" and len(runs) == 2
    else:
        with pytest.raises(Preempted):
            victim.result(timeout=WAIT)
        assert len(runs) == 1


def test_preemption_spares_young_and_non_preemptible_runs(morch, clock, rec):
    lanes = start_lanes(morch, [lane("work", max_concurrency=1, preempt=PreemptAction.FAIL, preempt_min_runtime_s=10)])
    lanes.tools.register(rec.held(), name="held", preemptible=True)
    lanes.tools.register(rec.held(), name="pinned")
    young = lanes.submit("work", "held", {"tag": "young"}, priority=Priority.LOW)
    rec.wait_started(1)
    lanes.submit("work", "pinned", {"tag": "high"}, priority=Priority.HIGH)
    assert lanes.lane_stats("work").preempted == 0  # it ran for less than 10 s
    clock.advance(10)
    lanes.submit("work", "pinned", {"tag": "critical"}, priority=Priority.CRITICAL)
    assert lanes.lane_stats("work").preempted == 1
    with pytest.raises(Preempted):
        young.result(timeout=WAIT)
    rec.release("young")  # the held tool ignores its token; its slot frees when it returns
    assert rec.wait_started(2)[1] == "critical"  # the preemptor takes the freed slot first
    rec.release_all()
