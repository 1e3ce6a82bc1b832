"""What the console needs from the system it shows and steers.

The :class:`~laneway.Orchestrator` provides it (the console never imports the
orchestrator). Each ``started_*`` method returns a subsystem only if something
else already started it: opening the console must never start a pool, lanes or
a router as a side effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from laneway.actors import Actor, ActorRef
    from laneway.core import Clock, DeadLetterQueue, EventBus
    from laneway.lanes import LaneManager
    from laneway.observe import Metrics
    from laneway.pool import Pool
    from laneway.router import Router
    from laneway.workflow import WorkflowEngine


class ConsoleTarget(Protocol):
    """A running system as the console sees it (a superset of what observers need)."""

    name: str
    clock: Clock
    events: EventBus
    dead_letters: DeadLetterQueue

    def spawn(self, factory: Callable[..., Actor], *args: Any, name: str, shutdown_timeout: float | None = None,
              **kwargs: Any) -> ActorRef: ...

    def on_shutdown(self, label: str, hook: Callable[[float], Any]) -> None: ...

    def started_pool(self) -> Pool | None: ...

    def started_lanes(self) -> LaneManager | None: ...

    def started_router(self) -> Router | None: ...

    def started_metrics(self) -> Metrics | None: ...

    def started_workflows(self) -> WorkflowEngine | None: ...
