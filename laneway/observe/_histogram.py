"""Latency histograms: exact percentiles over a recent window, cumulative buckets for Prometheus.

Two views of the same samples, because they answer different questions:

* *How slow is it now?* :meth:`LatencyHistogram.summary` gives p50/p90/p95/p99
  computed exactly (linear interpolation, like ``numpy.percentile``'s default)
  over the last ``window`` samples. A fixed window keeps memory bounded and
  lets the figures follow the system when it speeds up or slows down.
* *What was the distribution since start?* cumulative bucket counts with
  Prometheus' ``le`` semantics (a sample equal to a bound counts in that
  bucket), so a Prometheus server can aggregate across processes.

Recording is O(1) amortised (a ``bisect`` over ~20 bounds and a ring-buffer
append under a lock), cheap enough for an event listener on the hot path.
"""

from __future__ import annotations

import bisect
import collections
import math
import threading
from typing import Sequence

import attrs

from laneway.errors import ConfigError

#: Bucket upper bounds in seconds: 100 µs to 60 s, roughly 1-2.5-5 per decade.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

#: The percentiles every summary reports.
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 <= q <= 1) of already sorted values, by linear interpolation.

    Matches ``numpy.percentile(values, 100 * q)`` and
    ``statistics.quantiles(values, n=100, method="inclusive")``: the rank is
    ``q * (n - 1)`` and values between two ranks are interpolated.

    Example:
        >>> percentile([1, 2, 3, 4], 0.5)
        2.5
        >>> percentile(list(range(1, 101)), 0.99)
        99.01

    Raises:
        ConfigError: ``q`` is outside [0, 1] or there are no values.
    """
    if not 0.0 <= q <= 1.0:
        raise ConfigError(f"percentile q must be within [0, 1], got {q!r}")
    n = len(sorted_values)
    if n == 0:
        raise ConfigError("percentile of no values")
    rank = q * (n - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    low = sorted_values[lo]
    return low + (sorted_values[hi] - low) * frac if frac else float(low)


@attrs.frozen(slots=True)
class LatencySummary:
    """Latency figures of one series, in seconds.

    ``count``/``sum_s``/``min_s``/``max_s`` cover every sample since start; the
    percentiles cover the most recent ``window`` samples (all of them while
    fewer were recorded). Every figure is 0.0 when nothing was recorded.
    """

    count: int = 0
    sum_s: float = 0.0
    min_s: float = 0.0
    max_s: float = 0.0
    p50_s: float = 0.0
    p90_s: float = 0.0
    p95_s: float = 0.0
    p99_s: float = 0.0

    @property
    def mean_s(self) -> float:
        return self.sum_s / self.count if self.count else 0.0


class LatencyHistogram:
    """Thread-safe latency recorder; see the module docstring for its two views.

    Args:
        window: how many recent samples the percentiles are computed over.
        buckets: increasing upper bounds (seconds) of the cumulative buckets.

    Example:
        >>> h = LatencyHistogram(window=100)
        >>> for ms in range(1, 101):
        ...     h.record(ms / 1000)
        >>> round(h.summary().p50_s, 4), h.summary().count
        (0.0505, 100)
    """

    __slots__ = ("_lock", "_ring", "_bounds", "_buckets", "count", "total", "min", "max")

    def __init__(
        self,
        window: int = 4096,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        *,
        lock: threading.Lock | None = None,
    ) -> None:
        if not isinstance(window, int) or window < 1:
            raise ConfigError(f"histogram window must be an int >= 1, got {window!r}")
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b <= a for a, b in zip(bounds, bounds[1:])):
            raise ConfigError(f"histogram buckets must be a non-empty increasing sequence, got {buckets!r}")
        # A caller keeping counters next to the histogram may share one lock with it.
        self._lock = lock or threading.Lock()
        self._ring: collections.deque[float] = collections.deque(maxlen=window)
        self._bounds = bounds
        self._buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float) -> None:
        """Add one sample; negative values (clock skew between threads) count as 0."""
        with self._lock:
            self._add(seconds)

    def _add(self, seconds: float) -> None:
        # The caller holds the lock.
        v = seconds if seconds > 0.0 else 0.0
        self.count += 1
        self.total += v
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        self._buckets[bisect.bisect_left(self._bounds, v)] += 1
        self._ring.append(v)

    def summary(self) -> LatencySummary:
        """Counts and the p50/p90/p95/p99 of the recent window."""
        with self._lock:
            recent = sorted(self._ring)
            count, total, lo, hi = self.count, self.total, self.min, self.max
        if not recent:
            return LatencySummary()
        p50, p90, p95, p99 = (percentile(recent, q) for q in QUANTILES)
        return LatencySummary(count, total, lo, hi, p50, p90, p95, p99)

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper_bound, count)`` pairs ending with ``(inf, count)``, Prometheus style."""
        with self._lock:
            counts = list(self._buckets)
        out, running = [], 0
        for bound, n in zip((*self._bounds, math.inf), counts):
            running += n
            out.append((bound, running))
        return out
