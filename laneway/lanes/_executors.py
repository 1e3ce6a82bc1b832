"""Where runs execute: sync tools on worker threads, async tools on one event loop, cpu_bound on the pool.

Worker threads pull: a thread that finishes a run takes the scheduler lock
once, records the outcome and picks its next run in the same critical
section, so under load a command costs one lock round trip and no thread
hand-off. Threads start lazily, at most one per concurrently running sync
command, and never one per queued command.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from laneway.errors import CommandCancelled, Preempted
from laneway.lanes._token import _reset_current, _set_current

if TYPE_CHECKING:
    from laneway.lanes._command import Run
    from laneway.lanes._scheduler import Scheduler

log = logging.getLogger(__name__)


class _Worker:
    __slots__ = ("cond", "run", "thread")

    def __init__(self, lock: threading.Lock) -> None:
        self.cond = threading.Condition(lock)
        self.run: Run | None = None
        self.thread: threading.Thread | None = None


def _cancelled_error(run: Run) -> CommandCancelled:
    token = run.token
    return (Preempted if token.preempted else CommandCancelled)(token.reason or "cancelled")


class Executors:
    """Runs commands for a :class:`~laneway.lanes._scheduler.Scheduler`."""

    def __init__(self, sched: Scheduler) -> None:
        self._sched = sched
        self._idle: list[_Worker] = []
        self._threads: list[_Worker] = []
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()

    @property
    def thread_count(self) -> int:
        return len(self._threads)

    def launch_locked(self, run: Run, acts: list[Callable[[], Any]]) -> None:
        """Hand a started run to its executor (called under the scheduler lock)."""
        spec = run.cmd.spec
        if spec.is_async:
            acts.append(partial(self._start_async, run))
        elif spec.cpu_bound:
            acts.append(partial(self._start_pool, run))
        elif self._idle:
            worker = self._idle.pop()
            worker.run = run
            worker.cond.notify()
        else:
            worker = _Worker(self._sched._lock)
            worker.run = run
            self._threads.append(worker)
            acts.append(partial(self._spawn, worker))

    # shared by every executor -------------------------------------------------

    def _announce(self, run: Run) -> None:
        cmd = run.cmd
        sched = self._sched
        if cmd.durable and sched._pending is not None:
            sched._pending.save(cmd)  # the attempt count survives a crash mid-run
        if sched._events.active:
            sched._events.publish("queue.command.started", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                  tool=cmd.spec.name, attempt=run.attempt,
                                  wait_s=run.started_at - cmd.enqueued_at)

    @staticmethod
    def _call_sync(run: Run) -> tuple[bool, Any]:
        cmd = run.cmd
        spec = cmd.spec
        if run.token.cancelled:
            return False, _cancelled_error(run)
        kwargs = {**cmd.params, "cancel_token": run.token} if spec.takes_token else cmd.params
        mark = _set_current(run.token)
        try:
            return True, spec.fn(**kwargs)
        except Exception as exc:
            return False, exc
        finally:
            _reset_current(mark)

    # threads ------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        t = threading.Thread(target=self._work, args=(worker,), name=f"laneway-lane-{len(self._threads)}", daemon=True)
        worker.thread = t
        t.start()

    def _work(self, worker: _Worker) -> None:
        sched = self._sched
        run = worker.run
        worker.run = None
        while run is not None:
            self._announce(run)
            ok, value = self._call_sync(run)
            acts: list[Callable[[], Any]] = []
            with sched._lock:
                sched._end_run_locked(run, ok, value, acts)
                self._idle.append(worker)  # so the dispatch below can give this very thread the next run
                sched._dispatch_locked(acts)
                run, worker.run = worker.run, None
            sched._do(acts)
            if run is None:
                with sched._lock:
                    while worker.run is None and not self._stopping:
                        worker.cond.wait()
                    run, worker.run = worker.run, None
                    if run is None and worker in self._idle:
                        self._idle.remove(worker)

    # the event loop for async tools ----------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._loop_thread = threading.Thread(target=serve, name="laneway-lanes-async", daemon=True)
                self._loop_thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _start_async(self, run: Run) -> None:
        loop = self._ensure_loop()
        try:
            loop.call_soon_threadsafe(self._create_task, loop, run)
        except RuntimeError:  # the loop is closed: the manager is closing
            self._sched._finish(run, False, CommandCancelled("lane manager closed before the command started"))

    def _create_task(self, loop: asyncio.AbstractEventLoop, run: Run) -> None:
        task = loop.create_task(self._run_async(run))
        run.task = task
        run.token.add_callback(lambda _reason: loop.call_soon_threadsafe(task.cancel))

    async def _run_async(self, run: Run) -> None:
        cmd = run.cmd
        spec = cmd.spec
        self._announce(run)
        ok: bool
        value: Any
        if run.token.cancelled:
            ok, value = False, _cancelled_error(run)
        else:
            kwargs = {**cmd.params, "cancel_token": run.token} if spec.takes_token else cmd.params
            _set_current(run.token)  # the task runs in its own context copy
            try:
                ok, value = True, await spec.fn(**kwargs)
            except asyncio.CancelledError:
                ok, value = False, _cancelled_error(run)
            except Exception as exc:
                ok, value = False, exc
        self._sched._finish(run, ok, value)

    # the process pool -------------------------------------------------------------

    def _start_pool(self, run: Run) -> None:
        cmd = run.cmd
        self._announce(run)
        try:
            fut = self._sched._orch.pool.submit(cmd.spec.fn, kwargs=dict(cmd.params), timeout=cmd.timeout, attempts=1)
        except Exception as exc:
            self._sched._finish(run, False, exc)
            return
        run.token.add_callback(lambda _reason: fut.cancel())
        fut.add_done_callback(partial(self._pool_done, run))

    def _pool_done(self, run: Run, fut: Any) -> None:
        if fut.cancelled():
            self._sched._finish(run, False, _cancelled_error(run))
            return
        error = fut.exception()
        self._sched._finish(run, error is None, fut.result() if error is None else error)

    # shutdown ---------------------------------------------------------------------------

    def stop(self, timeout: float) -> None:
        """Let idle threads exit and stop the event loop; busy threads are daemons and are abandoned."""
        with self._sched._lock:
            self._stopping = True
            for w in self._idle:
                w.cond.notify()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            def stop_loop() -> None:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                loop.call_soon(loop.stop)

            try:
                loop.call_soon_threadsafe(stop_loop)
            except RuntimeError:
                pass
            if self._loop_thread is not None:
                self._loop_thread.join(timeout)
                if not self._loop_thread.is_alive():
                    loop.close()
        for w in list(self._threads):
            if w.thread is not None and w.thread is not threading.current_thread():
                w.thread.join(0 if w.run is not None else min(timeout, 1.0))
