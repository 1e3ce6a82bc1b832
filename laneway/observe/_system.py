"""One read of the live system: lane depths, pool workers, agents and their breakers.

The monitor, the dashboard and the Prometheus endpoint all show the same
figures, so they read them here. :func:`system_view` only looks at subsystems
something else already started (``orch.started_pool()`` and the like): observing must
never start a pool or a router as a side effect.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from laneway.observe._observed import Observed

log = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class LaneView:
    """One lane's queue right now."""

    name: str
    priority: int
    pending: int
    active: int
    max_concurrent: int
    completed: int = 0
    failed: int = 0


@attrs.frozen(slots=True)
class WorkerView:
    """One pool worker right now (``rss`` in bytes, ``cpu`` in percent)."""

    name: str
    pid: int
    state: str
    rss: int
    cpu: float
    tasks_done: int


@attrs.frozen(slots=True)
class AgentView:
    """One agent right now, with its breaker state (``role`` reads like ``"α5 analyzer"``)."""

    agent_id: str
    role: str
    in_flight: int
    max_concurrent: int
    completed: int
    failed: int
    breaker: str


@attrs.frozen
class SystemView:
    """Lanes, workers and agents at one moment (from :func:`system_view`).

    Attributes:
        ts: the orchestrator clock's reading.
        lanes, workers, agents: what the started subsystems report (empty when not started).
        pool_queued: tasks waiting in the pool's own queue.
        pool_in_flight: tasks sent to workers and not yet answered.
    """

    ts: float
    lanes: tuple[LaneView, ...] = ()
    workers: tuple[WorkerView, ...] = ()
    agents: tuple[AgentView, ...] = ()
    pool_queued: int = 0
    pool_in_flight: int = 0

    @property
    def total_pending(self) -> int:
        """Work waiting anywhere: commands queued in lanes plus tasks queued in the pool."""
        return sum(lane.pending for lane in self.lanes) + self.pool_queued

    @property
    def total_active(self) -> int:
        """Work running anywhere: commands running in lanes plus tasks on pool workers."""
        return sum(lane.active for lane in self.lanes) + self.pool_in_flight


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def _role(role: Any) -> str:
    symbol = getattr(role, "symbol", None)
    return f"{symbol} {role.name.lower()}" if symbol else _value(role)


def system_view_of(ts: float, *, lanes: Iterable[Any] = (), workers: Iterable[Any] = (), pool: Any = None,
                   agents: Iterable[Any] = ()) -> SystemView:
    """A :class:`SystemView` of readings already taken, for a reader that needs them in full too.

    Args:
        ts: the clock reading they were taken at.
        lanes: the lanes' ``LaneStats`` (``lanes.statistics().lanes``).
        workers: the pool's worker records (``pool.workers()``).
        pool: the pool's statistics (``pool.statistics()``), or None without a pool.
        agents: the router's agent records (``router.agents()``).

    Example:
        >>> system_view_of(1.0).total_pending
        0
    """
    return SystemView(
        ts,
        tuple(LaneView(s.name, s.priority, s.pending, s.active, s.max_concurrency, s.completed, s.failed)
              for s in lanes),
        tuple(WorkerView(w.name, w.pid, _value(w.state), w.rss, w.cpu, w.tasks_done) for w in workers),
        tuple(AgentView(a.agent_id, _role(a.role), a.in_flight, a.max_concurrent, a.completed, a.failed,
                        _value(a.breaker)) for a in sorted(agents, key=lambda a: a.agent_id)),
        pool.queued if pool is not None else 0,
        pool.in_flight if pool is not None else 0,
    )


def _read(key: str, subsystem: Any, read: Any, empty: Any) -> Any:
    if subsystem is None:
        return empty
    try:
        return read(subsystem)
    except Exception:
        # An observer must not take the system down: a subsystem mid-shutdown
        # may refuse to answer; show the others.
        log.debug("reading %s for the system view failed", key, exc_info=True)
        return empty


def system_view(orch: Observed) -> SystemView:
    """Read lanes, pool and router if they are started; a failing read is logged and left empty.

    Example:
        >>> from laneway import Orchestrator
        >>> with Orchestrator(name="doc") as orch:
        ...     system_view(orch).total_pending
        0
    """
    lanes = _read("lanes", orch.started_lanes(), lambda x: x.statistics().lanes, ())
    workers, pool = _read("pool", orch.started_pool(), lambda x: (x.workers(), x.statistics()), ((), None))
    agents = _read("router", orch.started_router(), lambda x: x.agents(), ())
    return system_view_of(orch.clock.now(), lanes=lanes, workers=workers, pool=pool, agents=agents)
