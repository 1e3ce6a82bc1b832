"""What the lanes report about themselves: statistics and status, read under the core's lock."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laneway.lanes._lane import oldest_waiting
from laneway.lanes._metrics import prepare_readings
from laneway.lanes._records import LaneManagerStats, LaneStatus, ManagerStatusReport

if TYPE_CHECKING:
    from laneway.lanes._core import LaneCore


def manager_statistics(core: LaneCore, sessions: int) -> LaneManagerStats:
    """Every lane's statistics and the shared capacity.

    Sorting the lanes' latency windows is most of the work, and a console or
    monitor asks several times a second: it is done first, on copies, without
    the lock, so the lock is held only while the counters are read. The
    percentiles are those of the windows when the call began.
    """
    now = core.clock.now()
    with core.lock:
        recorders = [x.recorder for x in core.lanes.values()]
    prepare_readings(recorders, now)
    with core.lock:
        lanes = sorted(core.lanes.values(), key=lambda x: x.config.priority)
        oldest = oldest_waiting(core.commands.values(), lanes)
        return LaneManagerStats(
            lanes=tuple(x.stats(now, oldest.get(x)) for x in lanes),
            max_workers=core.max_workers,
            running=core.running,
            threads=core.executors.thread_count,
            sessions=sessions,
            accepting=core.accepting,
        )


def manager_status(core: LaneCore) -> ManagerStatusReport:
    """The manager's status and every lane's."""
    with core.lock:
        accepting, closed = core.accepting, core.closed
        lanes = sorted(core.lanes.values(), key=lambda x: x.config.priority)
        reports = tuple(x.status(accepting, closed) for x in lanes)
        pending = sum(x.pending for x in lanes)
        running = core.running
    if closed or (not accepting and not pending and not running):
        status = LaneStatus.CLOSED
    elif not accepting:
        status = LaneStatus.DRAINING
    elif pending or running:
        status = LaneStatus.BUSY
    elif all(r.status is LaneStatus.PAUSED for r in reports if r.session_id is None):
        status = LaneStatus.PAUSED
    else:
        status = LaneStatus.IDLE
    return ManagerStatusReport(status, reports, pending, running, core.max_workers, accepting)
