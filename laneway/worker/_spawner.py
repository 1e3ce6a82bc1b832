"""Starts worker processes from one long-lived thread, some of them ahead of need.

Workers start as ``spawn`` children do, without multiprocessing's resource tracker
(see :func:`laneway.worker.start_process`).

Linux's ``PR_SET_PDEATHSIG`` fires when the *thread* that forked a child exits,
not the process. Worker actors are restarted on fresh threads, so if they forked
the workers themselves, a restart would SIGKILL the siblings they had started.
All forks therefore happen here, on a thread that lives as long as the pool.

A fresh interpreter takes longer to start (its own imports, the program's main
module, the worker's modules) than a pool takes to load and build its supervisor
tree, so :meth:`Spawner.launch_ahead` starts the first workers' interpreters before
the pool knows their ids: each waits, its imports done, for the arguments
:meth:`Spawner.spawn` gives it (see :func:`laneway.worker.launch`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import signal
import threading
import time
from typing import Any, Callable

from laneway.errors import PoolError
from laneway.worker._boot import ChildProcess, launch, start_process

log = logging.getLogger(__name__)

#: How long :meth:`Spawner.launch_ahead` waits for the spawner's thread to have started the
#: interpreters: their start-up, not the caller's next steps, is what the first task waits for.
LAUNCH_WAIT_S = 5.0

#: How long :meth:`Spawner.close` waits for interpreters launched ahead and never used to exit
#: before it kills them: they ran no task, at most the program's main module (``__mp_main__``).
DISMISS_TIMEOUT_S = 1.0


class Spawner:
    """A thread that starts worker processes on request, and interpreters ahead of the requests.

    Example:
        >>> sp = Spawner("doc")
        >>> sp.launch_ahead(1, lambda: os._exit)                # starts while the caller goes on
        >>> proc = sp.spawn(os._exit, (4,), name="w1")          # that interpreter runs os._exit(4)
        >>> proc.join(30); proc.exitcode
        4
        >>> proc.close(); sp.close()
    """

    def __init__(self, name: str) -> None:
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._ahead: list[tuple[Callable[..., Any], ChildProcess]] = []  # only the thread touches it
        self._thread = threading.Thread(target=self._run, name=f"laneway-spawner:{name}", daemon=True)
        self._thread.start()

    def launch_ahead(self, count: int, load_target: Callable[[], Callable[..., Any]], *,
                     preload: tuple[str, ...] = ()) -> None:
        """Start ``count`` interpreters now, for the function ``load_target()`` returns; :meth:`spawn` gives them their arguments.

        Returns once the interpreters are started (at most :data:`LAUNCH_WAIT_S`), not
        when they are ready: what the caller does next overlaps their start-up, rather
        than delaying it. ``load_target`` is called on the spawner's thread, so importing
        the target's module in this process overlaps their start-up too; each interpreter
        imports the ``preload`` modules (the target's module: see :func:`~laneway.worker.launch`)
        at the same time. Best effort: an interpreter that cannot start (or a program whose main
        module starts a pool without the ``__main__`` guard) is logged, and :meth:`spawn`
        then starts its process as usual, reporting the error there.
        """
        if count > 0:
            launched = threading.Event()
            with self._lock:
                if self._closed:
                    return
                self._requests.put(("ahead", count, load_target, preload, launched))
            launched.wait(LAUNCH_WAIT_S)

    def spawn(self, target: Callable[..., Any], args: tuple, *, name: str) -> ChildProcess:
        """Start a process running ``target(*args)``; returns its :class:`~laneway.worker.ChildProcess`.

        Uses an interpreter launched ahead for ``target`` if one is still waiting.

        Raises:
            PoolError: the process could not be started, or the spawner is closed.
        """
        fut: concurrent.futures.Future[ChildProcess] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise PoolError("the pool's spawner is closed")
            self._requests.put(("spawn", target, args, name, fut))
        try:
            return fut.result()
        except PoolError:
            raise
        except Exception as exc:
            raise PoolError(f"could not start worker process {name}: {exc!r}") from exc

    def close(self) -> None:
        """Stop the thread (after every worker it started is gone, or PDEATHSIG kills them).

        Interpreters launched ahead and never used are told so, and exit.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._requests.put(None)
        self._thread.join(timeout=DISMISS_TIMEOUT_S + 5)

    def _run(self) -> None:
        try:
            while True:
                item = self._requests.get()
                if item is None:
                    return
                if item[0] == "ahead":
                    self._launch_ahead(*item[1:])
                    continue
                _, target, args, name, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    proc = self._take_ahead(target, args, name) or start_process(target, args, name=name)
                except BaseException as exc:
                    fut.set_exception(exc)
                else:
                    fut.set_result(proc)
        finally:
            self._dismiss_ahead()

    def _launch_ahead(self, count: int, load_target: Callable[[], Callable[..., Any]], preload: tuple[str, ...],
                      launched: threading.Event) -> None:
        started: list[ChildProcess] = []
        try:
            try:
                for _ in range(count):
                    started.append(launch(name="laneway-worker", preload=preload))
            finally:
                launched.set()
            target = load_target()
            for proc in started:
                proc.load(target)
                self._ahead.append((target, proc))
        except Exception as exc:  # spawn() starts the process again, and reports what fails there
            log.debug("could not launch worker interpreters ahead: %r", exc)
            waiting = {id(p) for _, p in self._ahead}
            for proc in started:
                if id(proc) not in waiting:
                    _reap(proc, 0.0)

    def _take_ahead(self, target: Callable[..., Any], args: tuple, name: str) -> ChildProcess | None:
        """A waiting interpreter for ``target``, given ``args``; None if there is none (or none alive)."""
        while self._ahead:
            for i, (wanted, proc) in enumerate(self._ahead):
                if wanted is target:
                    del self._ahead[i]
                    break
            else:
                return None
            try:
                proc.give(args, name=name)
                return proc
            except OSError as exc:  # it died while it waited (killed from outside): start a fresh one
                log.debug("worker interpreter %d launched ahead is gone (%r)", proc.pid, exc)
                _reap(proc, 0.0)
        return None

    def _dismiss_ahead(self) -> None:
        ahead, self._ahead = self._ahead, []
        for _, proc in ahead:
            proc.dismiss()
        deadline = time.monotonic() + DISMISS_TIMEOUT_S
        for _, proc in ahead:
            _reap(proc, max(0.0, deadline - time.monotonic()))


def _reap(proc: ChildProcess, timeout: float) -> None:
    """Collect a child that was told to exit; SIGKILL it if it has not within ``timeout``."""
    proc.dismiss()
    proc.join(timeout)
    if proc.exitcode is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.join(5.0)
    proc.close()
