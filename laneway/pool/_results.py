"""The pool's results thread: where outcomes are decoded and futures settled, in arrival order.

Decoding unpickles (user code: ``__setstate__``, ``__reduce__``) and settling runs
done callbacks (user code), so neither happens on a backend's I/O thread, where a
slow or blocking callback (one that submits into a full queue, say) would stall the
data path that unblocks it. Nothing a task, its result or a callback does may end
this thread: each task is guarded against any ``BaseException``, ``SystemExit``
included, and the thread lets go of each batch as soon as it is settled, so a
settled task's result is referenced only by its future.

The one exception is :meth:`Settler.settle_now`: plain results (builtin scalars, whose
unpickling runs no user code) of futures without done callbacks, while nothing is
queued here (so arrival order holds), are settled by the caller, the backend's I/O
thread, sparing a lone task two thread hand-offs.

Outcomes travel as the wire's rows ``(task_id, ok, form, data)`` (see
:mod:`laneway.worker.wire`): a burst of tiny tasks makes no record per result, and a
run of results that came as values (form ``VALUE``) is settled in one pass
(:meth:`~laneway.core.LazyFuture.settle_many`).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence

from laneway.core import LazyFuture
from laneway.worker import TaskOutcome, wire
from laneway.worker import codec as _codec

if TYPE_CHECKING:
    from laneway.pool._window import Task

#: One outcome as a worker's DONE message carries it: ``(task_id, ok, form, data)``.
Row = tuple[int, bool, int, Any]


def decode_row(row: Row) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, error)`` for one outcome row; never raises (see ``codec.decode``).

    Example:
        >>> decode_row((1, True, wire.VALUE, 42))
        (True, 42)
    """
    task_id, ok, form, data = row
    if form == wire.VALUE:
        return True, data
    return _codec.decode(TaskOutcome(task_id, ok, data))

log = logging.getLogger(__name__)


