"""Many lane timers on one clock timer: timeouts, retry backoff, boosts, rate-limit and idle wake-ups.

Arming a clock timer per command would wake the clock's timer thread on every
submit; here only a timer earlier than every pending one re-arms the clock,
so the common case (equal timeouts, later each time) costs a heap push.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from typing import Callable

from laneway.core._clock import Clock, TimerHandle

log = logging.getLogger(__name__)


class Timer:
    """A scheduled callback; :meth:`cancel` keeps it from running."""

    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerQueue:
    """A heap of :class:`Timer` served by at most one armed clock timer."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._armed: TimerHandle | None = None
        self._armed_when = float("inf")
        self._closed = False
        self._compact_at = 1024

    def schedule(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn()`` ``delay`` seconds from now (on the clock's timer thread, or in ``ManualClock.advance``)."""
        timer = Timer(self._clock.now() + max(0.0, delay), fn)
        with self._lock:
            if self._closed:
                timer.cancelled = True
                return timer
            heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
            if len(self._heap) > self._compact_at:
                self._compact()
            rearm = timer.when < self._armed_when
            if rearm:
                self._arm(timer.when)
        return timer

    def _compact(self) -> None:
        # Cancelled timers (commands that finished before their timeout) pile up; drop them.
        self._heap = [e for e in self._heap if not e[2].cancelled]
        heapq.heapify(self._heap)
        # Amortised: the next compaction waits until the heap doubled again.
        self._compact_at = max(1024, 2 * len(self._heap))

    def _arm(self, when: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_when = when
        self._armed = self._clock.call_later(when - self._clock.now(), self._fire)

    def _fire(self) -> None:
        now = self._clock.now()
        due: list[Timer] = []
        with self._lock:
            self._armed = None
            self._armed_when = float("inf")
            while self._heap and self._heap[0][0] <= now:
                timer = heapq.heappop(self._heap)[2]
                if not timer.cancelled:
                    due.append(timer)
            while self._heap and self._heap[0][2].cancelled:
                heapq.heappop(self._heap)
            if self._heap and not self._closed:
                self._arm(self._heap[0][0])
        for timer in due:
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception:
                log.exception("lane timer %r raised", timer.fn)

    def close(self) -> None:
        """Drop every pending timer."""
        with self._lock:
            self._closed = True
            self._heap.clear()
            if self._armed is not None:
                self._armed.cancel()
                self._armed = None
