"""Lanes, priority queues, the tool registry, retries, dead letters and rate limits."""

from laneway.lanes._retry import RetryKind, RetryPolicy

__all__ = ["RetryKind", "RetryPolicy"]
