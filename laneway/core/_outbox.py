"""Side effects decided under a lock and run, in order, after the lock is released.

State machines (workflow runs, lane schedulers, the pool's dispatcher) change
state under a lock but must not call out (events, futures, user callbacks)
while holding it: a callback that re-enters would deadlock, and user code
would serialise every caller. They queue effects here instead.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

from laneway.errors import ConfigError

log = logging.getLogger(__name__)

_YIELDS = 20  # GIL yields before a contended entry blocks on the lock


class Outbox:
    """A lock plus the effects queued under it, run in queue order once the outermost holder leaves.

    One thread at a time runs the queue, so effects run in the order they were
    queued even when several threads change state: an effect queued by thread A
    before thread B's is never run after it. Effects run whether the locked
    block returned or raised, so a refused operation cannot leave effects
    queued with nobody to run them.

    The outbox is its own context manager: ``with box:`` is ``with box.locked():``.

    A hot path may hold the bare :attr:`lock` instead (no Python frame to enter or
    leave), provided the block enters no ``with box:`` of its own: it takes the lock
    (``lock.acquire(False) or box.acquire_contended()``), queues effects with
    :meth:`add` as usual, and leaves, whether the block returned or raised, with
    :meth:`release_and_run` if :attr:`queued` is not empty, else ``lock.release()``.

    Example:
        >>> box = Outbox("doc")
        >>> seen = []
        >>> with box:
        ...     box.add(lambda: seen.append("after"))
        ...     seen.append("inside")
        >>> seen
        ['inside', 'after']
    """

    def __init__(self, name: str, lock: threading.RLock | None = None) -> None:
        self.name = name
        self.lock = lock if lock is not None else threading.RLock()
        # One list for the outbox's life (drains copy and clear it), so that ``add`` can be its
        # bound ``append``: queueing an effect costs no Python frame (hot paths queue several per unit).
        self._effects: list[Callable[[], object]] = []
        #: The effects queued and not yet taken to run (read-only: for the bare-lock protocol's check).
        self.queued: list[Callable[[], object]] = self._effects
        #: ``add(effect)``: queue ``effect()``; call with the lock held (inside :meth:`locked`).
        self.add: Callable[[Callable[[], object]], None] = self._effects.append
        self._depth = 0
        self._draining = False

    def locked(self) -> Outbox:
        """Hold the lock; when the outermost holder leaves, run what was queued (same as ``with box:``)."""
        return self

    def __enter__(self) -> None:
        """Take the lock (re-entrant); a plain method, not a generator: hot paths enter twice per unit of work."""
        if not self.lock.acquire(False):
            self.acquire_contended()
        self._depth += 1

    def acquire_contended(self) -> None:
        """Take the lock after a non-blocking attempt failed (yields the GIL to the holder first)."""
        # A thread blocked on a lock in the kernel takes it as soon as it is released, while it
        # still waits for the GIL; the releasing thread then blocks on its next entry, and two
        # busy threads fall into lock-step, two context switches per hand-off. Yielding the GIL
        # instead lets the holder (which has to be runnable: no one blocks inside the lock) leave,
        # and the threads trade the lock at GIL switches. Then block, in case the holder cannot run.
        lock = self.lock
        for _ in range(_YIELDS):
            time.sleep(0)
            if lock.acquire(False):
                return
        lock.acquire()

    def __exit__(self, *exc: object) -> None:
        """Leave; the outermost holder runs what was queued, whether the block returned or raised."""
        self._depth -= 1
        self.release_and_run()

    def release_and_run(self) -> None:
        """Leave a block held under the bare :attr:`lock` (see above) and run what it queued.

        What leaving ``with box:`` does: the effects are taken while the lock is
        still held, then run in queue order, or left to the thread already
        running effects if there is one.

        Example:
            >>> box = Outbox("doc")
            >>> seen = []
            >>> box.lock.acquire()
            True
            >>> box.add(lambda: seen.append("after"))
            >>> seen
            []
            >>> box.release_and_run(); seen
            ['after']
        """
        queued = self._effects
        if self._depth or not queued or self._draining:
            self.lock.release()  # held by an enclosing block, nothing queued, or another thread runs effects
            return
        # The first batch is taken while the lock is still held: one lock round trip per block, not
        # three (a lone effect, most lane calls' wake-up, without a copy).
        self._draining = True
        effects = [queued.pop()] if len(queued) == 1 else queued.copy()
        queued.clear()
        self.lock.release()
        self._run(effects)
        self._draining = False  # as _drain does first; its frame only when more was queued meanwhile
        if self._effects:
            self._drain()

    def extend(self, effects: Iterable[Callable[[], object]]) -> None:
        """Queue several effects, in order; call with the lock held."""
        self._effects.extend(effects)

    @property
    def depth(self) -> int:
        """How many :meth:`locked` blocks the lock's holder is inside (1: the outermost); 0 when unheld."""
        return self._depth

    def mark(self) -> int:
        """A mark of what is queued now, for :meth:`discard_since`; call with the lock held."""
        return len(self._effects)

    def discard_since(self, mark: int) -> None:
        """Drop the effects queued after :meth:`mark` returned ``mark``; call with the lock held.

        For all-or-nothing blocks: one that fails restores its state and drops
        the effects it queued, so nothing it decided runs. Effects queued
        before the mark (by other holders, not yet run) are kept. The lock must
        have been held from the mark until now (no drain ran in between).

        Example:
            >>> box = Outbox("doc")
            >>> seen = []
            >>> with box.locked():
            ...     box.add(lambda: seen.append("kept"))
            ...     mark = box.mark()
            ...     box.add(lambda: seen.append("dropped"))
            ...     box.discard_since(mark)
            >>> seen
            ['kept']
        """
        if not 0 <= mark <= len(self._effects):
            raise ConfigError(
                f"outbox {self.name}: mark {mark!r} is not one of this block's (0..{len(self._effects)} queued); "
                "take it with mark() inside the same locked() block"
            )
        del self._effects[mark:]

    def _drain(self) -> None:
        """Run what other holders queued while this thread ran effects; they left it to the drainer."""
        while True:
            # Cleared without the lock, then the queue read: a holder that still saw the flag had
            # queued its effects before, so they are seen here; one that saw it cleared drains itself
            # (it sets the flag under the lock, which the check below takes before draining).
            self._draining = False
            if not self._effects:
                return
            with self.lock:
                if self._draining or not self._effects:
                    return  # another holder is draining them
                self._draining = True
                effects = self._effects.copy()
                self._effects.clear()
            self._run(effects)

    def _run(self, effects: list[Callable[[], object]]) -> None:
        for i, effect in enumerate(effects):
            try:
                effect()
            except Exception:
                log.exception("%s: effect %r raised", self.name, effect)
            except BaseException:
                # KeyboardInterrupt or SystemExit in the middle: keep the rest for the
                # next holder rather than dropping them, and let the signal through.
                with self.lock:
                    self._effects[:0] = effects[i + 1 :]
                    self._draining = False
                raise
