"""The one way tests wait for state that no event, future or condition announces.

Most waits in the suite are on futures, events or conditions. What is left is state
another process or a library owns (a file a worker creates, a row another node
writes, a page in a browser, a pool's statistics): :func:`poll` re-checks it up to a
deadline, so no test sleeps a fixed time to "let things settle".
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

#: Seconds between checks: short against every deadline in the suite, long enough not to spin.
INTERVAL_S = 0.005


def poll(check: Callable[[], T], timeout: float) -> T | None:
    """``check()``'s first truthy value within ``timeout`` seconds, or ``None`` past the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            return None
        time.sleep(INTERVAL_S)
    return value


def wait_until(check: Callable[[], T], timeout: float = 30.0, what: str = "a condition") -> T:
    """``check()``'s first truthy value; fails the test, naming ``what``, past ``timeout`` seconds."""
    value = poll(check, timeout)
    assert value is not None and value, f"timed out after {timeout}s waiting for {what}"
    return value
