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
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import random
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Sequence

from laneway.actors import Future
from laneway.errors import PoolFull, SystemShutdown, TaskTimeout, WorkerDied
from laneway.pool import _codec
from laneway.pool._backend import TaskOutcome, TaskWire
from laneway.pool._records import Assignment, PoolStats, WorkerState, WorkerStats
from laneway.pool._window import GONE_KEPT, Task, WorkerRecord, remote_slot

if TYPE_CHECKING:
    from laneway.actors import Clock
    from laneway.pool._backend import Backend

log = logging.getLogger(__name__)

_CANCELLED = ("CANCELLED", "CANCELLED_AND_NOTIFIED")  # concurrent.futures' states of a cancelled future


class Scheduler:
    """Queue, windows and accounting of one pool; the backend's :class:`WorkerHub`.

    ``on_lost(ref, wid, reason)`` tells a worker's actor its process is gone;
    ``on_grow()`` asks for one more worker; ``on_drained(slot)`` says a
    draining worker has an empty window and can be stopped.
    """

    def __init__(
        self,
        orch: Any,
        *,
        name: str,
        max_queue: int,
        window: int,
        assignment: Assignment,
        max_tasks_per_worker: int | None,
        max_memory_bytes: int | None,
        on_lost: Callable[[Any, str, str], None],
        on_grow: Callable[[], None],
        on_drained: Callable[[str], None],
        on_joined: Callable[[str], None],
    ) -> None:
        self.orch = orch
        self.name = name
        self.clock: Clock = orch.clock
        self.backend: Backend | None = None
        self.max_queue = max_queue
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
        self._workers: dict[str, WorkerRecord] = {}
        self._gone: collections.deque[WorkerRecord] = collections.deque(maxlen=GONE_KEPT)
        self._task_ids = itertools.count(1)
        self._worker_ids = itertools.count(1)
        self._rr = 0
        self._rng = random.Random()
        self._closed = False
        self._broken = ""
        self.grow_pending = False
        self._saturated = False
        self.worker_limit = 0  # max local workers; set by the pool
        self.slots = 0  # local worker slots under the supervisor; changed only by the pool manager
        self.c = collections.Counter()  # statistics counters
        self._results: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._results_thread = threading.Thread(target=self._run_results, name=f"laneway-pool-results:{name}",
                                                daemon=True)
        self._results_thread.start()

    # --- submitting -----------------------------------------------------------

    def submit(self, wire_parts: tuple[bytes, bytes, bytes], timeout: float | None, attempts: int, label: str,
               block: bool, queue_timeout: float | None, dead_letter: bool = True) -> Future[Any]:
        with self._lock:
            self._check_open()
            if len(self._queue) >= self.max_queue:
                if not block:
                    raise PoolFull(f"pool queue is full ({self.max_queue} tasks); retry later or use submit()")
                if not self._not_full.wait_for(
                    lambda: len(self._queue) < self.max_queue or self._closed or self._broken, queue_timeout
                ):
                    raise PoolFull(f"pool queue stayed full ({self.max_queue} tasks) for {queue_timeout}s")
                self._check_open()
            tid = next(self._task_ids)
            task = Task(tid, TaskWire(tid, *wire_parts, timeout), attempts, label, dead_letter)
            self._queue.append(task)
            self.c["submitted"] += 1
            saturated = self._saturated
        if not saturated:
            self.backend.wake()
        return task.future

    def _check_open(self) -> None:
        if self._broken:
            raise SystemShutdown(f"pool is down: {self._broken}")
        if self._closed:
            raise SystemShutdown("pool is shut down; it takes no new tasks")

    def _wants_worker(self) -> bool:
        """Called with tasks left queued and no worker with room: ask for one more worker?"""
        if self.grow_pending or self.slots >= self.worker_limit:
            return False
        if any(w.state is WorkerState.STARTING for w in self._workers.values()):
            return False  # one is on its way already
        self.grow_pending = True
        return True

    # --- WorkerHub: assignment --------------------------------------------------

    def assign(self) -> list[tuple[str, list[TaskWire]]]:
        """Move queued tasks into windows of workers with room, by the assignment strategy."""
        timers: list[tuple[Task, str]] = []
        with self._lock:
            queue = self._queue
            if not queue:
                self._saturated = False
                return []
            window = self.window
            ready = (WorkerState.IDLE, WorkerState.BUSY)
            open_ = [w for w in self._workers.values()
                     if not w.draining and w.state in ready and w.room(window, self.max_tasks) > 0]
            batches: dict[str, list[TaskWire]] = {}
            now = self.clock.now()
            pick = self._picker(open_)
            while queue and open_:
                task = queue.popleft()
                if task.future._state in _CANCELLED:  # lock-free read: cancelled() takes the future's lock
                    continue  # the caller gave up on it before it ran
                w = pick()
                if not w.window:
                    w.head_started = now
                    if task.wire.timeout is not None:
                        timers.append((task, w.wid))
                w.window.append(task)
                w.state = WorkerState.BUSY
                batches.setdefault(w.wid, []).append(task.wire)
                if w.room(window, self.max_tasks) <= 0:
                    open_.remove(w)
            if batches and len(queue) < self.max_queue:
                self._not_full.notify_all()
            # Tasks left over mean no worker has room: submitters need not wake the backend,
            # the next result, ready worker or lost worker will (and one wake-up then sends a
            # whole batch instead of one task per submit).
            self._saturated = bool(queue)
            grow = self._saturated and self._wants_worker()
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
        timeout = task.wire.timeout
        task.timer = self.clock.call_later(timeout, lambda: self._expired(task, wid))

    def _expired(self, task: Task, wid: str) -> None:
        with self._lock:
            w = self._workers.get(wid)
            if w is None or not w.window or w.window[0] is not task or w.timed_out is not None:
                return
            w.timed_out = task
        log.warning("pool task %d (%s) ran past its %.3gs timeout; killing worker %s", task.id, task.label,
                    task.wire.timeout, wid)
        self.backend.kill_worker(wid, f"task {task.id} timed out after {task.wire.timeout}s")

    # --- WorkerHub: reports ---------------------------------------------------------

    def worker_ready(self, worker_id: str, *, pid: int, host: str, node: str = "") -> None:
        with self._lock:
            w = self._workers.get(worker_id)
            if w is None:
                return
            w.pid, w.host, w.node = pid, host, node
            w.state = WorkerState.IDLE
            w.idle_since = self.clock.now()
            self.grow_pending = False
            self._ready_cond.notify_all()
        self.orch.events.publish("pool.worker.ready", w.slot, worker_id=worker_id, pid=pid, host=host)
        self.backend.wake()

    def worker_joined(self, worker_id: str, *, pid: int, host: str, node: str = "") -> bool:
        with self._lock:
            if self._closed or self._broken or worker_id in self._workers:
                return False
            w = self._workers[worker_id] = WorkerRecord(worker_id, remote_slot(worker_id), None, True, self.clock.now())
        self.orch.events.publish("pool.worker.joined", w.slot, worker_id=worker_id, pid=pid, host=host)
        self.worker_ready(worker_id, pid=pid, host=host, node=node)
        self._on_joined(worker_id)
        return True

    def results(self, worker_id: str, outcomes: Sequence[TaskOutcome]) -> None:
        done: list[tuple[Task, TaskOutcome]] = []
        head: Task | None = None
        drained = ""
        with self._lock:
            w = self._workers.get(worker_id)
            if w is None:
                self.c["late_results"] += len(outcomes)
                return
            window = w.window
            now = self.clock.now()
            for outcome in outcomes:
                if window and window[0].id == outcome.task_id:
                    task = window.popleft()
                else:  # not the head: only possible if a backend reorders; still account for it
                    task = next((t for t in window if t.id == outcome.task_id), None)
                    if task is None:
                        self.c["late_results"] += 1
                        continue
                    window.remove(task)
                if task.timer is not None:
                    task.timer.cancel()
                w.service_s = 0.8 * w.service_s + 0.2 * (now - w.head_started)
                w.head_started = now
                w.tasks_done += 1
                done.append((task, outcome))
                self.c["completed" if outcome.ok else "failed"] += 1  # _settle corrects the rare misfits
            if window:
                if done and window[0].wire.timeout is not None and window[0].timer is None:
                    head = window[0]
            else:
                w.state = WorkerState.IDLE
                w.idle_since = now
                self._ready_cond.notify_all()
            if self.max_tasks is not None and w.tasks_done >= self.max_tasks and not w.draining and not w.remote:
                w.draining = True
                self.c["recycled"] += 1
            if w.draining and not window and not w.stopping:
                drained = w.slot
            more = bool(self._queue)
        if head is not None:
            self._arm(head, worker_id)
        if done:
            self._results.put(partial(self._settle, done))
        if drained:
            self._on_drained(drained)
        if more:
            self.backend.wake()

    def _settle(self, done: list[tuple[Task, TaskOutcome]]) -> None:
        """On the results thread: decode (unpickling may run user code) and settle, in order.

        Publishes ``pool.task.completed`` / ``.failed`` with ``latency_s`` (submit to
        result) only while someone listens, so metrics get a per-pool histogram and an
        unobserved pool pays nothing per task.
        """
        events = self.orch.events
        publish = events.active
        for task, outcome in done:
            if publish:  # before settling, so whoever sees the result also finds the event
                events.publish(
                    "pool.task.completed" if outcome.ok else "pool.task.failed", self.name,
                    pool=self.name, task_id=task.id, latency_s=time.perf_counter() - task.submitted_at,
                )
            try:
                value = _codec.decode_outcome(outcome)
            except Exception as exc:
                if outcome.ok:  # counted as completed, but its result cannot be unpickled here
                    self._recount("completed", "failed")
                if not task.future.settle(error=exc):
                    self._recount("failed", "late_results")
            else:
                if not task.future.settle(value):  # the caller cancelled it while it ran
                    self._recount("completed", "late_results")

    def _recount(self, was: str, now: str) -> None:
        with self._lock:
            self.c[was] -= 1
            self.c[now] += 1

    def _run_results(self) -> None:
        # Futures run their done callbacks in the thread that settles them. Settling here,
        # not on the backend's I/O thread, keeps a slow or blocking callback (one that
        # submits into a full queue, say) from stalling the data path that would unblock it.
        while True:
            job = self._results.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("settling pool results failed")

    def stop_results(self, timeout: float) -> None:
        """Finish settling what is queued, then end the results thread."""
        self._results.put(None)
        self._results_thread.join(timeout)
        if self._results_thread.is_alive():
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
            w = self._workers.pop(worker_id, None)
            if w is None:
                return
            self._ready_cond.notify_all()
            window, w.window = list(w.window), collections.deque()
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
                        f"pool task {head.id} ({head.label}) ran past its {head.wire.timeout}s timeout; "
                        f"{who} was killed and replaced")))
                else:
                    head.tries += 1
                    if self._closed or self._broken or head.tries >= head.attempts:
                        text = f"{who} {reason}"
                        err = WorkerDied(f"pool task {head.id} ({head.label}) failed after {head.tries} "
                                         f"attempt(s): {text}", w.pid, reason)
                        letters.append((head, text, err))
                    else:
                        self.c["retried"] += 1
                        rest = [head] + rest
                if self._closed or self._broken:
                    for task in rest:
                        letters.append((task, f"pool shut down before it ran ({who} {reason})",
                                        SystemShutdown(f"pool shut down before task {task.id} ran")))
                else:
                    self._queue.extendleft(reversed(rest))
            if not w.stopping:
                self.c["worker_deaths"] += 1
            if w.remote:
                w.state = WorkerState.GONE
                self._gone.append(w)
            more = bool(self._queue)
            notify = not (w.stopping or self._closed or w.ref is None)
        log.log(logging.INFO if w.stopping else logging.WARNING, "pool worker %s (%s) ended: %s",
                worker_id, who, reason)
        self.orch.events.publish("pool.worker.lost", w.slot, worker_id=worker_id, pid=w.pid, reason=reason,
                                 planned=w.stopping)
        if settle or letters:
            self._results.put(partial(self._fail, settle, letters))
        if notify:
            self._on_lost(w.ref, worker_id, reason)
        if more and self.backend is not None:
            self.backend.wake()

    def _fail(self, settle: list[tuple[Task, BaseException]], letters: list[tuple[Task, str, BaseException]]) -> None:
        for task, err in settle:
            task.future.settle(error=err)
        for task, text, err in letters:
            self._dead_letter(task, text, err)

    def _dead_letter(self, task: Task, reason: str, err: BaseException) -> None:
        if task.future.done():
            return  # the caller cancelled it: nobody wants it run again
        # Letter and count first, so whoever sees the future fail also finds both. A caller
        # that owns the outcome (a lane, the router: they retry and dead-letter themselves)
        # gets only the error, so one failed attempt never leaves a stale pool letter.
        if task.dead_letter:
            self.orch.dead_letters.put("pool", reason, attempts=task.tries, error=err,
                                       work_id=f"pool-task-{task.id}", payload=task.payload())
            with self._lock:
                self.c["dead_lettered"] += 1
        task.future.settle(error=err)

    # --- worker registry (called by worker actors and the pool) ---------------------

    def new_worker(self, slot: str, ref: Any) -> str:
        """Register a starting incarnation of ``slot`` and return its fresh worker id."""
        with self._lock:
            self._check_open()
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
        return self.slots

    def wait_ready(self, count: int, timeout: float | None) -> bool:
        with self._lock:
            return self._ready_cond.wait_for(
                lambda: sum(1 for w in self._workers.values()
                            if w.state in (WorkerState.IDLE, WorkerState.BUSY)) >= count, timeout)

    # --- closing ----------------------------------------------------------------

    def close(self, reason: str = "") -> None:
        """Take no more tasks; queued ones fail with SystemShutdown and go to the dead-letter queue."""
        with self._lock:
            if reason:
                self._broken = self._broken or reason
            self._closed = True
            queued, self._queue = list(self._queue), collections.deque()
            self._not_full.notify_all()
        for task in queued:
            why = f"pool shut down before it ran{': ' + reason if reason else ''}"
            self._dead_letter(task, why, SystemShutdown(f"task {task.id}: {why}"))

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no task is in any window."""
        with self._lock:
            return self._ready_cond.wait_for(lambda: not any(w.window for w in self._workers.values()), timeout)

    def busy_workers(self) -> list[str]:
        with self._lock:
            return [w.wid for w in self._workers.values() if w.window]

    # --- statistics --------------------------------------------------------------------

    def statistics(self, backend: str, restarts: int) -> PoolStats:
        with self._lock:
            ws = list(self._workers.values())
            c = self.c
            return PoolStats(
                backend=backend,
                workers=sum(1 for w in ws if w.state in (WorkerState.IDLE, WorkerState.BUSY)),
                starting=sum(1 for w in ws if w.state is WorkerState.STARTING),
                busy=sum(1 for w in ws if w.window),
                queued=len(self._queue),
                in_flight=sum(len(w.window) for w in ws),
                max_queue=self.max_queue,
                submitted=c["submitted"], completed=c["completed"], failed=c["failed"],
                timed_out=c["timed_out"], retried=c["retried"], dead_lettered=c["dead_lettered"],
                late_results=c["late_results"], worker_deaths=c["worker_deaths"], restarts=restarts,
                recycled=c["recycled"],
            )

    def worker_stats(self, restarts: dict[str, int]) -> list[WorkerStats]:
        with self._lock:
            ws = sorted(self._workers.values(), key=lambda w: (w.remote, w.slot)) + list(self._gone)
            return [w.stats(self.name, restarts.get(w.slot, 0)) for w in ws]
