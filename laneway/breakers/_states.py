"""The three breaker states as small behaviour objects, in the manner of pybreaker.

Each object decides admissions and reacts to outcomes for as long as the
breaker stays in its state; a transition replaces it with a fresh one, so
per-state counters (consecutive failures, the probe flag) start clean. They
run with the breaker's lock held and never call user code.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING

import attrs

from laneway.breakers._config import BreakerState

if TYPE_CHECKING:
    from laneway.breakers._breaker import CircuitBreaker

log = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class Permit:
    """Leave to make one call, handed out by :meth:`CircuitBreaker.try_acquire`.

    Give it back with :meth:`CircuitBreaker.record` (or ``release``). An
    outcome whose permit predates the breaker's last transition is counted in
    the statistics but no longer moves the state (a slow call started while
    closed cannot close a breaker that opened since).

    Attributes:
        generation: the breaker's transition count when the permit was issued.
        probe: True for the single half-open probe.
    """

    generation: int
    probe: bool = False


class StateBehaviour:
    """What the breaker does in one state; subclasses override the hooks."""

    state: BreakerState

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def admits(self, now: float) -> bool:
        """Whether a call made now would be admitted (no side effects)."""
        return True

    def admit(self, now: float, generation: int) -> Permit | None:
        """Admit a call, or None to reject it."""
        return Permit(generation)

    def on_success(self, permit: Permit) -> None:
        """A call admitted in this state succeeded."""

    def on_failure(self, permit: Permit) -> None:
        """A call admitted in this state failed."""

    def on_release(self, permit: Permit) -> None:
        """A call admitted in this state ended without an outcome (cancelled)."""


class Closed(StateBehaviour):
    """Calls go through; consecutive failures, or the failure ratio over the window, trip it."""

    state = BreakerState.CLOSED

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.consecutive = 0
        self.window: collections.deque[bool] = collections.deque(maxlen=breaker.config.window_size)
        self.window_failures = 0

    def _push(self, failed: bool) -> None:
        window = self.window
        if len(window) == window.maxlen and window[0]:
            self.window_failures -= 1
        window.append(failed)
        self.window_failures += failed

    def on_success(self, permit: Permit) -> None:
        self.consecutive = 0
        self._push(False)

    def on_failure(self, permit: Permit) -> None:
        self.consecutive += 1
        self._push(True)
        if self._tripped():
            self.breaker._move(BreakerState.OPEN)

    def _tripped(self) -> bool:
        cfg = self.breaker.config
        if self.consecutive >= cfg.failure_threshold:
            return True
        calls = len(self.window)
        return cfg.failure_ratio is not None and calls >= cfg.min_calls and self.window_failures / calls >= cfg.failure_ratio


class Open(StateBehaviour):
    """Rejects everything until the reset timeout has elapsed; the next call then becomes the probe."""

    state = BreakerState.OPEN

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.timeout = breaker.config.reset_timeout_after(breaker._reopens)
        self.until = breaker._now() + self.timeout

    def admits(self, now: float) -> bool:
        return now >= self.until

    def admit(self, now: float, generation: int) -> Permit | None:
        if now < self.until:
            return None
        # Lazily half-open, as pybreaker does, so a breaker works without timers too.
        self.breaker._move(BreakerState.HALF_OPEN)
        return self.breaker._behaviour.admit(now, self.breaker._generation)


class HalfOpen(StateBehaviour):
    """Exactly one probe at a time; ``success_threshold`` successes close it, one failure reopens it."""

    state = BreakerState.HALF_OPEN

    def __init__(self, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.probe_out = False
        self.successes = 0

    def admits(self, now: float) -> bool:
        return not self.probe_out

    def admit(self, now: float, generation: int) -> Permit | None:
        if self.probe_out:
            return None
        self.probe_out = True
        return Permit(generation, probe=True)

    def on_success(self, permit: Permit) -> None:
        if not permit.probe:
            return
        self.probe_out = False
        self.successes += 1
        if self.successes >= self.breaker.config.success_threshold:
            self.breaker._reopens = 0
            self.breaker._move(BreakerState.CLOSED)

    def on_failure(self, permit: Permit) -> None:
        if not permit.probe:
            return
        self.probe_out = False
        self.breaker._reopens += 1
        self.breaker._move(BreakerState.OPEN)

    def on_release(self, permit: Permit) -> None:
        if permit.probe:
            self.probe_out = False


BEHAVIOURS: dict[BreakerState, type[StateBehaviour]] = {
    BreakerState.CLOSED: Closed,
    BreakerState.OPEN: Open,
    BreakerState.HALF_OPEN: HalfOpen,
}
