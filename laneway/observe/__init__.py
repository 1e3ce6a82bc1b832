"""Events, metrics, alerts, progress streams and the live dashboard.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="doc") as orch:
    ...     metrics = orch.metrics          # starts listening to orch.events
    ...     orch.events.publish("queue.command.completed", "query", lane="query", latency_s=0.002)
    ...     metrics.snapshot().lanes["query"].completed
    1
"""

from laneway.observe._alerts import Alert, AlertKind, AlertLevel, AlertState, AlertThresholds, Threshold
from laneway.observe._dashboard import Dashboard
from laneway.core import Event, EventBus, Subscription
from laneway.observe._histogram import LatencyHistogram, LatencySummary, percentile
from laneway.observe._metrics import (
    BreakerSnapshot,
    Counter,
    Metrics,
    MetricsSnapshot,
    Scope,
    SeriesSnapshot,
)
from laneway.observe._observed import Observed
from laneway.observe._monitor import Monitor, MonitorSample, MonitorStatistics
from laneway.core import (
    ProgressEvent,
    ProgressKind,
    ProgressStatistics,
    ProgressStream,
    ProgressSubscription,
)
from laneway.observe._system import AgentView, LaneView, SystemView, WorkerView, system_view, system_view_of

__all__ = [
    "Observed",
    "AgentView",
    "Alert",
    "AlertKind",
    "AlertLevel",
    "AlertState",
    "AlertThresholds",
    "BreakerSnapshot",
    "Counter",
    "Dashboard",
    "Event",
    "EventBus",
    "LaneView",
    "LatencyHistogram",
    "LatencySummary",
    "Metrics",
    "MetricsSnapshot",
    "Monitor",
    "MonitorSample",
    "MonitorStatistics",
    "ProgressEvent",
    "ProgressKind",
    "ProgressStatistics",
    "ProgressStream",
    "ProgressSubscription",
    "Scope",
    "SeriesSnapshot",
    "Subscription",
    "SystemView",
    "Threshold",
    "WorkerView",
    "percentile",
    "system_view",
    "system_view_of",
]
