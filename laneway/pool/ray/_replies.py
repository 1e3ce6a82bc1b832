"""The Ray backend's reply thread: batch calls' answers collected with ``ray.wait``, as a raw Ray driver does.

An answer handed over by Ray's completion callback (``ObjectRef._on_completed``)
costs the driver twice on its critical path: the callback runs on Ray's own I/O
thread, which must take the GIL (waiting for it up to a switch interval while
another Python thread, a submitter, holds it; meanwhile that thread moves no Ray
traffic at all), and it then has to wake another thread to act on the answer.
A thread blocked in ``ray.wait`` is woken by Ray without the GIL, and acts on the
answer itself: it reports the outcomes and sends the next batch (the backend's
``handle``), under :attr:`Replies.lock`, the lock that guards the backend's batch
state, since the loop thread also sends (tasks the pool assigns after a submit).

A call sent while this thread already waits (on the calls it knew of then) is
not in the set it waits on: such a call also gets a completion callback, which
hands its answer to the loop (``rescue``), so it is never stuck behind a
longer call. Whichever comes first takes it; the other finds it gone.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

#: Longest one ``ray.wait`` blocks before the thread looks again (only for :meth:`Replies.close`).
WAIT_S = 0.5

#: ``(slot, call, answer)``: the backend's records of one call, and Ray's answer (or the error it raised).
Entry = tuple[Any, Any, Any]


class Replies:
    """One daemon thread that waits for the in-flight batch calls and hands their answers to ``handle``.

    Args:
        ray: the ``ray`` module (this module does not import it: a plain ``import laneway`` never does).
        name: for the thread's name.
        handle: called under :attr:`lock` with the answered calls' entries, in the order Ray
            reported them (the backend puts each worker's calls back in send order).
        rescue: ``rescue(ref, answer)`` is called from Ray's callback thread for a call that was
            sent while the thread waited; it must hand the answer on (to :meth:`take`) without blocking.
    """

    def __init__(self, ray: Any, name: str, handle: Callable[[list[Entry]], None],
                 rescue: Callable[[Any, Any], None]) -> None:
        #: Guards the in-flight calls and, by the backend's rule, every slot's batch state.
        self.lock = threading.Lock()
        self._wakeup = threading.Condition(self.lock)
        self._handle = handle
        self._ray = ray
        self._rescue = rescue
        self._inflight: dict[Any, tuple[Any, Any]] = {}  # ref -> (slot, call)
        self._waiting = False  # the thread is in ray.wait, on the refs it knew of then
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"laneway-ray-replies:{name}", daemon=True)
        self._thread.start()
        self.ident = self._thread.ident

    def expect(self, ref: Any, slot: Any, call: Any) -> None:
        """(Under :attr:`lock`) Collect the answer to ``ref``, a call just sent."""
        self._inflight[ref] = (slot, call)
        if self._waiting:  # not among the refs being waited on: a callback makes sure it is seen
            rescue = self._rescue
            ref._on_completed(lambda answer: rescue(ref, answer))
        elif len(self._inflight) == 1:
            self._wakeup.notify()

    def take(self, ref: Any, answer: Any) -> Entry | None:
        """(Under :attr:`lock`) The entry for ``ref``'s answer, unless the thread took it first."""
        entry = self._inflight.pop(ref, None)
        return None if entry is None else (entry[0], entry[1], answer)

    def close(self, timeout: float) -> bool:
        """End the thread (after its current wait); False if it still runs after ``timeout``."""
        with self.lock:
            self._closed = True
            self._wakeup.notify()
        if threading.get_ident() != self.ident:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        wait, get = self._ray.wait, self._ray.get
        while True:
            with self.lock:
                while not self._inflight and not self._closed:
                    self._wakeup.wait()
                if self._closed:
                    return
                refs = list(self._inflight)
                self._waiting = True
            ready: list[Any] = []
            answers: list[tuple[Any, Any]] = []
            try:
                ready, _ = wait(refs, num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    try:
                        answers.append((ref, get(ref)))
                    except Exception as exc:  # the call failed (its actor died): the backend's to judge
                        answers.append((ref, exc))
            except Exception:  # Ray itself is going away (shut down under a closing pool)
                log.debug("ray.wait failed in the reply thread", exc_info=True)
                with self.lock:
                    self._waiting = False
                    if self._closed:
                        return
                    self._wakeup.wait(WAIT_S)
                continue
            with self.lock:
                self._waiting = False
                entries = [entry for ref, answer in answers if (entry := self.take(ref, answer)) is not None]
                if entries:
                    try:
                        self._handle(entries)
                    except Exception:  # a bug in the backend: keep collecting for the other workers
                        log.exception("handling Ray answers failed")
