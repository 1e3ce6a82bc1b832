"""What metrics count and the frozen snapshots they report; exporters read these, not the registry."""

from __future__ import annotations

import enum
from typing import Any, Mapping

import attrs

from laneway.observe._histogram import LatencySummary


class Scope(enum.Enum):
    """What a series measures."""

    LANE = "lane"
    AGENT = "agent"
    POOL = "pool"


class Counter(enum.Enum):
    """The counters every series has; the value is the :class:`SeriesSnapshot` field name."""

    SUBMITTED = "submitted"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


@attrs.frozen(slots=True)
class SeriesSnapshot:
    """Counters and latency of one lane, agent or pool at one moment."""

    scope: Scope
    name: str
    submitted: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    latency: LatencySummary = LatencySummary()

    def counters(self) -> dict[str, int]:
        """The counters as ``{field name: value}``, in :class:`Counter` order."""
        return {c.value: getattr(self, c.value) for c in Counter}


@attrs.frozen(slots=True)
class BreakerSnapshot:
    """The last known state of one agent's circuit breaker and how often it opened."""

    agent_id: str
    state: str
    opens: int


@attrs.frozen
class MetricsSnapshot:
    """Everything :class:`Metrics` knows at one moment (from :meth:`Metrics.snapshot`).

    Attributes:
        ts: the orchestrator clock's reading when taken.
        lanes, agents, pools: series by name.
        breakers: breaker state by agent id.
        restarts: restarts by ``"<supervisor>/<child>"`` or ``"pool/<slot>"``.
        worker_losses: pool worker processes that died or vanished.
        events: events the metrics listener consumed.
    """

    ts: float
    lanes: Mapping[str, SeriesSnapshot]
    agents: Mapping[str, SeriesSnapshot]
    pools: Mapping[str, SeriesSnapshot]
    breakers: Mapping[str, BreakerSnapshot]
    restarts: Mapping[str, int]
    worker_losses: int
    events: int

    def series(self, scope: Scope) -> Mapping[str, SeriesSnapshot]:
        """The series of one scope by name."""
        return {Scope.LANE: self.lanes, Scope.AGENT: self.agents, Scope.POOL: self.pools}[scope]

    def total(self, scope: Scope, counter: Counter) -> int:
        """One counter summed over every series of a scope."""
        return sum(getattr(s, counter.value) for s in self.series(scope).values())

    @property
    def breaker_opens(self) -> int:
        return sum(b.opens for b in self.breakers.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as their values)."""

        def series(m: Mapping[str, SeriesSnapshot]) -> dict[str, Any]:
            return {n: {**s.counters(), "latency": attrs.asdict(s.latency)} for n, s in sorted(m.items())}

        return {
            "lanes": series(self.lanes),
            "agents": series(self.agents),
            "pools": series(self.pools),
            "breakers": {a: {"state": b.state, "opens": b.opens} for a, b in sorted(self.breakers.items())},
            "restarts": dict(sorted(self.restarts.items())),
            "worker_losses": self.worker_losses,
        }
