"""The scheduler's records: a submitted task with its retry state, and one worker's window.

Both are internal and mutable, guarded by the :class:`~laneway.pool._scheduler.Scheduler`'s lock.
"""

from __future__ import annotations

import collections
import pickle
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from laneway.pool._backend import TaskWire
from laneway.pool._future import TaskFuture
from laneway.pool._records import PoolStats, TaskPayload, WorkerState, WorkerStats

if TYPE_CHECKING:
    from laneway.actors import TimerHandle

#: A worker whose tasks take longer than this (moving average) gets a window of SLOW_WINDOW. ZeroMQ and
#: Ray workers say how long they spent on their tasks; for other backends the gaps between results stand in.
FAST_TASK_S = 0.005
SLOW_WINDOW = 2
#: A fast worker's window holds at most about this much work (by its tasks' moving average):
#: tiny tasks travel many to a message, while tasks of a millisecond or more are not
#: prefetched so deep that work queued in the pool, which any worker may take, waits behind them.
PREFETCH_S = 0.03
#: Most task payload (pickled arguments and their buffers) in one worker's window; a task
#: bigger than this still goes, alone. Keeps large arguments queued in the pool, where any
#: worker may take them, rather than in one worker's socket.
WINDOW_BYTES = 8 * 2**20
#: A task whose pickles the pool made (``owned``) are at most this big is tiny: it joins the queue
#: without a lock, and its bytes count against ``max_queue_bytes`` once it reached the queue (so
#: at most ``max_queue`` times this much goes uncounted for a moment).
TINY_OWNED = 1024
#: With this many tasks in flight at every worker, a submit of a tiny task (at most TINY_OWNED
#: bytes on the wire) leaves sending to the next result (one message for what queued meanwhile);
#: below it, or for a larger task, a submit sends at once (a lone task's latency, a large one's transfer).
FED_WINDOW = SLOW_WINDOW
#: Gone remote workers kept for :meth:`Scheduler.worker_stats`.
GONE_KEPT = 32


def remote_slot(worker_id: str) -> str:
    """The actor (child) name of a remote worker: ``remote-<id>`` with unsafe characters replaced."""
    return "remote-" + re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id)


class Task:
    """One submitted task and its retry state (internal, mutable, guarded by the scheduler lock).

    ``init`` marks the pool initializer's run in one worker: it heads that worker's first
    window, is never retried or counted as a task, and its outcome decides whether the
    worker becomes ready (or the pool is down).
    """

    __slots__ = ("id", "digest", "fn_bytes", "args", "timeout", "buffers", "attempts", "tries", "future", "label", "timer", "dead_letter",
                 "submitted_at", "init", "nbytes", "owned")

    def __init__(self, id: int, parts: tuple[bytes, bytes, bytes | tuple], attempts: int, label: str,
                 pool: tuple[threading.Lock, Any], dead_letter: bool = True, init: bool = False, nbytes: int = 0,
                 owned: int = 0, timeout: float | None = None, buffers: tuple[bytes, ...] = ()) -> None:
        self.id = id
        # (fn digest, fn bytes, args bytes), kept apart (not the tuple): the TaskWire is made when the
        # task is sent, so a queued task holds two containers (itself and its future) for the garbage
        # collector to walk. The args may be an inline tuple of small scalars (pickled only for a
        # backend that needs bytes). pool: (the scheduler's lock, the backend's serve_waiter).
        self.digest, self.fn_bytes, self.args = parts
        self.timeout = timeout
        self.buffers = buffers
        self.attempts = attempts
        self.tries = 0
        self.future = TaskFuture(id, label, pool=pool)
        self.label = label
        self.timer: TimerHandle | None = None
        self.dead_letter = dead_letter
        self.submitted_at = time.perf_counter()  # for latency figures only, never for timeouts
        self.init = init
        self.nbytes = nbytes  # payload size on the wire (window byte budget)
        self.owned = owned  # pickles the pool made for it (queue byte budget)

    @property
    def wire(self) -> TaskWire:
        """The task as the backend transmits it."""
        return TaskWire(self.id, self.digest, self.fn_bytes, _pickled(self.args), self.timeout, self.buffers)

    def payload(self) -> TaskPayload:
        return TaskPayload(self.fn_bytes, _pickled(self.args), self.timeout, self.attempts, self.label, self.buffers)


