"""Where lanes report what they measure: queue length, completions and their latency.

A :class:`LaneMetrics` backend hands each lane a :class:`LaneRecorder` when
the lane is made; the manager calls the recorder under its scheduler lock,
so a recorder must be cheap and must not block (forward to another system
from a queue, not inline). :class:`InMemoryLaneMetrics` is the default: the
windows behind :class:`~laneway.lanes.LaneStats`' throughput and latency
percentiles.
"""

from __future__ import annotations

import threading
import weakref
from typing import Iterable, Protocol, runtime_checkable

import attrs

from laneway.lanes._window import Latencies, Throughput, nearest_rank


@attrs.frozen
class LaneReading:
    """What a lane's recorder reports back for :class:`~laneway.lanes.LaneStats`.

    Attributes:
        throughput_per_s: completions per second over the recorder's window.
        latency_p50_s, latency_p90_s, latency_p95_s, latency_p99_s: submit-to-completion
            latency over recent completions (None before the first).
        peak_pending: the longest queue reported since the last reset.
    """

    throughput_per_s: float = 0.0
    latency_p50_s: float | None = None
    latency_p90_s: float | None = None
    latency_p95_s: float | None = None
    latency_p99_s: float | None = None
    peak_pending: int = 0


@runtime_checkable
class LaneRecorder(Protocol):
    """One lane's sink; called under the manager's lock, so it must be quick and never block."""

    def queue_length(self, pending: int) -> None:
        """The lane's pending count changed to ``pending``."""

    def completed(self, latency_s: float, now: float) -> None:
        """A command completed ``latency_s`` seconds after it was submitted, at clock time ``now``."""

    def read(self, now: float) -> LaneReading:
        """What :meth:`LaneManager.lane_stats` shows of this lane's windows."""


@runtime_checkable
class LaneMetrics(Protocol):
    """A metrics backend for a :class:`~laneway.lanes.LaneManager` (its ``metrics=`` option).

    Example:
        >>> from laneway.lanes import InMemoryLaneMetrics
        >>> metrics = InMemoryLaneMetrics()
        >>> rec = metrics.recorder("query", now=0.0)
        >>> rec.completed(0.25, now=10.0); rec.read(now=10.0).latency_p50_s
        0.25
        >>> metrics.reset(); rec.read(now=11.0).latency_p50_s is None
        True
    """

    def recorder(self, lane: str, now: float) -> LaneRecorder:
        """A recorder for a new lane named ``lane`` (session lanes too), made at clock time ``now``."""

    def reset(self) -> None:
        """Forget what was recorded so far, for every lane."""


PERCENTILES = (50, 90, 95, 99)


class MemoryRecorder:
    """The in-memory recorder. The lanes' core updates ``peak`` and records completions into its
    windows itself when a lane's recorder is one of these: no call per queue change or completion."""

    __slots__ = ("latencies", "throughput", "peak", "_sorted", "_prepared", "__weakref__")

    def __init__(self, now: float) -> None:
        self.latencies = Latencies()
        self.throughput = Throughput(now)
        self.peak = 0
        # (window, its samples, their percentiles) of the last sort: a read of an unchanged window
        # compares the samples (a few µs) instead of sorting them again (hundreds).
        self._sorted: tuple[Latencies, tuple[float, ...], tuple[float | None, ...]] | None = None
        # (thread, now, window, percentiles) from prepare(), for that thread's next read(now) only.
        self._prepared: tuple[int, float, Latencies, tuple[float | None, ...]] | None = None

    def _percentiles(self, window: Latencies) -> tuple[float | None, ...]:
        samples = window.samples()
        done = self._sorted
        if done is not None and done[0] is window and done[1] == samples:
            return done[2]
        result = nearest_rank(sorted(samples), PERCENTILES)
        self._sorted = (window, samples, result)
        return result

    def prepare(self, now: float) -> None:
        """Sort a copy of the latency window now, without the manager's lock, for this thread's ``read(now)``."""
        window = self.latencies
        self._prepared = (threading.get_ident(), now, window, self._percentiles(window))

    def queue_length(self, pending: int) -> None:
        if pending > self.peak:
            self.peak = pending

    def completed(self, latency_s: float, now: float) -> None:
        self.latencies.record(latency_s)
        self.throughput.record(now)

    def read(self, now: float) -> LaneReading:
        prepared, self._prepared = self._prepared, None
        if (prepared is not None and prepared[0] == threading.get_ident() and prepared[1] == now
                and prepared[2] is self.latencies):
            p50, p90, p95, p99 = prepared[3]
        else:
            p50, p90, p95, p99 = self._percentiles(self.latencies)
        return LaneReading(self.throughput.rate(now), p50, p90, p95, p99, self.peak)

    def reset(self) -> None:
        # Fresh windows (rebinding is atomic, so no lock against a concurrent record is needed).
        self.latencies = Latencies()
        self.throughput = Throughput(None)
        self.peak = 0
        self._sorted = self._prepared = None


def prepare_readings(recorders: Iterable[LaneRecorder], now: float) -> None:
    """Do the costly part of the next ``read(now)`` of each in-memory recorder here, on this thread.

    Called without the manager's lock just before the reads it takes under the
    lock: sorting each lane's latency window (most of a read) then holds no lane
    up. The percentiles are those of the window when this runs, so they may miss
    the few completions recorded between this and the read. Other recorders are
    read as usual.
    """
    for rec in recorders:
        if isinstance(rec, MemoryRecorder):
            rec.prepare(now)


class InMemoryLaneMetrics:
    """The default backend: a sliding window of completions and latencies per lane, in memory."""

    def __init__(self) -> None:
        # Weak: a removed session lane's recorder goes with its lane.
        self._recorders: weakref.WeakSet[MemoryRecorder] = weakref.WeakSet()

    def recorder(self, lane: str, now: float) -> LaneRecorder:
        rec = MemoryRecorder(now)
        self._recorders.add(rec)
        return rec

    def reset(self) -> None:
        for rec in list(self._recorders):
            rec.reset()
