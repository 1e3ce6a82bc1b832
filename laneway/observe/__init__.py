"""Events, metrics, alerts and progress streams."""

from laneway.observe._events import Event, EventBus, Subscription
from laneway.observe._progress import (
    ProgressEvent,
    ProgressKind,
    ProgressStatistics,
    ProgressStream,
    ProgressSubscription,
)

__all__ = [
    "Event",
    "EventBus",
    "ProgressEvent",
    "ProgressKind",
    "ProgressStatistics",
    "ProgressStream",
    "ProgressSubscription",
    "Subscription",
]
