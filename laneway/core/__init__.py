"""The kernel: primitives every other layer builds on, and that import nothing of laneway but errors and store.

Time (:class:`Clock`, :class:`ManualClock`, :class:`TimerHandle`), results
(:class:`Future`), the event bus and progress streams, cancellation, backoff
and retry policies, the dead-letter queue, the loop and daemon threads user
code runs on, and the :class:`Outbox` that runs side effects after a lock.

Example:
    >>> from laneway.core import ManualClock
    >>> clock = ManualClock()
    >>> fired = []
    >>> _ = clock.call_later(5, lambda: fired.append(clock.now()))
    >>> clock.advance(5)
    >>> fired
    [5.0]
"""

from typing import TYPE_CHECKING, Any

from laneway.core._clock import Clock, ManualClock, MonotonicClock, TimerHandle
from laneway.core._dead_letters import DEFAULT_DEAD_LETTER_CAPACITY, DeadLetter, DeadLetterQueue
from laneway.core._events import Event, EventBus, Subscription
from laneway.core._future import Future, LazyFuture, resolved
from laneway.core._backoff import Backoff

if TYPE_CHECKING:
    from laneway.core._cancellation import (
        CancellationToken,
        current_token,
        current_token_var,
        reset_current_token,
        set_current_token,
    )
    from laneway.core._offload import CpuFuture, CpuRunner, CpuRunnerProvider
    from laneway.core._outbox import Outbox
    from laneway.core._progress import (
        ProgressEvent,
        ProgressKind,
        ProgressStatistics,
        ProgressStream,
        ProgressSubscription,
    )
    from laneway.core._ray_session import acquire_ray, ray_client_mode, release_ray
    from laneway.core._retry import RetryKind, RetryPolicy
    from laneway.core._threads import DaemonThreads, LoopThread

# What an actor system and a pool need loads above; the rest (progress streams, retry policies,
# cancellation, the outbox, loop threads, Ray) loads on first use, each of these modules with its
# attrs and enum classes costing start-up time to a program that never uses it.
_CANCELLATION = frozenset({"CancellationToken", "current_token", "current_token_var", "reset_current_token",
                           "set_current_token"})
_OFFLOAD = frozenset({"CpuFuture", "CpuRunner", "CpuRunnerProvider"})
_PROGRESS = frozenset({"ProgressEvent", "ProgressKind", "ProgressStatistics", "ProgressStream", "ProgressSubscription"})
_RAY = frozenset({"acquire_ray", "ray_client_mode", "release_ray"})
_RETRY = frozenset({"RetryKind", "RetryPolicy"})
_THREADS = frozenset({"DaemonThreads", "LoopThread"})


def __getattr__(name: str) -> Any:
    module: Any
    if name in _CANCELLATION:
        from laneway.core import _cancellation as module
    elif name in _OFFLOAD:
        from laneway.core import _offload as module
    elif name == "Outbox":
        from laneway.core import _outbox as module
    elif name in _PROGRESS:
        from laneway.core import _progress as module
    elif name in _RAY:
        from laneway.core import _ray_session as module
    elif name in _RETRY:
        from laneway.core import _retry as module
    elif name in _THREADS:
        from laneway.core import _threads as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_DEAD_LETTER_CAPACITY",
    "Backoff",
    "CancellationToken",
    "Clock",
    "CpuFuture",
    "CpuRunner",
    "CpuRunnerProvider",
    "DaemonThreads",
    "DeadLetter",
    "DeadLetterQueue",
    "Event",
    "EventBus",
    "Future",
    "LazyFuture",
    "LoopThread",
    "ManualClock",
    "MonotonicClock",
    "Outbox",
    "ProgressEvent",
    "ProgressKind",
    "ProgressStatistics",
    "ProgressStream",
    "ProgressSubscription",
    "RetryKind",
    "RetryPolicy",
    "Subscription",
    "TimerHandle",
    "acquire_ray",
    "current_token",
    "current_token_var",
    "ray_client_mode",
    "release_ray",
    "reset_current_token",
    "resolved",
    "set_current_token",
]


def __dir__() -> list[str]:
    """The module's names, including those loaded on first use (PEP 562)."""
    return sorted(set(globals()) | set(__all__))
