"""A pool's queue: submitting into it, and its end when the pool shuts down.

Bytes: a worker's window holds at most :data:`~laneway.pool._window.WINDOW_BYTES` of
task payload (always at least one task), so large arguments do not pile up in one
worker's socket while another worker could take them; and the queue holds at most
``max_queue_bytes`` of pickles the pool made itself (``submit`` blocks past it like past
``max_queue``). Large ``bytes`` arguments are not copied at all: the queue keeps the
caller's object, which travels out of band, so they do not count against it.

Futures: a task's future turns RUNNING when the task heads its worker's window
(written by the scheduler, under its lock, which ``TaskFuture.cancel`` also takes). Once a task
is in a window it cannot be recalled, so ``cancel()`` then returns False; a task
cancelled while queued is dropped when the queue reaches it, never sent. A task put
back in the queue (its worker died) is PENDING and cancellable again.

Closing happens in two steps: :meth:`Scheduler.stop_taking` refuses new tasks while
queued ones still run (``Executor.shutdown``), then :meth:`Scheduler.close` stops
retrying and fails what is left.
"""

from __future__ import annotations

import collections
import logging

from laneway import errors
from laneway.errors import PoolFull, SystemShutdown
from laneway.pool._future import TaskFuture
from laneway.pool._scheduler_state import SchedulerState, fresh_copy
from laneway.pool._window import TINY_OWNED, Task

log = logging.getLogger(__name__)


