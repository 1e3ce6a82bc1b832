"""What every part of a pool's scheduler shares: one lock and the state it guards.

The scheduler (:class:`~laneway.pool._scheduler.Scheduler`) is one object built in
layers, one module each, every layer a subclass of the one below, so the hot paths
reach this state as plain attributes of ``self``:

* :class:`SchedulerState` (here): the lock, the queue and its lock-free inbox, the
  workers' records, the flags that say whether the pool takes or retries tasks, and the
  counters; the errors a closed or broken pool raises.
* :class:`~laneway.pool._intake.Intake`: the submit side (the queue, its inbox, its
  bounds) and the queue's end (shutdown, cancelling, closing).
* :class:`~laneway.pool._dispatch.Dispatch`: assigning queued tasks to workers'
  windows, and per-task timeouts.
* :class:`~laneway.pool._reports.Reports`: what a backend reports (ready and lost
  workers, outcomes, heartbeats) and what follows from it (retries, settling).
* :class:`~laneway.pool._scheduler.Scheduler`: the worker registry, the pool manager's
  bookkeeping, statistics.

Every method takes the one lock briefly, never runs user code while holding it, and
never waits on a backend.
"""

from __future__ import annotations

import collections
import concurrent.futures._base as _cf
import copy
import itertools
import random
import threading
from typing import TYPE_CHECKING, Any, Callable

from laneway import errors
from laneway.errors import SystemShutdown
from laneway.pool._backend import Backend
from laneway.pool._records import Assignment
from laneway.pool._results import Settler
from laneway.pool._window import GONE_KEPT, Task, WorkerRecord

if TYPE_CHECKING:
    from laneway.actors import Clock

CANCELLED = (_cf.CANCELLED, _cf.CANCELLED_AND_NOTIFIED)
PENDING, RUNNING = _cf.PENDING, _cf.RUNNING


class SchedulerState:
    """The state of one pool's scheduler, guarded by ``_lock`` (see the module docstring).

    ``on_lost(ref, wid, reason)`` tells a worker's actor its process is gone;
    ``on_grow()`` asks for one more worker; ``on_drained(slot)`` says a
    draining worker has an empty window and can be stopped. ``initializer`` is
    ``((digest, fn_bytes, args_bytes), label)`` of the function each worker runs first.
    """

    def __init__(
        self,
        orch: Any,
        backend: Backend,
        *,
        name: str,
        worker_limit: int,
        max_queue: int,
        window: int,
        max_queue_bytes: int = 256 * 2**20,
        assignment: Assignment,
        max_tasks_per_worker: int | None,
        max_memory_bytes: int | None,
        on_lost: Callable[[Any, str, str], None],
        on_grow: Callable[[], None],
        on_drained: Callable[[str], None],
        on_joined: Callable[[str], None],
        initializer: tuple[tuple[bytes, bytes, bytes], str] | None = None,
    ) -> None:
        self.orch = orch
        self.name = name
        self.clock: Clock = orch.clock
        self.backend = backend
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self._queued_bytes = 0  # pool-made pickles of queued tasks (see the module docstring)
        self.window = window
        self.assignment = assignment
        self.max_tasks = max_tasks_per_worker
        self.max_memory = max_memory_bytes
        self._on_lost = on_lost
        self._on_grow = on_grow
        self._on_drained = on_drained
        self._on_joined = on_joined
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._ready_cond = threading.Condition(self._lock)
        self._queue: collections.deque[Task] = collections.deque()
        # Tiny tasks on their way to the queue: a submit appends here without any lock (deque appends
        # and poplefts are atomic), never waiting for the I/O thread, which holds _lock for whole
        # batches; whoever takes _lock next moves them to the queue and counts them (_absorb). Their
        # bytes (at most TINY_OWNED each) count against max_queue_bytes from then on.
        self._inbox: collections.deque[Task] = collections.deque()
        self._workers: dict[str, WorkerRecord] = {}
        self._gone: collections.deque[WorkerRecord] = collections.deque(maxlen=GONE_KEPT)
        self._task_ids = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self._rr = 0
        self._rng = random.Random()
        self._init = initializer
        self._init_ids = itertools.count(1)
        self._init_due: list[tuple[str, Task]] = []  # initializer runs assigned, not yet handed to the backend
        self._closed = False  # takes no new tasks; queued ones still run
        self._stopped = False  # closing: nothing is retried, no worker starts
        self._broken = ""  # why the pool is down, if it is
        self._broken_error: BaseException | None = None  # what submit raises then, if not PoolDown
        self._down = ""  # why the pool is down until its root supervisor restarts the workers' one
        self._stillborn = 0  # local workers in a row that died before their handshake, none taking tasks
        self._grow_pending = False  # a Grow is on its way to the pool manager
        self._saturated = False
        # Every worker taking tasks has FED_WINDOW or more in flight: a submit need not wake the
        # backend, since a result (or a lost worker) is on its way and wakes it, and then one
        # message carries what queued meanwhile instead of one message per submit. Only ever
        # true with tasks in flight; cleared whenever a window drops below FED_WINDOW.
        self._fed = False
        self._worker_limit = worker_limit  # max local workers
        self._slots = 0  # local worker slots under the supervisor (see slot_added/slot_removed)
        self.c: collections.Counter[str] = collections.Counter()  # statistics counters
        self._submitted = 0  # c["submitted"], counted as tasks reach the queue (statistics() folds it in)
        self._results = Settler(orch, name, self._lock, self.c)
        # A backend that can read results on a waiting caller's thread (see Backend.serve_waiter).
        self._serve = backend.serve_waiter if type(backend).serve_waiter is not Backend.serve_waiter else None
        self._futures = (self._lock, self._serve)  # what every task's future shares (see TaskFuture)

    def _check_open(self) -> None:
        if self._broken or self._down:
            raise self._down_error()
        if self._closed:
            raise SystemShutdown("pool is shut down; it takes no new tasks")

    def _down_error(self) -> BaseException:
        """A fresh error saying the pool is down (each raise gets its own traceback)."""
        if not self._broken:
            return errors.PoolDown(f"pool {self.name} is down until its supervisor restarts: {self._down}")
        err = self._broken_error
        if err is None:
            return errors.PoolDown(f"pool is down: {self._broken}", permanent=True)
        return fresh_copy(err)


def wake_waiters(cond: threading.Condition) -> None:
    """``cond.notify_all()`` (the caller holds its lock) if anyone waits: on the data path most
    rounds have no waiter, and notify_all costs microseconds even then.

    Reads ``Condition._waiters``, CPython's list of waiters (the same since Python 3.2).
    """
    if cond._waiters:  # type: ignore[attr-defined]
        cond.notify_all()


def fresh_copy(err: BaseException) -> BaseException:
    """A copy of ``err`` (same type, message and attributes) to raise with its own traceback."""
    fresh = copy.copy(err)
    fresh.__cause__ = err.__cause__
    fresh.__traceback__ = None
    return fresh
