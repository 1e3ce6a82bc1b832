"""What a backend reports to a pool (ready and lost workers, outcomes, heartbeats), and what follows.

Outcomes are decoded and futures settled (so done callbacks run) on the pool's own
results thread, in the order they arrived, never on a backend's I/O thread (see
:mod:`laneway.pool._results`). A lost worker's running task is retried or
dead-lettered, and the rest of its window goes back to the queue.

Initializer: with one, a worker that reports ready first runs it (a pseudo-task at
the head of its window, negative id); it takes tasks only once that succeeded, and
a failure puts the pool down with :class:`~laneway.errors.InitializerError`.
"""

from __future__ import annotations

import collections
import logging
from functools import partial
from typing import Sequence

from laneway import errors
from laneway.errors import SystemShutdown, TaskTimeout
from laneway.pool._dispatch import Dispatch
from laneway.pool._records import WorkerState
from laneway.pool._results import Row, decode_row
from laneway.pool._scheduler_state import PENDING, RUNNING, wake_waiters
from laneway.pool._window import FED_WINDOW, Task, WorkerRecord, remote_slot
from laneway.worker import TaskOutcome, wire

#: Local workers in a row that die before their handshake, while no worker takes tasks, after which
#: the pool is down for good: workers that can never start must not keep queued tasks waiting.
STILLBORN_LIMIT = 5
#: What the pool says then: the usual cause, since the workers' own error is only on their stderr.
STILLBORN_HINT = ("a program that starts a pool at import time, without the if __name__ == '__main__' guard, "
                  "does this: each worker imports it and starts a pool of its own")

log = logging.getLogger(__name__)


