"""Events, metrics, alerts and progress streams."""

from laneway.observe._events import Event, EventBus, Subscription

__all__ = ["Event", "EventBus", "Subscription"]
