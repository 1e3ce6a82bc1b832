"""Assignment: moving a pool's queued tasks into the windows of workers with room.

Windows: each worker has a FIFO of tasks sent to it and not yet answered. A
worker runs its tasks in order, so the head of the window is the one running:
its start time drives the per-task timeout, and it is the only task whose attempt
counts when the worker dies (the others never started and are requeued as they
were). The window is small on purpose: work queued in the pool can still go to
whichever worker frees up first, while work prefetched into a window cannot.
It grows to its full size only for workers whose tasks finish quickly, so slow
tasks never queue behind each other in one worker.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Callable

from laneway.pool._backend import TaskRow, TaskWire
from laneway.pool._intake import Intake
from laneway.pool._records import Assignment, WorkerState
from laneway.pool._scheduler_state import CANCELLED, RUNNING, wake_waiters
from laneway.pool._window import FED_WINDOW, WINDOW_BYTES, Task, WorkerRecord

log = logging.getLogger(__name__)


class Dispatch(Intake):
    """The backend's :meth:`~laneway.pool._backend.WorkerHub.assign`, and per-task timeouts."""

    def _wants_worker(self) -> bool:
        """Called with tasks left queued and no worker with room: ask for one more worker?"""
        if self._grow_pending or self._slots >= self._worker_limit:
            return False
        if any(w.state is WorkerState.STARTING for w in self._workers.values()):
            return False  # one is on its way already
        self._grow_pending = True
        return True

    # --- WorkerHub: assignment --------------------------------------------------

    def assign(self) -> list[tuple[str, list[TaskWire]]]:
        """Move queued tasks into windows of workers with room, by the assignment strategy."""
        return [(wid, [t.wire for t in tasks]) for wid, tasks in self._assign()]

    def assign_rows(self) -> list[tuple[str, list[TaskRow]]]:
        """:meth:`assign`, each task as a plain ``(task_id, fn_digest, fn_bytes, args_bytes, args_buffers)``
        tuple: a backend that writes its own wire format needs no record per task."""
        return [(wid, [(t.id, t.digest, t.fn_bytes, t.args, t.buffers) for t in tasks]) for wid, tasks in self._assign()]

    def _assign(self) -> list[tuple[str, list[Task]]]:
        timers: list[tuple[Task, str]] = []
        with self._lock:
            batches: dict[str, list[Task]] = {}
            if self._init_due:  # initializer runs go first, alone: their workers take nothing else yet
                for wid, init in self._init_due:
                    batches[wid] = [init]
                self._init_due = []
            self._absorb()
            queue = self._queue
            if not queue:
                self._saturated = False
                if self._closed:
                    self._ready_cond.notify_all()  # cancelled tasks may have been the last: wake wait_drained
                return list(batches.items())
            window = self.window
            ready = (WorkerState.IDLE, WorkerState.BUSY)
            # each open worker's room (counted down as tasks go to it) and the tasks it gets now
            rooms: dict[str, list] = {}
            open_: list[WorkerRecord] = []
            takers: list[WorkerRecord] = []
            for w in self._workers.values():
                if not w.draining and w.state in ready:
                    takers.append(w)
                    room = w.room(window, self.max_tasks)
                    if room > 0:
                        open_.append(w)
                        rooms[w.wid] = [room, None]
            now = self.clock.now()
            pick = self._picker(open_)
            sent_bytes = 0
            while open_:
                if not queue:
                    if not self._inbox:
                        break
                    self._absorb()  # submitted while this loop ran: a worker still has room for them
                task = queue.popleft()
                sent_bytes += task.owned
                fut = task.future
                if fut._state in CANCELLED:  # cancel() takes our lock to set it, so this read is exact
                    continue  # the caller gave up on it before it ran (its waiters were told then)
                w = pick()
                wwin = w.window
                if wwin and w.window_bytes + task.nbytes > WINDOW_BYTES:
                    open_.remove(w)  # full by bytes: the task waits for room here or in another window
                    queue.appendleft(task)
                    sent_bytes -= task.owned
                    continue
                w.window_bytes += task.nbytes
                fut._dispatched = True  # with a worker now: cancel() returns False from here on
                if not wwin:
                    w.head_started = now
                    w.state = WorkerState.BUSY  # a worker with tasks in its window is BUSY already
                    fut._state = RUNNING  # heads the window: the worker runs it next, nothing ahead of it
                    if task.timeout is not None:
                        timers.append((task, w.wid))
                wwin.append(task)
                entry = rooms[w.wid]
                sent = entry[1]
                if sent is None:
                    sent = entry[1] = batches.setdefault(w.wid, [])
                sent.append(task)
                entry[0] -= 1
                if not entry[0]:
                    open_.remove(w)
            self._queued_bytes -= sent_bytes
            if sent_bytes or batches and len(queue) < self.max_queue:
                wake_waiters(self._not_full)
            # Tasks left over mean no worker has room: submitters need not wake the backend,
            # the next result, ready worker or lost worker will (and one wake-up then sends a
            # whole batch instead of one task per submit).
            self._saturated = bool(queue)
            self._fed = bool(takers) and all(len(w.window) >= FED_WINDOW for w in takers)
            grow = self._saturated and self._wants_worker()
            if self._closed and not queue:
                wake_waiters(self._ready_cond)
        if grow:
            self._on_grow()
        for task, wid in timers:
            self._arm(task, wid)
        return list(batches.items())

    def _picker(self, open_: list[WorkerRecord]) -> Callable[[], WorkerRecord]:
        kind = self.assignment
        if kind is Assignment.LEAST_BUSY:
            return lambda: min(open_, key=lambda w: len(w.window))
        if kind is Assignment.RANDOM:
            return lambda: self._rng.choice(open_)

        def round_robin() -> WorkerRecord:
            self._rr += 1
            return open_[self._rr % len(open_)]

        return round_robin

    def _arm(self, task: Task, wid: str) -> None:
        # The timer names the task by id only: a cancelled timer stays in the clock's heap until
        # its deadline, and must not keep the task's arguments or result alive that long.
        if task.timeout is None:
            return
        task.timer = self.clock.call_later(task.timeout, partial(self._expired, task.id, wid))

    def _expired(self, task_id: int, wid: str) -> None:
        with self._lock:
            w = self._workers.get(wid)
            if w is None or not w.window or w.window[0].id != task_id or w.timed_out is not None:
                return
            task = w.timed_out = w.window[0]
        log.warning("pool task %d (%s) ran past its %.3gs timeout; killing worker %s", task.id, task.label,
                    task.timeout, wid)
        self.backend.kill_worker(wid, f"task {task.id} timed out after {task.timeout}s")
