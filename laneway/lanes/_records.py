"""Public records of the lanes subsystem: command states, handles, statistics and drain reports."""

from __future__ import annotations

import enum
from typing import Any, Callable, Generator, NamedTuple

import attrs

from laneway.actors import Future


class CommandState(enum.Enum):
    """Where a command is in its life."""

    QUEUED = "queued"  #: waiting in its lane
    RUNNING = "running"  #: a run is in progress
    RETRY_WAIT = "retry_wait"  #: failed, waiting for its retry backoff
    COMPLETED = "completed"  #: returned a value
    FAILED = "failed"  #: failed its last attempt (and went to the dead-letter queue)
    CANCELLED = "cancelled"  #: cancelled or preempted (with ``PreemptAction.FAIL``)


class LaneStatus(enum.Enum):
    """What a lane (or the whole manager) is doing now."""

    IDLE = "idle"  #: nothing pending or running
    BUSY = "busy"  #: commands pending or running
    PAUSED = "paused"  #: paused: starts nothing (it still takes commands); the manager: every named lane paused
    DRAINING = "draining"  #: shutting down (or a session lane closing) with work left to finish
    CLOSED = "closed"  #: takes no commands and has none left (shut down and drained, or closed)


@attrs.frozen
class LaneStatusReport:
    """One lane's status (phase-2's LaneStatus report), from :meth:`LaneManager.status`.

    Attributes:
        name: the lane.
        status: what it is doing now.
        pending: commands waiting (queued or waiting for a retry).
        active: runs in progress.
        max_concurrency: commands of the lane that may run at once.
        priority: its scheduling priority (0 first).
        pressure: pending is at or over its ``pressure_threshold``.
        session_id: the session of a session lane, else None.
    """

    name: str
    status: LaneStatus
    pending: int
    active: int
    max_concurrency: int
    priority: int
    pressure: bool = False
    session_id: str | None = None


@attrs.frozen
class ManagerStatusReport:
    """The lane manager's status and every lane's, from :meth:`LaneManager.status` without a lane.

    Attributes:
        status: the manager's: CLOSED or DRAINING once shut down, else BUSY while any
            command is pending or running, PAUSED if every named lane is paused, else IDLE.
        lanes: each lane's report (session lanes too), in scheduling order.
        pending: commands waiting across all lanes.
        running: runs in progress.
        max_workers: runs that may be in progress at once.
        accepting: False after :meth:`LaneManager.shutdown`.
    """

    status: LaneStatus
    lanes: tuple[LaneStatusReport, ...]
    pending: int
    running: int
    max_workers: int
    accepting: bool

    def lane(self, name: str) -> LaneStatusReport:
        """The report of one lane; raises LookupError."""
        for s in self.lanes:
            if s.name == name:
                return s
        raise LookupError(f"no lane {name!r} in this status report")


class CommandHandle(NamedTuple):
    """What :meth:`LaneManager.submit` returns: the command's id, where it queued, and its result.

    Immutable. A NamedTuple rather than a frozen attrs class: every submit makes one, and a
    frozen attrs ``__init__`` (one ``object.__setattr__`` call per field) cost 9k of the
    ~100k instructions a whole no-op command takes; a tuple costs 4k.

    Attributes:
        command_id: unique id (use it with ``cancel`` and to find dead letters).
        lane: the lane it was queued in.
        position: commands expected to start before it (0: next, or already started).
        eta_s: estimated seconds until it starts, from the lane's recent
            throughput; None while the lane has no history.
        future: settles with the tool's return value or a typed error.
        cancel_fn: what :meth:`cancel` calls, ``(command_id, reason)``.

    Example:
        >>> h = lanes.submit("query", "search", {"q": "actors"})   # doctest: +SKIP
        >>> h.position, h.result(timeout=10)                       # doctest: +SKIP
        (0, [...])
    """

    command_id: str
    lane: str
    position: int
    eta_s: float | None
    future: Future[Any]
    cancel_fn: Callable[[str, str], bool]

    def __repr__(self) -> str:
        return f"CommandHandle(command_id={self.command_id!r}, lane={self.lane!r}, position={self.position}, eta_s={self.eta_s!r})"

    def result(self, timeout: float | None = None) -> Any:
        """Block for the result; raises the command's error or a typed timeout."""
        return self.future.get(timeout)

    def done(self) -> bool:
        """True once the future settled."""
        return self.future.done()

    def cancel(self, reason: str = "cancelled by caller") -> bool:
        """Cancel the command (see :meth:`LaneManager.cancel`)."""
        return self.cancel_fn(self.command_id, reason)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.future.__await__()


@attrs.frozen
class LaneStats:
    """One lane's counters and windows (trio-style ``statistics()``).

    Attributes:
        name, priority, min_concurrency, max_concurrency: its configuration now.
        pending: commands waiting (queued or waiting for a retry).
        active: runs in progress (a timed-out sync run holds its slot until it returns).
        completed, failed, timed_out, retried, dead_lettered, cancelled, preempted: totals.
        oldest_queued_age_s: how long the oldest queued command has waited (0 if none).
        throughput_per_s: completions per second over the last 60 s.
        latency_p50_s, latency_p90_s, latency_p95_s, latency_p99_s: submit-to-completion
            latency over recent completions (None before the first).
        paused: True while the lane starts nothing.
        session_id: the session of a session lane, else None.
        peak_pending: the longest queue the metrics backend saw since its last reset.
        pressure_threshold: pending count that publishes ``queue.lane.pressure`` (None: off).
    """

    name: str
    priority: int
    min_concurrency: int
    max_concurrency: int
    pending: int
    active: int
    completed: int
    failed: int
    timed_out: int
    retried: int
    dead_lettered: int
    cancelled: int
    preempted: int
    oldest_queued_age_s: float
    throughput_per_s: float
    latency_p50_s: float | None
    latency_p90_s: float | None
    latency_p95_s: float | None
    latency_p99_s: float | None
    paused: bool = False
    session_id: str | None = None
    peak_pending: int = 0
    pressure_threshold: int | None = None


@attrs.frozen
class LaneManagerStats:
    """The whole manager: every lane, plus shared capacity.

    Attributes:
        lanes: per-lane statistics, in scheduling order.
        max_workers: commands that may run at once across all lanes.
        running: runs in progress now.
        threads: worker threads started so far (sync tools run on them).
        sessions: session lanes open now.
        accepting: False after :meth:`LaneManager.shutdown`.
    """

    lanes: tuple[LaneStats, ...]
    max_workers: int
    running: int
    threads: int
    sessions: int
    accepting: bool

    def lane(self, name: str) -> LaneStats:
        """The statistics of one lane; raises LookupError."""
        for s in self.lanes:
            if s.name == name:
                return s
        raise LookupError(f"no lane {name!r} in these statistics")


@attrs.frozen
class DrainReport:
    """What :meth:`LaneManager.drain` (or ``close``) found at its end.

    Attributes:
        drained: True if nothing was left queued or running.
        queued: ids of commands still queued (or waiting for a retry), oldest first.
        running: ids of commands still running.
        persisted: (``close`` only) ids left in the store, to run in the next
            manager on the same store.
        dead_lettered: (``close`` only) ids of unfinished commands without a
            store, moved to the dead-letter queue so they can be re-submitted.
    """

    drained: bool
    queued: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    persisted: tuple[str, ...] = ()
    dead_lettered: tuple[str, ...] = ()
