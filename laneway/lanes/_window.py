"""Sliding windows a lane keeps: start-rate limits, throughput and latency percentiles.

Not thread-safe: the lane manager's scheduler lock guards them. Times come
from the orchestrator's clock, so tests drive them with a ManualClock.
"""

from __future__ import annotations

import collections
import math
from typing import Callable

from laneway.lanes._config import RateLimit


class RateLimiter:
    """Start timestamps per configured window; a start is allowed while every window has room."""

    __slots__ = ("_windows",)

    def __init__(self, limit: RateLimit) -> None:
        self._windows: list[tuple[float, int, collections.deque[float]]] = [
            (span, n, collections.deque()) for span, n in limit.windows()]

    def wait_s(self, now: float) -> float:
        """0 if a command may start now, else seconds until the fullest window frees a place."""
        wait = 0.0
        for span, n, starts in self._windows:
            while starts and starts[0] <= now - span:
                starts.popleft()
            if len(starts) >= n:
                wait = max(wait, starts[0] + span - now)
        return wait

    def record(self, now: float) -> None:
        for _, _, starts in self._windows:
            starts.append(now)


class Throughput:
    """Completions per one-second bucket over the last ``span_s`` seconds."""

    __slots__ = ("_buckets", "_span", "_since", "_second", "_count")

    def __init__(self, now: float | None, span_s: float = 60.0) -> None:
        self._buckets: collections.deque[tuple[int, int]] = collections.deque()  # closed seconds
        self._span = span_s
        self._since = now  # None: from the first record or read
        # The open bucket, as two fields: a completion in the same second as the last one
        # (nearly all of them, under load) is one comparison and one addition.
        self._second: int | None = None
        self._count = 0

    def record(self, now: float, count: int = 1) -> None:
        """``count`` completions at ``now``."""
        second = int(now)
        if second == self._second:
            self._count += count
        else:
            self._open(second, now, count)

    def _open(self, second: int, now: float, count: int) -> None:
        if self._since is None:
            self._since = now
        buckets = self._buckets
        if self._second is not None:
            buckets.append((self._second, self._count))
        self._second, self._count = second, count
        while buckets and buckets[0][0] <= second - self._span:
            buckets.popleft()

    def rate(self, now: float) -> float:
        """Completions per second over the window (or since the lane started, if younger)."""
        if self._since is None:
            self._since = now
        cutoff = int(now) - self._span
        total = sum(n for second, n in self._buckets if second > cutoff)
        if self._second is not None and self._second > cutoff:
            total += self._count
        return total / max(1.0, min(self._span, now - self._since))


class Latencies:
    """The most recent ``size`` latencies, for percentiles."""

    __slots__ = ("_samples", "record")

    def __init__(self, size: int = 2048) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=size)
        #: ``record(seconds)``: keep one latency (the deque's own append: no Python frame per completion).
        self.record: Callable[[float], None] = self._samples.append

    def percentiles(self, *qs: float) -> tuple[float | None, ...]:
        """Nearest-rank percentiles (``qs`` in 0..100), None each when there are no samples."""
        return nearest_rank(sorted(self._samples), qs)

    def samples(self) -> tuple[float, ...]:
        """The window, oldest first, as a copy, safe to take without the lock that guards :meth:`record`.

        Copying is one C call under the GIL, so a concurrent record lands wholly
        before or after it; should the deque still report a change mid-copy,
        the copy is taken again.
        """
        for _ in range(3):
            try:
                return tuple(self._samples)
            except RuntimeError:  # "deque mutated during iteration"
                continue
        return tuple(self._samples)


def nearest_rank(ordered: list[float], qs: tuple[float, ...]) -> tuple[float | None, ...]:
    """Nearest-rank percentiles (``qs`` in 0..100) of sorted values, None each when there are none.

    Example:
        >>> nearest_rank([1.0, 2.0, 3.0, 4.0], (50, 99))
        (2.0, 4.0)
    """
    if not ordered:
        return tuple(None for _ in qs)
    last = len(ordered) - 1
    return tuple(ordered[min(last, max(0, math.ceil(q / 100 * len(ordered)) - 1))] for q in qs)
