"""The Ray backend's two threads: an asyncio loop for Ray I/O, and an ordered reporter.

Ray's futures are awaited on the loop; everything the backend tells the pool goes
through the reporter, one call after the other in the order it was queued. Pool
callbacks may run user code (settling futures), so they never run on the loop and
can never stall Ray I/O or heartbeats.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
from typing import Any, Callable

from laneway.core import DaemonThreads, LoopThread
from laneway.errors import PoolError, SystemShutdown

log = logging.getLogger(__name__)

#: Bound on waiting for the loop to run a short call for another thread.
CALL_TIMEOUT_S = 30.0


class LoopThreads:
    """The Ray backend's event loop (core's :class:`~laneway.core.LoopThread`) plus one reporter thread.

    Pool callbacks may run user code, so they never run on the loop: :meth:`report`
    queues them for a single daemon thread, which runs them in queue order.

    Example:
        >>> threads = LoopThreads("doc")
        >>> threads.call(lambda: 6 * 7)
        42
        >>> threads.stop()
    """

    def __init__(self, name: str) -> None:
        self._loop_thread = LoopThread(f"laneway-ray:{name}")
        self.loop = self._loop_thread.get()
        self._reporter = DaemonThreads(1, f"laneway-ray-reports:{name}")  # one thread: reports stay in order
        self._stopped = False

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon (from any thread); dropped once stopped."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nothing is left to act on
            log.debug("Ray loop closed; dropped %r", fn)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the loop and return its result (never call this from the loop).

        Raises:
            PoolError: the threads are stopped.
        """
        if self._stopped:
            raise PoolError("the Ray backend is closed")
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        self.post(run)
        return fut.result(timeout=CALL_TIMEOUT_S)

    def report(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)`` for the reporter thread (runs in queue order)."""
        try:
            self._reporter.submit(functools.partial(fn, *args, **kwargs))
        except SystemShutdown:
            log.debug("Ray reporter stopped; dropped %r", fn)

    def stop(self) -> None:
        """Cancel what runs on the loop, run the queued reports, and end both threads."""
        self._stopped = True
        self._loop_thread.close(CALL_TIMEOUT_S)
        self._reporter.close(CALL_TIMEOUT_S)
