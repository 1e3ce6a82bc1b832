"""Daemon threads for user code: a bounded, on-demand thread set and one asyncio loop thread."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Callable

from laneway.errors import SystemShutdown

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)


class DaemonThreads:
    """Up to ``max_threads`` daemon threads running queued callables; threads start only as the backlog needs.

    Used wherever user code (handlers, executors, tools) must run off an
    actor's thread. Daemon threads, unlike ``ThreadPoolExecutor``'s, cannot
    hold up interpreter exit when user code hangs; counting the backlog, not
    just idle threads, keeps two quick submits from sharing one idle thread.

    Example:
        >>> threads = DaemonThreads(4, "doc")
        >>> threads.submit(lambda: None)
        >>> threads.close(timeout=1)
        True
    """

    def __init__(self, max_threads: int, name: str) -> None:
        self._max = max_threads
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._backlog = 0
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise SystemShutdown(f"{self._name} is shut down")
            self._backlog += 1
            spawn = self._backlog > self._idle and len(self._threads) < self._max
            if spawn:
                thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
        self._queue.put(fn)
        if spawn:
            thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            fn = self._queue.get()
            with self._lock:
                self._idle -= 1
                self._backlog -= 1
            if fn is None:
                return
            try:
                fn()
            except BaseException:  # noqa: BLE001 - calls report their own errors; nothing a call does may end this thread
                log.exception("%s: a queued call raised", self._name)
            del fn  # hold nothing of the last call while waiting for the next

    @property
    def threads(self) -> int:
        """How many threads were started so far."""
        return len(self._threads)

    def close(self, timeout: float) -> bool:
        """Stop the threads once their current call ends; False if some did not within ``timeout``."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout  # joins real threads: real time
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


class LoopThread:
    """One asyncio loop on a daemon thread, started on first use, for ``async def`` user code.

    Example:
        >>> loop = LoopThread("doc")
        >>> import asyncio
        >>> async def two(): return 2
        >>> asyncio.run_coroutine_threadsafe(two(), loop.get()).result(5)
        2
        >>> loop.close(timeout=1)
        True
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise SystemShutdown(f"{self._name} is shut down")
            if self._loop is None:
                import asyncio  # on first use, like the loop: programs without async handlers never load it

                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                try:
                    thread.start()
                except BaseException:
                    # Kept unset, so the next get() tries again instead of handing out a loop nobody runs.
                    loop.close()
                    raise
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self, timeout: float) -> bool:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return True
        import asyncio

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
        except Exception:
            log.exception("%s: cancelling async handlers at shutdown failed", self._name)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            log.error("%s: event loop did not stop within %.1fs; abandoning it", self._name, timeout)
            return False
        loop.close()
        return True