class Settler:
    """Settles a pool's futures on a thread of its own; counts into the scheduler's counters under its lock.

    Example:
        >>> import collections, threading
        >>> from laneway import Orchestrator
        >>> orch = Orchestrator(name="doc")
        >>> settler = Settler(orch, "doc", threading.Lock(), collections.Counter())
        >>> settler.stop(1.0)
        True
        >>> orch.shutdown().clean
        True
    """

    def __init__(self, orch: Any, name: str, lock: threading.Lock, counters: collections.Counter) -> None:
        self._orch = orch
        self._name = name
        self._lock = lock
        self._c = counters
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._pending = 0  # jobs put and not yet finished (guarded by _count)
        self._count = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"laneway-pool-results:{name}", daemon=True)
        self._thread.start()

    # --- from any thread ------------------------------------------------------------

    def settle(self, done: list[tuple[Task, Row]]) -> None:
        """Decode and settle these outcomes (counted as completed/failed by the caller), in order."""
        self.put(partial(self._settle, done))

    def idle_for(self, done: list[tuple[Task, Row]]) -> bool:
        """May :meth:`settle_now` settle ``done`` (plain results) on the calling thread?

        Yes if nothing waits here (arrival order), nobody listens for task events and no
        future has a done callback (callbacks are user code, which must not run there).
        """
        if self._pending:
            return False
        events = self._orch.events
        if events.active and (events.wants("pool.task.completed") or events.wants("pool.task.failed")):
            return False
        return all(not t.future._callback_list for t, _ in done)

    def settle_now(self, done: list[tuple[Task, Row]]) -> None:
        """Settle plain results on the calling thread (see :meth:`idle_for`)."""
        self._settle(done)

    def fail(self, settle: Sequence[tuple[Task, BaseException]],
             letters: Sequence[tuple[Task, str, BaseException]]) -> None:
        """Fail ``settle``'s tasks with their errors, and dead-letter ``letters``' (reason, error)."""
        self.put(partial(self._fail, settle, letters))

    def put(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the results thread after what is queued."""
        with self._count:
            self._pending += 1
        self._jobs.put(job)

    def dead_letter(self, task: Task, reason: str, err: BaseException) -> None:
        """Fail ``task`` with ``err``, first putting it in the dead-letter queue if it asked for that."""
        if task.future.done():
            return  # the caller cancelled it: nobody wants it run again
        # Letter and count first, so whoever sees the future fail also finds both. A caller
        # that owns the outcome (a lane, the router: they retry and dead-letter themselves)
        # gets only the error, so one failed attempt never leaves a stale pool letter.
        try:
            if task.dead_letter:
                self._orch.dead_letters.put("pool", reason, attempts=task.tries, error=err,
                                            work_id=f"pool-task-{task.id}", payload=task.payload())
                with self._lock:
                    self._c["dead_lettered"] += 1
            task.future.settle(error=err)
        except BaseException:  # a done callback; see _settle
            log.exception("failing pool task %d (%s) failed", task.id, task.label)

    def stop(self, timeout: float | None) -> bool:
        """Run what is queued, then end the thread; False if a job still runs after ``timeout``."""
        self._jobs.put(None)
        if threading.current_thread() is self._thread:
            return True  # shut down from a done callback: the thread ends once that callback returns
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- on the results thread --------------------------------------------------------

    def _run(self) -> None:
        get = self._jobs.get
        while True:
            job = get()
            if job is None:
                return
            try:
                job()
            except BaseException:  # jobs guard each task; this is the last line of defence
                log.exception("settling pool results failed")
            job = None  # drop the batch now, not when the next one arrives
            with self._count:
                self._pending -= 1

    def _settle(self, done: list[tuple[Task, Row]]) -> None:
        """Decode (unpickling may run user code) and settle, in order.

        Publishes ``pool.task.completed`` / ``.failed`` with ``latency_s`` (submit to
        result) only while someone listens, so metrics get a per-pool histogram and an
        unobserved pool pays nothing per task.
        """
        events = self._orch.events
        # Asked once per batch: a listener on other keys (the orchestrator's own) then costs nothing per task.
        publish = events.active and (events.wants("pool.task.completed") or events.wants("pool.task.failed"))
        name = self._name
        value = wire.VALUE
        futs: list[Any] = []  # a run of results that came as values, settled together
        vals: list[Any] = []
        for task, row in done:
            try:
                if publish:  # before settling, so whoever sees the result also finds the event
                    events.publish(
                        "pool.task.completed" if row[1] else "pool.task.failed", name,
                        pool=name, task_id=task.id, latency_s=time.perf_counter() - task.submitted_at,
                    )
                if row[2] == value:
                    futs.append(task.future)
                    vals.append(row[3])
                    continue
                if futs:
                    self._settle_values(futs, vals)
                    futs, vals = [], []
                ok, result = decode_row(row)  # never raises: a result that cannot be unpickled becomes its error
                if ok:
                    if not task.future.settle(result):  # the caller force-cancelled it while it ran
                        self._recount("completed", "late_results")
                else:
                    if row[1]:  # counted as completed, but its result cannot be unpickled here
                        self._recount("completed", "failed")
                    if not task.future.settle(error=result):
                        self._recount("failed", "late_results")
            except BaseException:  # a done callback raising past concurrent.futures' guard: the rest still settle
                log.exception("settling pool task %d (%s) failed", task.id, task.label)
        if futs:
            self._settle_values(futs, vals)

    def _settle_values(self, futs: list[Any], vals: list[Any]) -> None:
        try:
            late = LazyFuture.settle_many(futs, vals)
        except BaseException:  # a done callback raising past concurrent.futures' guard: settle the rest alone
            log.exception("settling pool results failed")
            late = 0
            for fut, val in zip(futs, vals):
                try:
                    if not fut.done() and not fut.settle(val):
                        late += 1
                except BaseException:
                    log.exception("settling a pool result failed")
        if late:  # the callers force-cancelled them while they ran
            self._recount("completed", "late_results", late)

    def _fail(self, settle: Sequence[tuple[Task, BaseException]],
              letters: Sequence[tuple[Task, str, BaseException]]) -> None:
        for task, err in settle:
            try:
                task.future.settle(error=err)
            except BaseException:  # a done callback; see _settle
                log.exception("settling pool task %d (%s) failed", task.id, task.label)
        for task, text, err in letters:
            self.dead_letter(task, text, err)

    def _recount(self, was: str, now: str, n: int = 1) -> None:
        with self._lock:
            self._c[was] -= n
            self._c[now] += n
