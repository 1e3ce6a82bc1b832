"""Injectable monotonic clocks with timers.

Everything in laneway that depends on time (restart backoff and intensity,
breakers, retries, rate limits, deadlines) reads :meth:`Clock.now` and
schedules with :meth:`Clock.call_later`, so tests swap in :class:`ManualClock`
and move time by hand instead of sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, Protocol

log = logging.getLogger(__name__)


class TimerHandle:
    """A scheduled callback; :meth:`cancel` stops it from running if it has not yet."""

    __slots__ = ("when", "_fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self._fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the callback from running; harmless after it ran."""
        self.cancelled = True

    def _run(self) -> None:
        if self.cancelled:
            return
        try:
            self._fn()
        except Exception:  # a timer callback must never kill the timer thread
            log.exception("timer callback %r raised", self._fn)


class Clock(Protocol):
    """What laneway needs of time: a monotonic reading and one-shot timers."""

    def now(self) -> float:
        """Seconds on a monotonic scale (not wall-clock time)."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> TimerHandle:
        """Run ``fn()`` once, ``delay`` seconds from now, on a timer thread."""

    def close(self) -> None:
        """Drop pending timers and release the timer thread."""


class _TimerHeap:
    """A heap of timer handles ordered by due time, ties in scheduling order.

    Most timers are cancelled before they fall due (a command's timeout once it
    finished): the heap drops them when they make up most of it, so a steady
    stream of cancelled timers costs amortised O(log n) each, not memory.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._compact_at = 1024

    def push(self, handle: TimerHandle) -> bool:
        """Add ``handle``; True if it is now the earliest (whoever waits on the head must wake)."""
        heap = self._heap
        heapq.heappush(heap, (handle.when, next(self._seq), handle))
        if len(heap) > self._compact_at:
            self._heap = heap = [e for e in heap if not e[2].cancelled]
            heapq.heapify(heap)
            self._compact_at = max(1024, 2 * len(heap))
        return bool(heap) and heap[0][2] is handle

    def pop_due(self, now: float) -> TimerHandle | None:
        if self._heap and self._heap[0][0] <= now:
            return heapq.heappop(self._heap)[2]
        return None

    def next_when(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return sum(1 for _, _, h in self._heap if not h.cancelled)

    def clear(self) -> None:
        self._heap.clear()


class MonotonicClock:
    """The real clock: ``time.monotonic`` and one shared timer thread.

    One thread serves every timer of this clock, whatever their number, so a
    thousand pending retries cost a heap entry each, not a thread each.

    Example:
        >>> clock = MonotonicClock()
        >>> handle = clock.call_later(0.05, lambda: None)
        >>> clock.close()
    """

    def __init__(self) -> None:
        self._timers = _TimerHeap()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> float:
        return time.monotonic()

    def call_later(self, delay: float, fn: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            if self._closed:
                handle.cancelled = True
                return handle
            if self._timers.push(handle):
                # Only a new earliest timer changes how long the timer thread sleeps.
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="laneway-timer", daemon=True)
                    self._thread.start()
                self._cond.notify()
        return handle

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._timers.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    due = self._timers.pop_due(time.monotonic())
                    if due is not None:
                        break
                    nxt = self._timers.next_when()
                    self._cond.wait(None if nxt is None else max(0.0, nxt - time.monotonic()))
            due._run()


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Timers due within the advance run in the calling thread, in due order, with
    :meth:`now` reading each timer's due time while it runs.

    Example:
        >>> clock = ManualClock()
        >>> fired = []
        >>> _ = clock.call_later(5, lambda: fired.append(clock.now()))
        >>> clock.advance(10)
        >>> fired
        [5.0]
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._timers = _TimerHeap()
        self._cond = threading.Condition()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, fn: Callable[[], None]) -> TimerHandle:
        with self._cond:
            handle = TimerHandle(self._now + max(0.0, delay), fn)
            self._timers.push(handle)
            self._cond.notify_all()
        return handle

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every timer that falls due."""
        if seconds < 0:
            from laneway.errors import ConfigError

            raise ConfigError(f"ManualClock.advance needs seconds >= 0, got {seconds}")
        with self._cond:
            target = self._now + seconds
        while True:
            with self._cond:
                due = self._timers.pop_due(target)
                if due is None:
                    self._now = target
                    return
                self._now = max(self._now, due.when)
            due._run()

    def pending(self) -> int:
        """How many timers are scheduled and not cancelled."""
        with self._cond:
            return len(self._timers)

    def wait_for_timers(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` timers are pending; False on timeout.

        Lets a test wait until an actor has scheduled its timer before it
        advances time, without sleeping.
        """
        with self._cond:
            return self._cond.wait_for(lambda: len(self._timers) >= count, timeout)

    def close(self) -> None:
        with self._cond:
            self._timers.clear()
