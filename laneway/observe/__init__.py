"""Events, metrics, alerts, progress streams and the live dashboard.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="doc") as orch:
    ...     metrics = orch.metrics          # starts listening to orch.events
    ...     orch.events.publish("queue.command.completed", "query", lane="query", latency_s=0.002)
    ...     metrics.snapshot().lanes["query"].completed
    1
"""

from laneway.observe._events import Event, EventBus, Subscription
from laneway.observe._histogram import LatencyHistogram, LatencySummary, percentile
from laneway.observe._metrics import (
    BreakerSnapshot,
    Counter,
    Metrics,
    MetricsSnapshot,
    Scope,
    SeriesSnapshot,
)
from laneway.observe._progress import (
    ProgressEvent,
    ProgressKind,
    ProgressStatistics,
    ProgressStream,
    ProgressSubscription,
)
from laneway.observe._system import AgentView, LaneView, SystemView, WorkerView, system_view

__all__ = [
    "AgentView",
    "BreakerSnapshot",
    "Counter",
    "Event",
    "EventBus",
    "LaneView",
    "LatencyHistogram",
    "LatencySummary",
    "Metrics",
    "MetricsSnapshot",
    "ProgressEvent",
    "ProgressKind",
    "ProgressStatistics",
    "ProgressStream",
    "ProgressSubscription",
    "Scope",
    "SeriesSnapshot",
    "Subscription",
    "SystemView",
    "WorkerView",
    "percentile",
    "system_view",
]
