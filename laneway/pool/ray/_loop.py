"""The Ray backend's two threads: an asyncio loop for Ray I/O, and an ordered reporter.

Ray's futures are awaited on the loop; everything the backend tells the pool goes
through the reporter, one call after the other in the order it was queued. Pool
callbacks may run user code (settling futures), so they never run on the loop and
can never stall Ray I/O or heartbeats.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from typing import Any, Callable

from laneway.errors import PoolError

log = logging.getLogger(__name__)

#: Bound on waiting for the loop to run a short call for another thread.
CALL_TIMEOUT_S = 30.0


class LoopThreads:
    """An event loop on a thread of its own plus a reporter thread (both daemons).

    Example:
        >>> threads = LoopThreads("doc")
        >>> threads.call(lambda: 6 * 7)
        42
        >>> threads.stop()
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._reports: queue.SimpleQueue[tuple[Callable[..., Any], tuple, dict] | None] = queue.SimpleQueue()
        self._stopped = False
        self._loop_thread = threading.Thread(target=self._run_loop, name=f"laneway-ray:{name}", daemon=True)
        self._reporter = threading.Thread(target=self._run_reports, name=f"laneway-ray-reports:{name}", daemon=True)
        self._loop_thread.start()
        self._reporter.start()

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
        self._reports.put((fn, args, kwargs))

    def stop(self) -> None:
        """Cancel what runs on the loop, run the queued reports, and end both threads."""
        self._stopped = True
        self.post(self.loop.stop)
        self._loop_thread.join(timeout=CALL_TIMEOUT_S)
        self._reports.put(None)
        self._reporter.join(timeout=CALL_TIMEOUT_S)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    def _run_reports(self) -> None:
        while (item := self._reports.get()) is not None:
            fn, args, kwargs = item
            try:
                fn(*args, **kwargs)
            except BaseException:  # reports only hand bytes to the pool; nothing may end this thread
                log.exception("reporting to the pool failed: %s", getattr(fn, "__name__", fn))
            del item, fn, args, kwargs  # hold no outcome while waiting for the next report
