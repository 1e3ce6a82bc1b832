"""Starts worker processes from one long-lived thread.

Workers start as ``spawn`` children do, without multiprocessing's resource tracker
(see :func:`laneway.worker.start_process`).

Linux's ``PR_SET_PDEATHSIG`` fires when the *thread* that forked a child exits,
not the process. Worker actors are restarted on fresh threads, so if they forked
the workers themselves, a restart would SIGKILL the siblings they had started.
All forks therefore happen here, on a thread that lives as long as the pool.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from typing import Any, Callable

from laneway.errors import PoolError
from laneway.worker import start_process

log = logging.getLogger(__name__)


class Spawner:
    """A thread that starts worker processes on request.

    Example:
        >>> sp = Spawner("doc")                                   # doctest: +SKIP
        >>> proc = sp.spawn(print, ("hi",), name="w1")            # doctest: +SKIP
        >>> sp.close()                                            # doctest: +SKIP
    """

    def __init__(self, name: str) -> None:
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"laneway-spawner:{name}", daemon=True)
        self._thread.start()

    def spawn(self, target: Callable[..., Any], args: tuple, *, name: str) -> Any:
        """Start a process running ``target(*args)``; returns its :class:`~laneway.worker.ChildProcess`.

        Raises:
            PoolError: the process could not be started, or the spawner is closed.
        """
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise PoolError("the pool's spawner is closed")
            self._requests.put((target, args, name, fut))
        try:
            return fut.result()
        except PoolError:
            raise
        except Exception as exc:
            raise PoolError(f"could not start worker process {name}: {exc!r}") from exc

    def close(self) -> None:
        """Stop the thread (after every worker it started is gone, or PDEATHSIG kills them)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._requests.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            target, args, name, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                proc = start_process(target, args, name=name)
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(proc)
