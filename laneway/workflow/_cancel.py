"""A cooperative cancellation token for workflow tasks.

``laneway.lanes`` had no ``CancellationToken`` when workflows were written, so
this minimal one lives here; it has the same small surface (``cancel``,
``cancelled``, ``raise_if_cancelled``, ``wait``, ``add_callback``).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from laneway.errors import Cancelled

log = logging.getLogger(__name__)


class CancellationToken:
    """Tells running work that it should stop; the work checks it and stops itself.

    Example:
        >>> token = CancellationToken()
        >>> token.cancel("workflow cancelled")
        >>> token.cancelled, token.reason
        (True, 'workflow cancelled')
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[str], None]] = []
        self.reason = ""

    def __repr__(self) -> str:
        return f"<CancellationToken {'cancelled: ' + self.reason if self.cancelled else 'active'}>"

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel (first reason wins) and run the callbacks in this thread; later calls do nothing."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(reason)
            except Exception:
                log.exception("cancellation callback %r raised", fn)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~laneway.errors.Cancelled` if the token was cancelled."""
        if self._event.is_set():
            raise Cancelled(self.reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout``; True if cancelled (an interruptible sleep for tasks)."""
        return self._event.wait(timeout)

    def add_callback(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(reason)`` on cancellation (at once if already cancelled)."""
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        fn(self.reason)