class Intake(SchedulerState):
    """The submit side of the scheduler and the end of its queue (see the module docstring)."""

    def submit(self, wire_parts: tuple[bytes, bytes, bytes | tuple], timeout: float | None, attempts: int,
               label: str, block: bool, queue_timeout: float | None, dead_letter: bool = True,
               buffers: tuple[bytes, ...] = (), owned: int | None = None) -> TaskFuture:
        """Queue a task. ``buffers``: its arguments' out-of-band buffers; ``owned``: bytes of
        pickles the pool made for it (default ``len(args_bytes)``), counted against ``max_queue_bytes``.

        ``wire_parts[2]`` may be the arguments themselves, an inline tuple of small scalars
        (``codec.inlinable``; only for a backend with ``inline_args``): the pool made no pickle
        (``owned`` 0), and its length stands for its size on the wire (a few bytes)."""
        args_bytes = wire_parts[2]
        if owned is None:
            owned = len(args_bytes)
        nbytes = len(args_bytes) + (sum(len(b) for b in buffers) if buffers else 0)
        # Made before any lock: ids need only be unique, and count() is atomic.
        task = Task(next(self._task_ids), wire_parts, attempts, label, self._futures, dead_letter, False, nbytes, owned,
                    timeout, buffers)
        queue = self._queue
        if owned <= TINY_OWNED and not (self._broken or self._down or self._closed) and (
                len(queue) + len(self._inbox) < self.max_queue):
            # Without the lock (see the inbox in __init__): its holder, the I/O thread, may lose the
            # GIL while holding it, and a submitter that then waits for it waits a switch interval.
            self._inbox.append(task)
            if self._closed:  # shut down since the check above: close() may have drained already
                return self._refuse_late(task)
            # Fed workers: a tiny task waits for the next result; a large one goes now, so its
            # transfer overlaps the tasks ahead of it.
            if not (self._saturated or self._fed and nbytes <= TINY_OWNED):
                self.backend.wake()
            return task.future
        with self._lock:
            self._absorb()  # ahead of this task: what this thread submitted before it
            self._check_open()
            if not self._has_room(owned):
                if not block:
                    raise PoolFull(f"pool queue is full ({self._fullness()}); retry later or use submit()")
                if not self._not_full.wait_for(
                    lambda: self._has_room(owned) or self._closed or self._broken or self._down, queue_timeout
                ):
                    raise PoolFull(f"pool queue stayed full ({self._fullness()}) for {queue_timeout}s")
                self._check_open()
                self._absorb()
            self._queue.append(task)  # not a local: cancel_queued and close replace the deque
            self._queued_bytes += owned
            self._submitted += 1
            saturated = self._saturated
        if not saturated:
            self.backend.wake()
        return task.future

    def _refuse_late(self, task: Task) -> TaskFuture:
        """A task put in the inbox as the pool shut down: take it back and refuse it, unless it is
        already on its way (then close() failed it, or a worker runs it, and its future says so)."""
        with self._lock:
            self._absorb()
            try:
                self._queue.remove(task)
            except ValueError:
                return task.future
            self._queued_bytes -= task.owned
            self._submitted -= 1
            raise self._down_error() if self._broken else SystemShutdown("pool is shut down; it takes no new tasks")

    def _absorb(self) -> None:
        """Under the lock: move submitted tasks from the inbox to the end of the queue, and count them."""
        inbox = self._inbox
        if inbox:
            queue, pop, n, nbytes = self._queue, inbox.popleft, 0, 0
            while inbox:  # popleft, not a swap: submitters append to the inbox meanwhile, without a lock
                task = pop()
                queue.append(task)
                n += 1
                nbytes += task.owned
            self._submitted += n
            self._queued_bytes += nbytes

    def _has_room(self, owned: int) -> bool:
        """Under the lock: may a task holding ``owned`` pool-made bytes join the queue now?"""
        queued = len(self._queue) + len(self._inbox)
        return queued < self.max_queue and (not queued or self._queued_bytes + owned <= self.max_queue_bytes)

    def _fullness(self) -> str:
        if len(self._queue) + len(self._inbox) >= self.max_queue:
            return f"{self.max_queue} tasks"
        return f"{self._queued_bytes >> 20} MB of arguments, max_queue_mb={self.max_queue_bytes / 2**20:g}"

    # --- closing ----------------------------------------------------------------

    def stop_taking(self) -> None:
        """Refuse new tasks (``submit`` raises SystemShutdown); queued and running ones go on."""
        with self._lock:
            self._closed = True
            self._not_full.notify_all()  # blocked submitters give up
            self._ready_cond.notify_all()

    def cancel_queued(self) -> int:
        """Cancel every task still in the queue (none of them ran); returns how many."""
        with self._lock:
            self._absorb()
            queued, self._queue = list(self._queue), collections.deque()
            self._queued_bytes = 0
            self._not_full.notify_all()
            self._ready_cond.notify_all()
        n = 0
        for task in queued:
            if task.future.cancel():
                n += 1
            else:  # not expected (a queued task is not with a worker); never leave it unsettled
                why = "pool shut down before it ran"
                self._results.dead_letter(task, why, SystemShutdown(f"task {task.id}: {why}"))
        return n

    def wait_drained(self, timeout: float | None) -> bool:
        """Wait until no task is queued or with a worker (or the pool stopped or is down); False on timeout."""
        def drained() -> bool:
            return bool(self._stopped or self._broken) or not self._queue and not self._inbox and not any(
                not t.init for w in self._workers.values() for t in w.window)

        with self._lock:
            return self._ready_cond.wait_for(drained, timeout)

    def close(self, reason: str = "", error: BaseException | None = None) -> None:
        """Stop: take no more tasks, retry none; queued ones fail and go to the dead-letter queue.

        Args:
            reason: given, the pool is down for good for this reason (``submit`` then raises
                ``error``).
            error: what queued tasks fail with (default: PoolDown if ``reason`` is given, else
                SystemShutdown).
        """
        if reason and error is None:
            error = errors.PoolDown(f"pool {self.name} is down: {reason}", permanent=True)
        with self._lock:
            if reason and not self._broken:
                self._broken = reason
                self._broken_error = error
            self._closed = self._stopped = True  # first: a submit that misses it finds its task drained below
            self._absorb()
            queued, self._queue = list(self._queue), collections.deque()
            self._queued_bytes = 0
            self._not_full.notify_all()
            self._ready_cond.notify_all()
        for task in queued:
            why = f"pool shut down before it ran{': ' + reason if reason else ''}"
            if error is not None:
                err: BaseException = fresh_copy(error)
            else:
                err = SystemShutdown(f"task {task.id}: {why}")
            self._results.dead_letter(task, why, err)
