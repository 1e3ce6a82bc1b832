"""The future of one pool task: cheap to make and to settle while nobody waits (see ``LazyFuture``).

States follow :class:`concurrent.futures.Future`: PENDING while the task waits in the
pool's queue or in a worker's window behind another task, RUNNING once it heads its
worker's window (the worker runs its tasks in order, so the head is the one it runs),
then FINISHED or CANCELLED. The scheduler writes PENDING/RUNNING under its own lock,
which :meth:`TaskFuture.cancel` also takes, so a task is never both handed to a worker
and cancelled.
"""

from __future__ import annotations

import concurrent.futures._base as _cf
import threading
import time
from typing import Any, Callable

from laneway.core import LazyFuture
from laneway.errors import LanewayTimeout

_CANCELLED = (_cf.CANCELLED, _cf.CANCELLED_AND_NOTIFIED)
_ALONE = threading.Lock()


class TaskFuture(LazyFuture[Any]):
    """A pool task's :class:`~laneway.actors.Future` (a :class:`concurrent.futures.Future`).

    ``running()`` is true while a worker runs the task; ``cancel()`` succeeds only while no
    worker has it (then it never runs) and wakes ``concurrent.futures.wait`` at once;
    :meth:`force_cancel` also gives up on a task a worker already has.
    """

    _timeout_error = LanewayTimeout
    #: True while the task sits in a worker's window (sent, or about to be): no longer recallable.
    _dispatched = False
    # LazyFuture's initial state as class attributes: a task's future starts with one entry in
    # its __dict__ instead of seven (one is made per task; most are settled without a waiter).
    _cond = None
    _state = _cf.PENDING
    _result = None
    _exception = None
    _waiter_list = None
    _callback_list = None

    def __init__(self, task_id: int, label: str, lock: threading.Lock | None = None,
                 serve: Callable[[Callable[[], bool], float | None], None] | None = None,
                 *, pool: tuple[threading.Lock, Any] | None = None) -> None:
        # No LazyFuture.__init__: the class attributes above are its initial state.
        # lock: the scheduler's, under which tasks go to workers (a future made alone gets a shared one);
        # serve: the backend's serve_waiter, if it has one, which may read results on a waiting thread;
        # pool: both as one tuple the scheduler shares between all its futures. No tuple of its own
        # per future: one container less per task for the garbage collector to count and walk.
        self._id = task_id
        self._label = label
        self._pool = pool if pool is not None else (_ALONE if lock is None else lock, serve)

    def result(self, timeout: float | None = None) -> Any:
        """The task's result, waiting up to ``timeout`` seconds (see :class:`concurrent.futures.Future`).

        While it waits, the calling thread may receive results for the pool (the backend's
        ``serve_waiter``), so its own arrives without a hop through another thread.
        """
        if self._state == _cf.FINISHED:
            if self._exception is None:  # most calls: the value, with no call into the base classes
                return self._result
        else:
            serve = self._pool[1]
            if serve is not None:
                if timeout is None:
                    serve(self.done, None)
                else:
                    deadline = time.monotonic() + timeout
                    serve(self.done, deadline)
                    timeout = max(0.0, deadline - time.monotonic())
        return super().result(timeout)

    @property
    def _what(self) -> str:
        # A string per task only when a timeout error needs it; a caller may still name it.
        what = self.__dict__.get("_what_text")
        return what if what is not None else "result of pool task %d (%s)" % (self._id, self._label)

    @_what.setter
    def _what(self, text: str) -> None:
        self.__dict__["_what_text"] = text

    def running(self) -> bool:
        """True while a worker runs the task (it heads the worker's window)."""
        return self._state == _cf.RUNNING

    def cancel(self) -> bool:
        """Cancel the task unless a worker already has it; True if it is cancelled (it will never run).

        False once the task runs, finished, or was handed to a worker behind another task
        (it can no longer be recalled). Waiters and done callbacks are told at once.
        """
        return self._cancel(force=False)

    def force_cancel(self) -> bool:
        """Cancel the future even if a worker runs the task; False only if it already finished.

        laneway's explicit call for giving up on a running task: the future is cancelled at
        once (done callbacks run, waiters wake), the worker is not interrupted, and the task's
        result, when it comes, is dropped (counted in ``late_results``). Bound a task's run
        time with the ``timeout`` task option instead when the worker should be stopped.
        """
        return self._cancel(force=True)

    def _cancel(self, force: bool) -> bool:
        with self._pool[0]:  # the scheduler hands tasks to workers under this lock
            if self._dispatched and not force:
                return False
            with self._condition:
                state = self._state
                if state == _cf.FINISHED:
                    return False
                if state in _CANCELLED:
                    return True
                # The pool drops a cancelled task without running it, so tell wait() and
                # as_completed() now rather than when the queue reaches it.
                self._state = _cf.CANCELLED_AND_NOTIFIED
                for waiter in self._waiters:
                    waiter.add_cancelled(self)
                self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]  # concurrent.futures.Future's own
        return True