def _pickled(args: bytes | tuple) -> bytes:
    """Pickled ``(args, kwargs)`` bytes for a task's args, which may be an inline tuple."""
    return pickle.dumps((args, None), 5) if isinstance(args, tuple) else args


class WorkerRecord:
    """The scheduler's view of one worker incarnation (internal)."""

    __slots__ = (
        "wid", "slot", "ref", "state", "pid", "host", "node", "remote", "window", "head_started",
        "service_s", "tasks_done", "rss", "cpu", "draining", "stopping", "timed_out", "idle_since", "window_bytes",
    )

    def __init__(self, wid: str, slot: str, ref: Any, remote: bool, now: float) -> None:
        self.wid = wid
        self.slot = slot
        self.ref = ref
        self.remote = remote
        self.state = WorkerState.STARTING
        self.pid = 0
        self.host = ""
        self.node = ""
        self.window: collections.deque[Task] = collections.deque()
        self.head_started = now
        self.service_s = FAST_TASK_S  # counts as slow until its first tasks prove fast
        self.tasks_done = 0
        self.rss = 0
        self.cpu = 0.0
        self.draining = False  # takes no new tasks
        self.stopping = False  # a graceful stop is under way: its end is not a death
        self.timed_out: Task | None = None  # killed because this task ran too long
        self.idle_since = now
        self.window_bytes = 0  # payload bytes of the tasks in the window

    def room(self, window: int, max_tasks: int | None) -> int:
        """How many more tasks it may take: the full window only once its tasks prove fast,
        and never more than it has left before recycling."""
        service = self.service_s
        if service >= FAST_TASK_S:
            limit = min(window, SLOW_WINDOW)
        elif service * window <= PREFETCH_S:
            limit = window
        else:
            limit = max(SLOW_WINDOW, int(PREFETCH_S / service))
        room = limit - len(self.window)
        if max_tasks is not None and not self.remote:  # remote workers are never recycled
            room = min(room, max_tasks - self.tasks_done - len(self.window))
        return room

    def stats(self, supervisor: str, restarts: int) -> WorkerStats:
        gone = self.state is WorkerState.GONE
        return WorkerStats(
            name=f"{supervisor}/{self.slot}", worker_id=self.wid, pid=self.pid,
            state=WorkerState.DRAINING if self.draining and not gone else self.state,
            tasks_done=self.tasks_done,
            current_task=(("initializer" if self.window[0].init else f"pool-task-{self.window[0].id}")
                          if self.window else None),
            in_flight=len(self.window), rss=self.rss, cpu=self.cpu, host=self.host, node=self.node,
            remote=self.remote, restarts=restarts,
        )


def pool_stats(ws: list[WorkerRecord], c: collections.Counter, queued: int, max_queue: int, backend: str,
               restarts: int) -> PoolStats:
    """The pool's :class:`PoolStats` from its worker records and counters (under the scheduler lock)."""
    return PoolStats(
        backend=backend,
        workers=sum(1 for w in ws if w.state in (WorkerState.IDLE, WorkerState.BUSY)),
        starting=sum(1 for w in ws if w.state is WorkerState.STARTING),
        busy=sum(1 for w in ws if w.window),
        queued=queued,
        in_flight=sum(len(w.window) for w in ws),
        max_queue=max_queue,
        submitted=c["submitted"], completed=c["completed"], failed=c["failed"],
        timed_out=c["timed_out"], retried=c["retried"], dead_lettered=c["dead_lettered"],
        late_results=c["late_results"], worker_deaths=c["worker_deaths"], restarts=restarts,
        recycled=c["recycled"],
    )
