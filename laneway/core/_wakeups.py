"""``LoopWakeups``: coroutines waiting on a buffer that threads fill, woken from any thread.

The event subscriptions and the progress subscriptions are such buffers: a
reader ``await``-s until a writer thread appends or the buffer closes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

Waiters = list[tuple["asyncio.AbstractEventLoop", "asyncio.Future[None]"]]


class LoopWakeups(Waiters):
    """The (loop, future) pairs of the coroutines waiting on one buffer; empty (falsy) when none waits.

    :meth:`add` and :meth:`take` are called with the buffer's lock held (so a
    wake-up cannot fall between a reader's check and its registration); the
    loops are woken after the lock is released, by :meth:`wake`. A writer looks
    at the list's truth first, so a buffer nobody awaits pays nothing more.

    Example:
        >>> import asyncio, threading
        >>> lock, wakeups = threading.Lock(), LoopWakeups()
        >>> async def reader():
        ...     with lock:
        ...         fut = wakeups.add()
        ...     threading.Thread(target=writer).start()
        ...     await fut
        ...     return "woken"
        >>> def writer():
        ...     with lock:
        ...         waiters = wakeups.take() if wakeups else None
        ...     if waiters:
        ...         LoopWakeups.wake(waiters)
        >>> asyncio.run(reader())
        'woken'
    """

    __slots__ = ()

    def add(self) -> asyncio.Future[None]:
        """A future the running loop awaits until the next :meth:`wake` (call with the buffer's lock held)."""
        import asyncio  # loaded by the first await: a program that never awaits never pays for it

        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.append((loop, fut))
        return fut

    def take(self) -> Waiters:
        """Every waiter so far, for :meth:`wake` (call with the buffer's lock held)."""
        waiters = self[:]
        self.clear()
        return waiters

    @staticmethod
    def wake(waiters: Waiters) -> None:
        """Wake the taken ``waiters``, each on its own loop (call without the buffer's lock)."""
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_set_once, fut)


def _set_once(fut: asyncio.Future[None]) -> None:
    if not fut.done():  # the awaiting coroutine may have been cancelled meanwhile
        fut.set_result(None)
