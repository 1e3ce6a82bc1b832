"""What a subsystem needs from whatever runs CPU-bound calls in other processes.

Lanes and the router run ``cpu_bound`` tools and handlers outside the
interpreter; they are given a provider of a :class:`CpuRunner` (the process
pool, started on first use) by the composition root, and never look the pool
up themselves.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

from laneway.core._future import Future


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
    ) -> Future[Any]:
        """Start ``fn(*args, **kwargs)``; ``block=False`` fails at once when the runner's queue is full.

        ``attempts`` counts runs allowed when a worker dies under the call
        (None: the runner's default).
        """
        ...


#: A function that returns the runner, starting it on first call.
CpuRunnerProvider = Callable[[], CpuRunner]
