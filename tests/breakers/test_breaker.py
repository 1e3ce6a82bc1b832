"""The breaker state machine, driven by a ManualClock (no sleeps)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from laneway.actors import ManualClock
from laneway.breakers import BreakerConfig, BreakerState, CircuitBreaker
from laneway.errors import CircuitOpen, ConfigError

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Boom(Exception):
    pass


def make(clock: ManualClock, **cfg) -> tuple[CircuitBreaker, list]:
    cb = CircuitBreaker("agent-1", BreakerConfig(**cfg), clock=clock)
    moves: list = []
    cb.add_listener(lambda t: moves.append((t.from_state, t.to_state)))
    return cb, moves


def fail(cb: CircuitBreaker, times: int = 1, error: BaseException | None = None) -> None:
    for _ in range(times):
        cb.record(cb.acquire(), error or Boom())


def succeed(cb: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        cb.record(cb.acquire())


def test_opens_after_n_consecutive_failures_and_a_success_resets_the_count():
    clock = ManualClock()
    cb, moves = make(clock, failure_threshold=3)
    fail(cb, 2)
    succeed(cb)
    fail(cb, 2)
    assert cb.state is CLOSED
    fail(cb)
    assert cb.state is OPEN
    assert moves == [(CLOSED, OPEN)]


def test_open_rejects_at_once_with_a_typed_error_without_calling():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=1, reset_timeout_s=10)
    fail(cb)
    called = []
    with pytest.raises(CircuitOpen, match="open for another 10s"):
        cb.call(called.append, 1)
    assert called == []
    assert cb.try_acquire() is None
    assert cb.statistics().rejections == 2


def test_reset_timeout_half_opens_with_exactly_one_probe():
    clock = ManualClock()
    cb, moves = make(clock, failure_threshold=1, reset_timeout_s=10)
    fail(cb)
    clock.advance(9.9)
    assert cb.tick() is OPEN and not cb.admits()
    clock.advance(0.1)
    assert cb.admits()
    assert cb.tick() is HALF_OPEN
    probe = cb.try_acquire()
    assert probe is not None and probe.probe
    # Every other caller is turned away while the probe is out.
    assert [cb.try_acquire() for _ in range(5)] == [None] * 5
    assert not cb.admits()
    cb.record(probe)
    assert cb.state is CLOSED
    assert moves == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_half_open_happens_lazily_on_the_first_call_after_the_timeout():
    clock = ManualClock()
    cb, moves = make(clock, failure_threshold=1, reset_timeout_s=5)
    fail(cb)
    clock.advance(5)
    assert cb.call(lambda: "ok") == "ok"
    assert cb.state is CLOSED
    assert moves[-2:] == [(OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_m_successful_probes_close_it_one_at_a_time():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=1, success_threshold=3, reset_timeout_s=1)
    fail(cb)
    clock.advance(1)
    for n in range(2):
        probe = cb.acquire()
        assert cb.try_acquire() is None
        cb.record(probe)
        assert cb.state is HALF_OPEN, n
    cb.record(cb.acquire())
    assert cb.state is CLOSED


def test_failed_probe_reopens_with_exponential_backoff_capped_and_reset_on_close():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=1, reset_timeout_s=10, backoff_factor=2, max_reset_timeout_s=35)
    fail(cb)
    opened = [cb.statistics().reset_timeout_s]
    for _ in range(3):
        clock.advance(opened[-1])
        fail(cb)  # the probe fails
        assert cb.state is OPEN
        opened.append(cb.statistics().reset_timeout_s)
    assert opened == [10, 20, 35, 35]
    assert cb.open_until == clock.now() + 35
    clock.advance(34.9)
    assert cb.try_acquire() is None
    clock.advance(0.1)
    succeed(cb)
    assert cb.state is CLOSED
    fail(cb)
    assert cb.statistics().reset_timeout_s == 10  # backoff starts over after closing


def test_excluded_errors_do_not_count_as_failures():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=2, exclude=(KeyError, lambda e: "business" in str(e)))
    for _ in range(5):
        fail(cb, error=KeyError("no such user"))
        fail(cb, error=Boom("business rule"))
    assert cb.state is CLOSED
    stats = cb.statistics()
    assert (stats.failures, stats.successes, stats.consecutive_failures) == (0, 10, 0)
    fail(cb, 2)
    assert cb.state is OPEN


def test_an_excluded_error_on_the_probe_closes_it():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=1, reset_timeout_s=1, exclude=(KeyError,))
    fail(cb)
    clock.advance(1)
    with pytest.raises(KeyError):
        cb.call(lambda: {}["x"])
    assert cb.state is CLOSED


def test_failure_ratio_over_a_window_opens_it_without_consecutive_failures():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=100, failure_ratio=0.5, window_size=10, min_calls=6)
    for _ in range(2):
        fail(cb)
        succeed(cb)
    assert cb.state is CLOSED  # 2 of 4: ratio met, but fewer than min_calls
    fail(cb)
    succeed(cb)
    assert cb.state is CLOSED  # 3 of 6, the last one a success: checked on failures only
    fail(cb)
    assert cb.state is OPEN  # 4 of 7


def test_the_window_forgets_old_calls():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=100, failure_ratio=0.5, window_size=4, min_calls=4)
    fail(cb, 1)
    succeed(cb, 4)  # the failure slid out of the window
    stats = cb.statistics()
    assert (stats.window_calls, stats.window_failures) == (4, 0)
    fail(cb)
    assert cb.state is CLOSED  # 1 of 4
    fail(cb)
    assert cb.state is OPEN  # 2 of 4


def test_outcomes_of_calls_admitted_before_a_transition_do_not_move_the_state():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=2, reset_timeout_s=1)
    slow = cb.acquire()  # admitted while closed, still running
    fail(cb, 2)
    clock.advance(1)
    probe = cb.acquire()
    cb.record(slow, Boom())  # stale: must not reopen the half-open breaker
    assert cb.state is HALF_OPEN
    cb.record(probe)
    assert cb.state is CLOSED
    assert cb.statistics().failures == 3


def test_a_cancelled_probe_frees_the_probe_slot_without_an_outcome():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=1, reset_timeout_s=1)
    fail(cb)
    clock.advance(1)

    async def cancelled():
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cb.call_async(cancelled))
    assert cb.state is HALF_OPEN
    assert cb.try_acquire() is not None


def test_call_async_records_outcomes():
    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=1)

    async def ok():
        return 7

    async def bad():
        raise Boom()

    assert asyncio.run(cb.call_async(ok)) == 7
    with pytest.raises(Boom):
        asyncio.run(cb.call_async(bad))
    assert cb.state is OPEN


def test_the_lock_is_not_held_while_the_guarded_call_runs():
    cb = CircuitBreaker("slow", BreakerConfig(), clock=ManualClock())
    inside, release = threading.Event(), threading.Event()

    def slow_call():
        inside.set()
        assert release.wait(10)
        return "slow"

    result = []
    worker = threading.Thread(target=lambda: result.append(cb.call(slow_call)))
    worker.start()
    assert inside.wait(10)
    # Other callers and readers are not serialized behind the slow call.
    assert cb.call(lambda: "fast") == "fast"
    assert cb.statistics().calls == 2
    release.set()
    worker.join(10)
    assert result == ["slow"]


def test_trip_and_reset_are_operator_overrides():
    clock = ManualClock()
    cb, moves = make(clock, reset_timeout_s=3)
    cb.trip()
    assert cb.state is OPEN and cb.try_acquire() is None
    cb.trip()  # already open: no second transition
    cb.reset()
    assert cb.state is CLOSED and cb.admits()
    assert moves == [(CLOSED, OPEN), (OPEN, CLOSED)]


def test_a_listener_that_raises_does_not_break_the_breaker():
    clock = ManualClock()
    cb = CircuitBreaker("x", BreakerConfig(failure_threshold=1), clock=clock)
    cb.add_listener(lambda t: 1 / 0)
    seen = []
    remove = cb.add_listener(seen.append)
    fail(cb)
    assert cb.state is OPEN and seen[0].to_state is OPEN and seen[0].reset_timeout_s == 30
    remove()
    cb.reset()
    assert len(seen) == 1


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"success_threshold": 1.5}, "success_threshold"),
        ({"reset_timeout_s": 0}, "reset_timeout_s"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"reset_timeout_s": 10, "max_reset_timeout_s": 5}, "max_reset_timeout_s"),
        ({"failure_ratio": 1.5}, "failure_ratio"),
        ({"window_size": 5, "min_calls": 6}, "min_calls"),
        ({"exclude": ("not an exception",)}, "exclude"),
    ],
)
def test_bad_config_names_the_field(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        BreakerConfig(**kwargs)


def test_merged_overrides_fields_and_rejects_unknown_ones():
    base = BreakerConfig(failure_threshold=5, reset_timeout_s=20)
    assert base.merged({"failure_threshold": 2}) == BreakerConfig(failure_threshold=2, reset_timeout_s=20)
    with pytest.raises(ConfigError, match="fail_max"):
        base.merged({"fail_max": 2})


def test_cancellation_and_shutdown_say_nothing_about_health():
    from laneway.errors import Cancelled, SystemShutdown

    clock = ManualClock()
    cb, _ = make(clock, failure_threshold=1, reset_timeout_s=1)
    fail(cb, error=Cancelled("caller gave up"))
    fail(cb, error=SystemShutdown("stopping"))
    assert cb.state is CLOSED and cb.statistics().failures == 0
    fail(cb)
    clock.advance(1)
    probe = cb.acquire()
    cb.record(probe, Cancelled("probe cancelled"))
    assert cb.state is HALF_OPEN and cb.try_acquire() is not None  # the probe slot is free again
