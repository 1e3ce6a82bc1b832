"""What a subsystem needs from whatever runs CPU-bound calls in other processes.

Lanes and the router run ``cpu_bound`` tools and handlers outside the
interpreter; they are given a provider of a :class:`CpuRunner` (the process
pool, started on first use) by the composition root, and never look the pool
up themselves.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol


class CpuFuture(Protocol):
    """The future of a call on a :class:`CpuRunner`: a ``concurrent.futures.Future`` plus :meth:`force_cancel`."""

    def add_done_callback(self, fn: Callable[[Any], object]) -> None: ...

    def cancelled(self) -> bool: ...

    def exception(self, timeout: float | None = None) -> BaseException | None: ...

    def result(self, timeout: float | None = None) -> Any: ...

    def force_cancel(self) -> bool:
        """Give up on the call even while it runs (its result, if any, is dropped); False if it had finished."""
        ...


class CpuRunner(Protocol):
    """Runs a picklable call in another process for a caller that owns its outcome.

    The caller retries and dead-letters itself, so the runner must not
    dead-letter the call.
    """

    def run_cpu_bound(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None,
        *,
        timeout: float | None,
        attempts: int | None = None,
        block: bool = True,
    ) -> CpuFuture:
        """Start ``fn(*args, **kwargs)``; ``block=False`` fails at once when the runner's queue is full.

        ``attempts`` counts runs allowed when a worker dies under the call
        (None: the runner's default).
        """
        ...


#: A function that returns the runner, starting it on first call.
CpuRunnerProvider = Callable[[], CpuRunner]
