"""Waits of a command's main thread that a Ctrl-C (or SIGTERM) interrupts at once."""

from __future__ import annotations

import threading
import time

#: How long the main thread sleeps at most before it looks again at a signal that came.
SIGNAL_SLICE_S = 0.1


def sleep_until(event: threading.Event, timeout: float) -> bool:
    """``event.wait(timeout)``, in slices of ``SIGNAL_SLICE_S``, so that a signal's handler runs at once.

    Python runs signal handlers in the main thread, when it runs Python code, and the kernel may
    hand a process's SIGINT or SIGTERM to any of its threads: handed to one of the orchestrator's
    threads, it left a main thread asleep in one long wait until that wait ended (the demo's run
    then completed, and the Ctrl-C seemed ignored).

    Example:
        >>> done = threading.Event(); done.set()
        >>> sleep_until(done, 60.0), sleep_until(threading.Event(), 0.05)
        (True, False)
    """
    deadline = time.monotonic() + timeout
    while not event.wait(min(SIGNAL_SLICE_S, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return False
    return True
