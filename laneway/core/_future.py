"""The one future type laneway hands out: blocking ``get`` and non-blocking ``await``."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures._base as _cf
import threading
from typing import Any, Generator, Sequence, TypeVar

from laneway.errors import AskTimeout, LanewayTimeout

T = TypeVar("T")


class Future(concurrent.futures.Future[T]):
    """A result that arrives later, from another thread or process.

    It is a :class:`concurrent.futures.Future`, so ``concurrent.futures.wait``
    and ``asyncio.wrap_future`` accept it, plus:

    * :meth:`get` blocks with a typed timeout error;
    * ``await future`` suspends only the awaiting task, never the event loop
      (pykka's own futures block the loop when awaited).

    Example:
        >>> f = Future()
        >>> f.set_result(3)
        >>> f.get(timeout=1)
        3
    """

    # What the future waits for, used only to word a timeout error.
    _what: str = "result"
    _timeout_error: type[LanewayTimeout] = AskTimeout

    def get(self, timeout: float | None = None) -> T:
        """The result, waiting up to ``timeout`` seconds (None: forever).

        Raises:
            AskTimeout: (or the subclass set by the producer) no result in time.
            Exception: whatever the work raised.
        """
        try:
            return self.result(timeout)
        except concurrent.futures.TimeoutError:
            if self.done():  # the work itself raised a TimeoutError
                raise
            raise self._timeout_error(f"no {self._what} within {timeout}s") from None

    def __await__(self) -> Generator[Any, None, T]:
        import asyncio  # loaded by the first await: a program that never awaits never pays for it

        return asyncio.wrap_future(self).__await__()

    def settle(self, result: Any = None, error: BaseException | None = None) -> bool:
        """Set the result or error unless already set; True if this call set it.

        Producers race (a reply and a death notice); the first one wins.
        """
        try:
            if error is not None:
                self.set_exception(error)
            else:
                self.set_result(result)
            return True
        except concurrent.futures.InvalidStateError:
            return False


# Guards the creation of lazy futures' conditions and lists, and settling before they exist.
_lazy_lock = threading.Lock()
_DONE = (_cf.CANCELLED, _cf.CANCELLED_AND_NOTIFIED, _cf.FINISHED)


class LazyFuture(Future[T]):
    """A :class:`Future` whose condition (an RLock and a Condition) is made only when needed.

    For hot paths that make one future per unit of work (lane commands, pool
    tasks): ``concurrent.futures.Future.__init__`` builds the lock pair up
    front, which was ~40 % of a tiny pool task's submit, yet most such futures
    are settled before anyone waits on them. Until the condition exists nobody
    can be waiting or have a callback (both go through it), so settling then
    takes the module's ``_lazy_lock`` instead; a reader of a finished future
    takes no lock at all. It relies on the attribute names of CPython's
    ``concurrent.futures.Future`` (stable since 3.8); tests cover wait,
    as_completed, callbacks, cancel, await and racing settles.
    """

    # The fields' starting values, also as class attributes: a subclass made on a hot path may
    # skip __init__ (``__init__ = object.__init__``) and set only what differs; writes go to the instance.
    _cond: threading.Condition | None = None
    _state = _cf.PENDING
    _result: Any = None
    _exception: BaseException | None = None
    _waiter_list: list[Any] | None = None
    _callback_list: list[Any] | None = None

    def __init__(self) -> None:  # no super().__init__(): it would build the condition
        self._cond = None
        self._state = _cf.PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        # The base class's _waiters and _done_callbacks, made on first use like the condition:
        # fewer long-lived objects per queued unit of work for the garbage collector.
        self._waiter_list = None
        self._callback_list = None

    # typeshed declares _waiters and _condition as plain attributes; here they are made on first read.
    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        lst = self._waiter_list
        return lst if lst is not None else self._make_list("_waiter_list")

    @property
    def _done_callbacks(self) -> list[Any]:
        lst = self._callback_list
        return lst if lst is not None else self._make_list("_callback_list")

    def _make_list(self, slot: str) -> list[Any]:
        with _lazy_lock:
            lst = getattr(self, slot)
            if lst is None:
                lst = []
                setattr(self, slot, lst)
        return lst

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _lazy_lock:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    def settle(self, result: Any = None, error: BaseException | None = None) -> bool:
        if self._cond is None:
            # Until the condition exists nobody waits or has a callback: settle under the module's lock.
            with _lazy_lock:
                if self._cond is None:
                    if self._state in _DONE:
                        return False
                    if error is not None:
                        self._exception = error
                    else:
                        self._result = result
                    self._state = _cf.FINISHED  # last: lock-free readers see the value once they see FINISHED
                    return True  # no waiter or callback can exist: adding one makes the condition
        return super().settle(result, error)

    def settle_unwatched(self, result: Any) -> bool:
        """Set ``result`` now if nobody waits on this future or has a callback on it; False if someone does.

        Settling then runs no code but this, so a state machine may call it while it holds
        its own lock; when it returns False, settle the usual way after releasing it (which
        also tells a future that is already done, such as a cancelled one, from the rest).

        Example:
            >>> f = LazyFuture()
            >>> f.settle_unwatched(5), f.result()
            (True, 5)
        """
        if self._cond is None:
            with _lazy_lock:
                if self._cond is None:  # a waiter or callback makes the condition, under this lock
                    if self._state not in _DONE:
                        self._result = result
                        self._state = _cf.FINISHED
                    return True
        return False

    @staticmethod
    def settle_many(futures: Sequence[LazyFuture[Any]], results: Sequence[Any]) -> int:
        """Settle each future with its result, in order; returns how many were already done.

        One lock for the whole batch instead of one per future: futures nobody waits on
        (most of a burst of tiny tasks) are set together; the others settle one by one
        after, each notifying its own waiters once.

        Example:
            >>> a, b = LazyFuture(), LazyFuture()
            >>> b.cancel()
            True
            >>> LazyFuture.settle_many([a, b], [1, 2]), a.result()
            (1, 1)
        """
        rest: list[tuple[LazyFuture[Any], Any]] = []
        late = 0
        finished = _cf.FINISHED
        with _lazy_lock:
            for fut, result in zip(futures, results):
                if fut._cond is not None:
                    rest.append((fut, result))
                elif fut._state in _DONE:
                    late += 1
                else:
                    fut._result = result
                    fut._state = finished  # last: lock-free readers see the value once they see FINISHED
        for fut, result in rest:
            if not fut.settle(result):
                late += 1
        return late

    def done(self) -> bool:
        return self._state in _DONE

    def get(self, timeout: float | None = None) -> T:
        if self._state == _cf.FINISHED and self._exception is None:
            return self._result  # the common read, without result's frame
        return super().get(timeout)

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


def resolved(value: T) -> Future[T]:
    """A future already holding ``value``."""
    f: Future[T] = Future()
    f.set_result(value)
    return f
