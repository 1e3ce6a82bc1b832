"""The pool's bookkeeping: queue, windows, attempts, timeouts, dead letters, statistics.

The :class:`Scheduler` is the pool side of the backend seam (it implements
:class:`~laneway.pool._backend.WorkerHub`). Every method takes one short lock,
never runs user code while holding it, and never waits on a backend. Results are
decoded and futures settled (so done callbacks run) on the pool's own results
thread, in the order they arrived, never on a backend's I/O thread.

Windows: each worker has a FIFO of tasks sent to it and not yet answered. A
worker runs its tasks in order, so the head of the window is the one running:
its start time drives the per-task timeout, and it is the only task whose attempt
counts when the worker dies (the others never started and are requeued as they
were). The window is small on purpose: work queued in the pool can still go to
whichever worker frees up first, while work prefetched into a window cannot.
It grows to its full size only for workers whose tasks finish quickly, so slow
tasks never queue behind each other in one worker.

Bytes: a worker's window holds at most :data:`~laneway.pool._window.WINDOW_BYTES` of
task payload (always at least one task), so large arguments do not pile up in one
worker's socket while another worker could take them; and the queue holds at most
``max_queue_bytes`` of pickles the pool made itself (``submit`` blocks past it like past
``max_queue``). Large ``bytes`` arguments are not copied at all: the queue keeps the
caller's object, which travels out of band, so they do not count against it.

Futures: a task's future turns RUNNING when the task heads its worker's window
(written here, under the lock, which ``TaskFuture.cancel`` also takes). Once a task
is in a window it cannot be recalled, so ``cancel()`` then returns False; a task
cancelled while queued is dropped when the queue reaches it, never sent. A task put
back in the queue (its worker died) is PENDING and cancellable again.

Initializer: with one, a worker that reports ready first runs it (a pseudo-task at
the head of its window, negative id); it takes tasks only once that succeeded, and
a failure puts the pool down with :class:`~laneway.errors.InitializerError`.

Closing happens in two steps: :meth:`Scheduler.stop_taking` refuses new tasks while
queued ones still run (``Executor.shutdown``), then :meth:`Scheduler.close` stops
retrying and fails what is left.
"""

from __future__ import annotations

import collections
import concurrent.futures._base as _cf
import copy
import itertools
import logging
import random
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence

from laneway.errors import InitializerError, PoolDown, PoolFull, SystemShutdown, TaskTimeout, WorkerDied
from laneway.pool._backend import Backend, TaskRow, TaskWire
from laneway.worker import TaskOutcome
from laneway.worker import wire
from laneway.pool._future import TaskFuture
from laneway.pool._records import Assignment, PoolStats, WorkerState, WorkerStats
from laneway.pool._results import Row, Settler, decode_row
from laneway.pool._window import FED_WINDOW, GONE_KEPT, TINY_OWNED, WINDOW_BYTES, Task, WorkerRecord, pool_stats, remote_slot

if TYPE_CHECKING:
    from laneway.actors import Clock

log = logging.getLogger(__name__)

_CANCELLED = (_cf.CANCELLED, _cf.CANCELLED_AND_NOTIFIED)
_PENDING, _RUNNING = _cf.PENDING, _cf.RUNNING


class Scheduler:
    """Queue, windows and accounting of one pool; the backend's :class:`WorkerHub`.

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

    # --- submitting -----------------------------------------------------------

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

    def _check_open(self) -> None:
        if self._broken or self._down:
            raise self._down_error()
        if self._closed:
            raise SystemShutdown("pool is shut down; it takes no new tasks")

    def _down_error(self) -> BaseException:
        """A fresh error saying the pool is down (each raise gets its own traceback)."""
        if not self._broken:
            return PoolDown(f"pool {self.name} is down until its supervisor restarts: {self._down}")
        err = self._broken_error
        if err is None:
            return PoolDown(f"pool is down: {self._broken}", permanent=True)
        return _fresh(err)

    def _wants_worker(self) -> bool:
        """Called with tasks left queued and no worker with room: ask for one more worker?"""
        if self._grow_pending or self._slots >= self._worker_limit:
            return False
        if any(w.state is WorkerState.STARTING for w in self._workers.values()):
            return False  # one is on its way already
        self._grow_pending = True
        return True

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
                if fut._state in _CANCELLED:  # cancel() takes our lock to set it, so this read is exact
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
                    fut._state = _RUNNING  # heads the window: the worker runs it next, nothing ahead of it
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
                _wake_waiters(self._not_full)
            # Tasks left over mean no worker has room: submitters need not wake the backend,
            # the next result, ready worker or lost worker will (and one wake-up then sends a
            # whole batch instead of one task per submit).
            self._saturated = bool(queue)
            self._fed = bool(takers) and all(len(w.window) >= FED_WINDOW for w in takers)
            grow = self._saturated and self._wants_worker()
            if self._closed and not queue:
                _wake_waiters(self._ready_cond)
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

    # --- WorkerHub: reports ---------------------------------------------------------

    def worker_ready(self, worker_id: str, *, pid: int, host: str, node: str = "") -> None:
        with self._lock:
            self._fed = False  # one more worker to feed
            w = self._workers.get(worker_id)
            if w is None:
                return
            w.pid, w.host, w.node = pid, host, node
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

    def results_rows(self, worker_id: str, rows: Sequence[Row]) -> None:
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
                service = 0.8 * service + 0.2 * (now - started)
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
                    if nxt.future._state == _PENDING:
                        nxt.future._state = _RUNNING
                    if nxt.timeout is not None and nxt.timer is None:
                        head = nxt
            else:
                w.state = WorkerState.IDLE
                w.idle_since = now
                _wake_waiters(self._ready_cond)
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
        err = InitializerError(f"pool initializer {task.label} failed in worker {worker_id} (pid {pid}): "
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
                        err = WorkerDied(f"pool task {head.id} ({head.label}) failed after {head.tries} "
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
                        if fut._state == _RUNNING:
                            fut._state = _PENDING
                    self._queue.extendleft(reversed(rest))
                    self._queued_bytes += sum(t.owned for t in rest)
                    self._not_full.notify_all()
            if not w.stopping:
                self.c["worker_deaths"] += 1
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
        if notify:
            self._on_lost(w.ref, worker_id, reason)
        if more:
            self.backend.wake()

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
            error = PoolDown(f"pool {self.name} is down: {reason}", permanent=True)
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
                err: BaseException = _fresh(error)
            else:
                err = SystemShutdown(f"task {task.id}: {why}")
            self._results.dead_letter(task, why, err)

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


def _wake_waiters(cond: threading.Condition) -> None:
    """``cond.notify_all()`` (the caller holds its lock) if anyone waits: on the data path most
    rounds have no waiter, and notify_all costs microseconds even then.

    Reads ``Condition._waiters``, CPython's list of waiters (the same since Python 3.2).
    """
    if cond._waiters:  # type: ignore[attr-defined]
        cond.notify_all()


def _fresh(err: BaseException) -> BaseException:
    """A copy of ``err`` (same type, message and attributes) to raise with its own traceback."""
    fresh = copy.copy(err)
    fresh.__cause__ = err.__cause__
    fresh.__traceback__ = None
    return fresh