class Reports(Dispatch):
    """The backend's reports (:class:`~laneway.pool._backend.WorkerHub`'s other half)."""

    # --- WorkerHub: reports ---------------------------------------------------------

    def worker_ready(self, worker_id: str, *, pid: int, host: str, node: str = "") -> None:
        with self._lock:
            self._fed = False  # one more worker to feed
            w = self._workers.get(worker_id)
            if w is None:
                return
            w.pid, w.host, w.node = pid, host, node
            self._stillborn = 0
            init = self._init
            if init is None:
                self._set_ready(w)
            elif not self._broken:  # run the initializer first; the worker is ready once it returned
                parts, label = init
                tid = -next(self._init_ids)
                task = Task(tid, parts, 1, label, self._futures, dead_letter=False, init=True)
                w.window.append(task)
                w.head_started = self.clock.now()
                self._init_due.append((worker_id, task))
        if init is None:
            self.orch.events.publish("pool.worker.ready", w.slot, worker_id=worker_id, pid=pid, host=host)
        self.backend.wake()

    def _set_ready(self, w: WorkerRecord) -> None:
        """Under the lock: the worker takes tasks from now on."""
        w.state = WorkerState.IDLE
        w.idle_since = self.clock.now()
        self._grow_pending = False
        self._ready_cond.notify_all()

    def worker_joined(self, worker_id: str, *, pid: int, host: str, node: str = "") -> bool:
        with self._lock:
            if self._stopped or self._broken or self._down or worker_id in self._workers:
                return False
            w = self._workers[worker_id] = WorkerRecord(worker_id, remote_slot(worker_id), None, True, self.clock.now())
        self.orch.events.publish("pool.worker.joined", w.slot, worker_id=worker_id, pid=pid, host=host)
        self.worker_ready(worker_id, pid=pid, host=host, node=node)
        self._on_joined(worker_id)
        return True

    def results(self, worker_id: str, outcomes: Sequence[TaskOutcome]) -> None:
        self.results_rows(worker_id, [(o.task_id, o.ok, wire.PLAIN if o.plain else wire.PICKLED, o.data) for o in outcomes])

    def results_rows(self, worker_id: str, rows: Sequence[Row], busy_s: float | None = None) -> None:
        done: list[tuple[Task, Row]] = []
        head: Task | None = None
        init: tuple[Task, Row] | None = None
        drained = ""
        with self._lock:
            w = self._workers.get(worker_id)
            if w is None:
                self.c["late_results"] += len(rows)
                return
            window = w.window
            now = self.clock.now()
            # The worker's figures in locals, written back once per batch rather than per task.
            service, started, freed, failed = w.service_s, w.head_started, 0, 0
            # A task's service time, which sizes the window: the worker's own figure when it gives one.
            # The gap since the previous result also counts transit, and a worker starved by a small
            # window waits a round trip between tasks: timed so, tasks that cross slowly (large
            # payloads, a loaded machine) look slow, the window stays small, and the worker starves.
            each = busy_s / len(rows) if busy_s is not None and rows else None
            for row in rows:
                found: Task | None
                tid = row[0]
                if window and window[0].id == tid:
                    found = window.popleft()
                else:  # not the head: only possible if a backend reorders; still account for it
                    found = next((t for t in window if t.id == tid), None)
                    if found is None:
                        self.c["late_results"] += 1
                        continue
                    window.remove(found)
                task = found
                freed += task.nbytes
                if task.init:  # not a task: it says whether the worker may take tasks
                    init = (task, row)
                    started = now
                    continue
                if task.timer is not None:
                    task.timer.cancel()
                service = 0.8 * service + 0.2 * (now - started if each is None else each)
                started = now
                done.append((task, row))
                if not row[1]:
                    failed += 1
            w.service_s, w.head_started = service, started
            if len(window) < FED_WINDOW:
                self._fed = False
            w.window_bytes -= freed
            w.tasks_done += len(done)
            c = self.c
            # the settler corrects the rare misfits (a result that cannot be unpickled here)
            c["completed"] += len(done) - failed
            if failed:
                c["failed"] += failed
            if init is not None:
                if init[1][1]:
                    self._set_ready(w)
                # else it stays STARTING (no tasks) while the results thread reads the error and
                # puts the pool down
            elif window:
                if done:  # a new head: the worker has moved on to it
                    nxt = window[0]
                    if nxt.future._state == PENDING:
                        nxt.future._state = RUNNING
                    if nxt.timeout is not None and nxt.timer is None:
                        head = nxt
            else:
                w.state = WorkerState.IDLE
                w.idle_since = now
                wake_waiters(self._ready_cond)
            if self.max_tasks is not None and w.tasks_done >= self.max_tasks and not w.draining and not w.remote:
                w.draining = True
                self.c["recycled"] += 1
            if w.draining and not window and not w.stopping:
                drained = w.slot
            more = bool(self._queue or self._inbox)
        if head is not None:
            self._arm(head, worker_id)
        if done:
            # A lone plain result (an int, a str...) is settled right here, on the backend's
            # thread: its unpickling runs no user code and nobody registered a callback, so
            # nothing can block; this spares the hand-off to the results thread and back.
            if all(row[2] for _, row in done) and self._results.idle_for(done):
                self._results.settle_now(done)
            else:
                self._results.settle(done)
        if init is not None:
            if init[1][1]:
                self.orch.events.publish("pool.worker.ready", w.slot, worker_id=worker_id, pid=w.pid, host=w.host)
            else:
                self._results.put(partial(self._init_failed, worker_id, w.pid, *init))
        if drained:
            self._on_drained(drained)
        if more:
            self.backend.wake()

    def _init_failed(self, worker_id: str, pid: int, task: Task, row: Row) -> None:
        """On the results thread: read the initializer's error and put the pool down with it."""
        _, cause = decode_row(row)
        what = getattr(cause, "type_name", "") or type(cause).__qualname__
        first = next(iter(str(cause).strip().splitlines()), "")
        err = errors.InitializerError(f"pool initializer {task.label} failed in worker {worker_id} (pid {pid}): "
                               f"{what.removeprefix('builtins.')}: {first}")
        err.__cause__ = cause
        log.error("%s", err)
        self.close(f"initializer {task.label} failed", err)

    def stop_results(self, timeout: float) -> None:
        """Finish settling what is queued, then end the results thread."""
        if not self._results.stop(timeout):
            log.error("pool %s: a future's done callback is still running; abandoning the results thread", self.name)

    def heartbeat(self, worker_id: str, *, rss: int = 0, cpu: float = 0.0) -> None:
        drained = ""
        with self._lock:
            w = self._workers.get(worker_id)
            if w is None:
                return
            w.rss, w.cpu = rss, cpu
            if self.max_memory is not None and rss > self.max_memory and not w.draining and not w.remote:
                log.info("worker %s uses %d MB > limit; recycling it", worker_id, rss >> 20)
                w.draining = True
                self.c["recycled"] += 1
                if not w.window and not w.stopping:
                    drained = w.slot
        if drained:
            self._on_drained(drained)

    def worker_lost(self, worker_id: str, reason: str) -> None:
        settle: list[tuple[Task, BaseException]] = []
        letters: list[tuple[Task, str, BaseException]] = []
        with self._lock:
            self._fed = False
            w = self._workers.pop(worker_id, None)
            if w is None:
                return
            self._ready_cond.notify_all()
            # An initializer run dies with its worker: the replacement runs it again.
            window, w.window = [t for t in w.window if not t.init], collections.deque()
            w.window_bytes = 0
            if self._init_due:
                self._init_due = [(wid, t) for wid, t in self._init_due if wid != worker_id]
            for task in window:
                if task.timer is not None:
                    task.timer.cancel()
                    task.timer = None
            who = f"worker pid {w.pid}" if w.pid else f"worker {worker_id}"
            if window:
                head, rest = window[0], window[1:]
                if w.timed_out is head:
                    self.c["timed_out"] += 1
                    settle.append((head, TaskTimeout(
                        f"pool task {head.id} ({head.label}) ran past its {head.timeout}s timeout; "
                        f"{who} was killed and replaced")))
                else:
                    head.tries += 1
                    if self._stopped or self._broken or head.tries >= head.attempts:
                        text = f"{who} {reason}"
                        err = errors.WorkerDied(f"pool task {head.id} ({head.label}) failed after {head.tries} "
                                         f"attempt(s): {text}", w.pid, reason)
                        letters.append((head, text, err))
                    else:
                        self.c["retried"] += 1
                        rest = [head] + rest
                if self._stopped or self._broken:
                    for task in rest:
                        letters.append((task, f"pool shut down before it ran ({who} {reason})",
                                        SystemShutdown(f"pool shut down before task {task.id} ran")))
                else:
                    for task in rest:  # back in the queue: not with a worker, so cancellable again
                        fut = task.future
                        fut._dispatched = False
                        if fut._state == RUNNING:
                            fut._state = PENDING
                    self._queue.extendleft(reversed(rest))
                    self._queued_bytes += sum(t.owned for t in rest)
                    self._not_full.notify_all()
            if not w.stopping:
                self.c["worker_deaths"] += 1
            stillborn = ""
            if not (w.pid or w.remote or w.stopping or self._stopped):
                taking = any(o.state in (WorkerState.IDLE, WorkerState.BUSY) for o in self._workers.values())
                self._stillborn = 0 if taking else self._stillborn + 1
                if self._stillborn >= STILLBORN_LIMIT:
                    stillborn = (f"workers cannot start: {self._stillborn} in a row ended before their handshake, "
                                 f"the last {reason} ({STILLBORN_HINT})")
            if w.remote:
                w.state = WorkerState.GONE
                self._gone.append(w)
            more = bool(self._queue or self._inbox)
            notify = not (w.stopping or self._stopped or w.ref is None)
        log.log(logging.INFO if w.stopping else logging.WARNING, "pool worker %s (%s) ended: %s",
                worker_id, who, reason)
        self.orch.events.publish("pool.worker.lost", w.slot, worker_id=worker_id, pid=w.pid, reason=reason,
                                 planned=w.stopping)
        if settle or letters:
            self._results.fail(settle, letters)
        if stillborn:
            log.error("pool %s: %s", self.name, stillborn)
            self.close(stillborn)  # queued tasks fail with PoolDown now rather than wait for a worker forever
            return
        if notify:
            self._on_lost(w.ref, worker_id, reason)
        if more:
            self.backend.wake()
