"""The circuit breaker itself: thread-safe, clock-driven, never holding its lock while a call runs."""

from __future__ import annotations

import logging
import threading
from typing import Any, Awaitable, Callable, TypeVar

from laneway.actors import Clock, MonotonicClock
from laneway.breakers._config import BreakerConfig, BreakerState, BreakerStatistics, Transition
from laneway.breakers._states import BEHAVIOURS, Closed, Open, Permit, StateBehaviour
from laneway.errors import Cancelled, CircuitOpen, ConfigError, SystemShutdown

log = logging.getLogger(__name__)

T = TypeVar("T")


class CircuitBreaker:
    """Closed, open, half-open: fails fast on a sick dependency and probes it back to health.

    Use it directly around any call (:meth:`call`, :meth:`call_async`), or
    split a call into :meth:`try_acquire` / :meth:`record` when the work runs
    elsewhere (the router's breaker actors do that). The lock guards only the
    bookkeeping; the guarded call always runs outside it, so a slow call never
    serializes other callers (pybreaker's long-standing bug). Listeners run
    after the lock is released, in the thread that caused the transition.

    Time comes from ``clock`` (the orchestrator's clock; a ``ManualClock`` in
    tests). An open breaker half-opens lazily on the first call after its
    reset timeout, or when :meth:`tick` is called (timers do that).

    Args:
        name: used in errors, transitions and statistics (the agent id for agents).
        config: thresholds; see :class:`BreakerConfig`.
        clock: time source; the real monotonic clock by default.

    Example:
        >>> from laneway.actors import ManualClock
        >>> clock = ManualClock()
        >>> cb = CircuitBreaker("search", BreakerConfig(failure_threshold=2, reset_timeout_s=5), clock=clock)
        >>> for _ in range(2):
        ...     try:
        ...         cb.call(lambda: 1 / 0)
        ...     except ZeroDivisionError:
        ...         pass
        >>> cb.state
        <BreakerState.OPEN: 'open'>
        >>> clock.advance(5); cb.call(lambda: "ok"), cb.state
        ('ok', <BreakerState.CLOSED: 'closed'>)
    """

    def __init__(self, name: str = "breaker", config: BreakerConfig | None = None, *, clock: Clock | None = None) -> None:
        if config is not None and not isinstance(config, BreakerConfig):
            raise ConfigError(f"config must be a BreakerConfig, got {config!r}")
        self.name = name
        self.config = config or BreakerConfig()
        self._clock: Clock = clock or MonotonicClock()
        self._lock = threading.Lock()
        self._generation = 0
        self._reopens = 0
        self._opened = 0
        self._calls = self._successes = self._failures = self._rejections = 0
        self._listeners: tuple[Callable[[Transition], None], ...] = ()
        self._notes: list[Transition] = []
        self._behaviour: StateBehaviour = Closed(self)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self.state.value}>"

    # reading -------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now (a plain read, safe from any thread without locking)."""
        return self._behaviour.state

    def admits(self) -> bool:
        """Whether a call made now would be admitted; takes no permit and changes nothing."""
        return self._behaviour.admits(self._clock.now())

    @property
    def open_until(self) -> float | None:
        """Clock time the current open period ends; None unless open."""
        behaviour = self._behaviour
        return behaviour.until if isinstance(behaviour, Open) else None

    def statistics(self) -> BreakerStatistics:
        """A consistent snapshot of state and counters."""
        with self._lock:
            b = self._behaviour
            closed = b if isinstance(b, Closed) else None
            return BreakerStatistics(
                name=self.name,
                state=b.state,
                consecutive_failures=closed.consecutive if closed else 0,
                window_calls=len(closed.window) if closed else 0,
                window_failures=closed.window_failures if closed else 0,
                calls=self._calls,
                successes=self._successes,
                failures=self._failures,
                rejections=self._rejections,
                opened=self._opened,
                reopens=self._reopens,
                reset_timeout_s=b.timeout if isinstance(b, Open) else self.config.reset_timeout_after(self._reopens),
                open_until=b.until if isinstance(b, Open) else None,
            )

    # admissions and outcomes ------------------------------------------------------

    def try_acquire(self) -> Permit | None:
        """A permit to make one call now, or None when the circuit rejects it."""
        with self._lock:
            permit = self._behaviour.admit(self._clock.now(), self._generation)
            if permit is None:
                self._rejections += 1
            else:
                self._calls += 1
            notes = self._take_notes()
        self._notify(notes)
        return permit

    def acquire(self) -> Permit:
        """Like :meth:`try_acquire`, but raises when rejected.

        Raises:
            CircuitOpen: the circuit is open, or half-open with its probe already out.
        """
        permit = self.try_acquire()
        if permit is None:
            raise CircuitOpen(self._rejection_text())
        return permit

    def record(self, permit: Permit, error: BaseException | None = None) -> BreakerState:
        """Report how the call made under ``permit`` ended; returns the state afterwards.

        ``error`` None, or an excluded error, is a success; any other error is
        a failure, except :class:`~laneway.errors.Cancelled` and
        :class:`~laneway.errors.SystemShutdown`, which say nothing about the
        dependency's health: those give the permit back (:meth:`release`).
        """
        if isinstance(error, (Cancelled, SystemShutdown)):
            self.release(permit)
            return self.state
        # Exclude predicates are user code: evaluate them before taking the lock.
        failed = error is not None and not self.config.excludes(error)
        with self._lock:
            if failed:
                self._failures += 1
            else:
                self._successes += 1
            if permit.generation == self._generation:
                if failed:
                    self._behaviour.on_failure(permit)
                else:
                    self._behaviour.on_success(permit)
            state = self._behaviour.state
            notes = self._take_notes()
        self._notify(notes)
        return state

    def release(self, permit: Permit) -> None:
        """Give a permit back without an outcome (the call was cancelled before it said anything)."""
        with self._lock:
            if permit.generation == self._generation:
                self._behaviour.on_release(permit)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` behind the breaker and return its result.

        Raises:
            CircuitOpen: rejected without calling ``fn``.
            Exception: whatever ``fn`` raised (recorded first).
        """
        permit = self.acquire()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self.record(permit, exc)
            raise
        except BaseException:
            self.release(permit)
            raise
        self.record(permit)
        return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` behind the breaker; cancellation is not a failure."""
        permit = self.acquire()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self.record(permit, exc)
            raise
        except BaseException:
            self.release(permit)
            raise
        self.record(permit)
        return result

    # time and manual control ----------------------------------------------------------

    def tick(self) -> BreakerState:
        """Apply time-based transitions now (open -> half-open once the reset timeout elapsed)."""
        with self._lock:
            b = self._behaviour
            if isinstance(b, Open) and self._clock.now() >= b.until:
                self._move(BreakerState.HALF_OPEN)
            state = self._behaviour.state
            notes = self._take_notes()
        self._notify(notes)
        return state

    def trip(self) -> None:
        """Open the circuit now (an operator's override)."""
        self._force(BreakerState.OPEN)

    def reset(self) -> None:
        """Close the circuit now and forget counted failures and backoff."""
        self._force(BreakerState.CLOSED)

    def _force(self, to: BreakerState) -> None:
        with self._lock:
            if to is BreakerState.CLOSED:
                self._reopens = 0
            if self._behaviour.state is not to:
                self._move(to)
            elif to is BreakerState.CLOSED:
                self._behaviour = Closed(self)  # forget the failures counted so far; not a transition
            notes = self._take_notes()
        self._notify(notes)

    # listeners ---------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[Transition], None]) -> Callable[[], None]:
        """Call ``fn(transition)`` after every state change; returns a function that removes it."""
        with self._lock:
            self._listeners = self._listeners + (fn,)

        def remove() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not fn)

        return remove

    # internals (called with the lock held) ---------------------------------------------------

    def _now(self) -> float:
        return self._clock.now()

    def _move(self, to: BreakerState) -> None:
        old = self._behaviour.state
        self._generation += 1
        self._behaviour = BEHAVIOURS[to](self)
        timeout = None
        if to is BreakerState.OPEN:
            self._opened += 1
            timeout = self._behaviour.timeout  # type: ignore[attr-defined]
        log.info("circuit %s: %s -> %s", self.name, old.value, to.value)
        self._notes.append(Transition(self.name, old, to, self._clock.now(), timeout))

    def _take_notes(self) -> list[Transition]:
        notes, self._notes = self._notes, []
        return notes

    def _notify(self, notes: list[Transition]) -> None:
        for note in notes:
            for fn in self._listeners:
                try:
                    fn(note)
                except Exception:
                    log.exception("breaker listener %r raised on %s", fn, note)

    def _rejection_text(self) -> str:
        until = self.open_until
        if until is not None:
            return f"circuit {self.name} is open for another {max(0.0, until - self._clock.now()):.3g}s"
        return f"circuit {self.name} is {self.state.value} and its probe call is still out"
