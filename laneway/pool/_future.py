"""The future of one pool task, whose condition is made only when someone waits or watches.

``concurrent.futures.Future.__init__`` builds an RLock and a Condition for every
future; on the tiny-task path that was about 40 % of the caller's submit cost, yet
most task futures are settled (by the pool's results thread) before anyone waits
on them. Until the condition exists nobody can be waiting or have a callback (both
go through it), so settling then takes the module's ``_cond_lock`` instead, and a
reader of a finished future takes no lock at all. The same idea as the lanes'
``CommandFuture``, kept separate so the two packages do not depend on each other.
"""

from __future__ import annotations

import concurrent.futures._base as _cf
import threading
from typing import Any

from laneway.actors import Future
from laneway.errors import LanewayTimeout

# Guards the creation of a task future's condition and lists, and settling before they exist.
_cond_lock = threading.Lock()
_DONE = (_cf.CANCELLED, _cf.CANCELLED_AND_NOTIFIED, _cf.FINISHED)


class TaskFuture(Future[Any]):
    """A pool task's :class:`~laneway.actors.Future`, cheap to make and to settle unwatched."""

    _timeout_error = LanewayTimeout

    def __init__(self, task_id: int, label: str) -> None:  # no super().__init__(): it would build the condition
        self._cond: threading.Condition | None = None
        self._state = _cf.PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._task = (task_id, label)
        # Made on first use like the condition: fewer objects per task for the garbage collector.
        self._waiter_list: list[Any] | None = None
        self._callback_list: list[Any] | None = None

    @property
    def _waiters(self) -> list[Any]:
        lst = self._waiter_list
        return lst if lst is not None else self._make_list("_waiter_list")

    @property
    def _done_callbacks(self) -> list[Any]:
        lst = self._callback_list
        return lst if lst is not None else self._make_list("_callback_list")

    def _make_list(self, slot: str) -> list[Any]:
        with _cond_lock:
            lst = getattr(self, slot)
            if lst is None:
                lst = []
                setattr(self, slot, lst)
        return lst

    @property
    def _what(self) -> str:  # type: ignore[override]
        # A string per task only when a timeout error needs it; a caller may still name it.
        what = self.__dict__.get("_what_text")
        return what if what is not None else "result of pool task %d (%s)" % self._task

    @_what.setter
    def _what(self, text: str) -> None:
        self.__dict__["_what_text"] = text

    @property
    def _condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _cond_lock:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def _settle_unwatched(self, result: Any, error: BaseException | None) -> bool | None:
        """Settle under ``_cond_lock`` if no condition exists yet; None if it does (use the normal path)."""
        with _cond_lock:
            if self._cond is not None:
                return None
            if self._state in _DONE:
                return False
            if error is not None:
                self._exception = error
            else:
                self._result = result
            self._state = _cf.FINISHED  # last: lock-free readers see the value once they see FINISHED
        return True

    def settle(self, result: Any = None, error: BaseException | None = None) -> bool:
        if self._cond is None:
            done = self._settle_unwatched(result, error)
            if done is not None:
                return done  # no waiter or callback can exist: adding one makes the condition
        return super().settle(result, error)

    def done(self) -> bool:
        return self._state in _DONE

    def result(self, timeout: float | None = None) -> Any:
        if self._state == _cf.FINISHED:
            error = self._exception
            if error is None:
                return self._result
            try:
                raise error
            finally:
                self = error = None  # type: ignore[assignment]  # break the traceback cycle, as the base class does
        return super().result(timeout)
