"""What observers (metrics, monitor, dashboard, exporters) need from the system they watch.

The :class:`~laneway.Orchestrator` provides it. Each ``started_*`` method
returns a subsystem only if something else already started it: observing must
never start a pool or lanes as a side effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from laneway.actors import ActorRef, Actor
    from laneway.core import Clock, EventBus
    from laneway.lanes import LaneManager
    from laneway.observe._metrics import Metrics
    from laneway.pool import Pool
    from laneway.router import Router


class Observed(Protocol):
    """A running system as observers see it."""

    name: str
    clock: Clock
    events: EventBus

    def spawn(self, factory: Callable[..., Actor], *args: Any, name: str, shutdown_timeout: float | None = None,
              **kwargs: Any) -> ActorRef: ...

    def on_shutdown(self, label: str, hook: Callable[[float], Any]) -> None: ...

    def started_pool(self) -> Pool | None: ...

    def started_lanes(self) -> LaneManager | None: ...

    def started_router(self) -> Router | None: ...

    def started_metrics(self) -> Metrics | None: ...
