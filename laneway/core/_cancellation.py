"""Cooperative cancellation for running commands: a token tools check or await."""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import TYPE_CHECKING, Callable

from laneway.errors import CommandCancelled, Preempted

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)

# Guards the rare paths of every token (cancel, wait, callbacks); the hot path takes no lock.
_slow_path = threading.Lock()

current_token_var: contextvars.ContextVar[CancellationToken | None] = contextvars.ContextVar("laneway_token", default=None)


class CancellationToken:
    """Tells running work that it should stop; the work checks it (or awaits it) and stops itself.

    Each run of a command gets a fresh token. The lane manager cancels it when
    the command is cancelled, times out or is preempted. A sync tool cannot be
    interrupted from outside, so long tools should call
    :meth:`raise_if_cancelled` between steps or use :meth:`wait` as an
    interruptible sleep; an async tool's task is cancelled as well.

    A tool receives the token as a ``cancel_token`` keyword argument when its
    signature has one, or from :func:`current_token` anywhere in its call stack.

    Example:
        >>> token = CancellationToken()
        >>> token.cancel("user pressed stop")   # True: this call cancelled it
        True
        >>> token.cancelled, token.reason
        (True, 'user pressed stop')
    """

    # Every run gets a token and few are ever cancelled or waited on, so the Event and the
    # callback list are made only when someone needs them. The fields' starting values are
    # class attributes (no __slots__): a subclass made on a hot path (a lane's Run) sets none
    # of them; writes go to the instance.
    _cancelled = False
    _event: threading.Event | None = None
    _callbacks: list[Callable[[str], object]] | None = None
    reason = ""
    preempted = False

    def __repr__(self) -> str:
        return f"<CancellationToken {'cancelled: ' + self.reason if self.cancelled else 'active'}>"

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self, reason: str = "cancelled", *, preempted: bool = False) -> bool:
        """Cancel (the first reason wins) and run the callbacks in this thread; True if this call cancelled it."""
        with _slow_path:
            if self._cancelled:
                return False
            self.reason = reason
            self.preempted = preempted
            self._cancelled = True
            if self._event is not None:
                self._event.set()
            callbacks, self._callbacks = self._callbacks or [], None
        for fn in callbacks:
            try:
                fn(reason)
            except Exception:
                log.exception("cancellation callback %r raised", fn)
        return True

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~laneway.errors.CommandCancelled` (``Preempted`` when preempted) if cancelled."""
        if self._cancelled:
            raise (Preempted if self.preempted else CommandCancelled)(self.reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds pass; True if cancelled (an interruptible sleep)."""
        with _slow_path:
            if self._cancelled:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    async def wait_async(self) -> str:
        """Suspend the calling task until the token is cancelled; returns the reason.

        Example:
            >>> async def tool(cancel_token):              # doctest: +SKIP
            ...     await cancel_token.wait_async()
        """
        import asyncio  # loaded by the first await: a program that never awaits never pays for asyncio

        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()

        def resolve(reason: str) -> None:
            if not fut.done():
                fut.set_result(reason)

        def wake(reason: str) -> None:
            loop.call_soon_threadsafe(resolve, reason)

        self.add_callback(wake)
        return await fut

    def add_callback(self, fn: Callable[[str], object]) -> None:
        """Call ``fn(reason)`` on cancellation (at once, in this thread, if already cancelled)."""
        with _slow_path:
            if not self._cancelled:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(self.reason)


def current_token() -> CancellationToken | None:
    """The token of the command running in this thread or task, or None outside a command.

    Example:
        >>> from laneway.core import current_token
        >>> def long_tool(items):                          # doctest: +SKIP
        ...     for item in items:
        ...         current_token().raise_if_cancelled()
    """
    return current_token_var.get()


def set_current_token(token: CancellationToken | None) -> contextvars.Token:
    """Make ``token`` the current one in this context (for code that runs commands); returns the reset mark."""
    return current_token_var.set(token)


def reset_current_token(mark: contextvars.Token) -> None:
    """Undo the :func:`set_current_token` that returned ``mark``."""
    current_token_var.reset(mark)
