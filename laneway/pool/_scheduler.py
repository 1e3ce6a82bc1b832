"""The pool's bookkeeping: queue, windows, attempts, timeouts, dead letters, statistics.

The :class:`Scheduler` is the pool side of the backend seam (it implements
:class:`~laneway.pool._backend.WorkerHub`). Every method takes one short lock,
never runs user code while holding it, and never waits on a backend. Results are
decoded and futures settled (so done callbacks run) on the pool's own results
thread, in the order they arrived, never on a backend's I/O thread.

The scheduler is built in layers, one module each (see :mod:`laneway.pool._scheduler_state`):
the shared state, the submit side and the queue's end (``_intake``), assignment and
timeouts (``_dispatch``), the backend's reports (``_reports``), and here the worker
registry, the pool manager's bookkeeping and statistics.
"""

from __future__ import annotations

import logging
from typing import Any

from laneway.errors import SystemShutdown
from laneway.pool._records import PoolStats, WorkerState, WorkerStats
from laneway.pool._reports import Reports
from laneway.pool._window import WorkerRecord, pool_stats

log = logging.getLogger(__name__)


class Scheduler(Reports):
    """Queue, windows and accounting of one pool; the backend's :class:`~laneway.pool._backend.WorkerHub`.

    Its constructor and state are :class:`~laneway.pool._scheduler_state.SchedulerState`'s.
    """

    # --- the pool manager's bookkeeping ----------------------------------------

    def slot_added(self) -> None:
        """The pool manager started one more local worker slot."""
        with self._lock:
            self._slots += 1

    def slot_removed(self) -> None:
        """The pool manager removed a local worker slot (the pool shrank)."""
        with self._lock:
            self._slots -= 1

    def suspend(self, reason: str) -> None:
        """The workers' supervisor gave up: until :meth:`resume`, submit and wait_ready raise PoolDown.

        Queued tasks stay queued: they run once the pool root restarted the workers.
        """
        with self._lock:
            self._down = reason
            self._not_full.notify_all()
            self._ready_cond.notify_all()

    def resume(self) -> None:
        """The workers' supervisor (re)started, with no worker slots yet: take tasks again."""
        with self._lock:
            self._down = ""
            self._slots = 0
            self._grow_pending = False  # a Grow sent to the stopped manager was lost

    def limit_workers(self, limit: int) -> None:
        """The backend can run only ``limit`` local workers: never ask for more."""
        with self._lock:
            self._worker_limit = limit

    def grow_handled(self) -> None:
        """The pool manager handled the last Grow (added a slot or could not): another may be asked for."""
        with self._lock:
            self._grow_pending = False

    # --- worker registry (called by worker actors and the pool) ---------------------

    def new_worker(self, slot: str, ref: Any) -> str:
        """Register a starting incarnation of ``slot`` and return its fresh worker id."""
        with self._lock:
            if self._broken:
                raise self._down_error()
            if self._stopped:
                raise SystemShutdown("pool is shut down; it starts no workers")
            wid = f"{slot}.{next(self._worker_ids)}"
            self._workers[wid] = WorkerRecord(wid, slot, ref, False, self.clock.now())
            return wid

    def attach(self, worker_id: str, ref: Any) -> bool:
        """Give a joined remote worker its actor; False if it is already gone."""
        with self._lock:
            w = self._workers.get(worker_id)
            if w is not None:
                w.ref = ref
            return w is not None

    def stopping(self, worker_id: str) -> bool:
        """Mark a graceful stop; True if the worker is still known (so the backend must stop it)."""
        with self._lock:
            w = self._workers.get(worker_id)
            if w is None:
                return False
            w.stopping = w.draining = True
            return True

    def drain(self, slot: str) -> bool:
        """Stop giving ``slot`` tasks; True if its window is already empty."""
        with self._lock:
            for w in self._workers.values():
                if w.slot == slot:
                    w.draining = True
                    return not w.window
            return True

    def idle_slots(self, idle_s: float) -> list[str]:
        """Local slots idle for ``idle_s`` or more, most recently started first."""
        now = self.clock.now()
        with self._lock:
            idle = [w for w in self._workers.values() if not w.remote and not w.draining and not w.window
                    and w.state is WorkerState.IDLE and now - w.idle_since >= idle_s]
            return [w.slot for w in sorted(idle, key=lambda w: int(w.wid.rsplit(".", 1)[1]), reverse=True)]

    def count(self) -> int:
        """Local worker slots (running, starting or waiting out a restart backoff)."""
        return self._slots

    def wait_ready(self, count: int, timeout: float | None) -> bool:
        """Wait until ``count`` workers take tasks; False on timeout; raises the pool's error if it is down."""
        def ready() -> bool:
            taking = sum(1 for w in self._workers.values() if w.state in (WorkerState.IDLE, WorkerState.BUSY))
            return bool(self._broken or self._down) or taking >= count

        with self._lock:
            ok = self._ready_cond.wait_for(ready, timeout)
            if self._broken or self._down:
                raise self._down_error()
            return ok

    def busy_workers(self) -> list[str]:
        with self._lock:
            return [w.wid for w in self._workers.values() if w.window]

    # --- statistics --------------------------------------------------------------------

    def statistics(self, backend: str, restarts: int) -> PoolStats:
        with self._lock:
            self._absorb()
            self.c["submitted"] = self._submitted
            return pool_stats(list(self._workers.values()), self.c, len(self._queue), self.max_queue, backend,
                              restarts)

    def worker_stats(self, restarts: dict[str, int], supervisor: str) -> list[WorkerStats]:
        with self._lock:
            ws = sorted(self._workers.values(), key=lambda w: (w.remote, w.slot)) + list(self._gone)
            return [w.stats(supervisor, restarts.get(w.slot, 0)) for w in ws]
