"""Threads that run local task executors: started on demand, bounded, daemonic."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

from laneway.errors import SystemShutdown

log = logging.getLogger(__name__)


class Workers:
    """At most ``max_threads`` daemon threads draining one queue of callables.

    Threads start only when work arrives and no thread is idle, so an engine
    that never runs a local task starts none. They are daemons: a task that
    ignores its cancellation token cannot keep the interpreter from exiting
    (``concurrent.futures`` joins its threads at exit, which would hang).
    """

    def __init__(self, max_threads: int, name: str) -> None:
        self._max = max_threads
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._backlog = 0  # items queued and not yet taken by a thread
        self._closed = False

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise SystemShutdown(f"{self._name} is shut down")
            self._backlog += 1
            # Count the backlog, not just idle threads: two quick submits must not share one idle thread.
            if self._backlog > self._idle and len(self._threads) < self._max:
                t = threading.Thread(target=self._loop, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()
            self._queue.put(fn)

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            fn = self._queue.get()
            with self._lock:
                self._idle -= 1
                if fn is not None:
                    self._backlog -= 1
            if fn is None:
                return
            try:
                fn()
            except Exception:  # fn reports its own errors; this is a last resort
                log.exception("%s: work item raised", self._name)

    @property
    def threads(self) -> int:
        return len(self._threads)

    def close(self) -> None:
        """Refuse new work; each thread exits after the items queued before this call (owners make those no-ops)."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
