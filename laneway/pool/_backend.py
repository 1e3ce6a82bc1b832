"""The seam between the pool's scheduling and the transport that runs tasks in workers.

The :class:`~laneway.pool.Pool` is split in two halves:

* **The pool side** (``_scheduler.py``, ``_pool.py``, ``_worker_actor.py``) owns everything
  that must behave the same whatever runs the tasks: the bounded queue and backpressure,
  assignment strategy, the per-worker in-flight window, attempts and retries, per-task
  timeouts, the dead-letter queue, statistics, and supervision (one laneway ``Actor`` per
  worker under a pool supervisor with restart intensity and backoff; the supervisor, not
  the backend, decides whether a worker is restarted).
* **The backend side** (a :class:`Backend` subclass) only moves bytes: it starts and stops
  workers, transmits the tasks the pool hands it, reports outcomes, and notices when a
  worker is gone. ``ZmqBackend`` (``laneway.pool.zmq``, the default: local OS processes over
  ZeroMQ, optional CurveZMQ remote workers) and ``RayBackend`` (``laneway.pool.ray``, Ray
  actors) are the two implementations. ``Pool(orch, backend="zmq" | "ray" | instance)``
  picks one; names are resolved lazily by :func:`make_backend`, so importing laneway never
  imports ray.

The pool talks to the backend through the methods of :class:`Backend`; the backend talks
to the pool through the :class:`WorkerHub` it receives in :meth:`Backend.open`. Nothing
else crosses the seam.

Worker ids
    The pool names every worker *incarnation* with a fresh string id (``"w3.2"``: slot 3,
    second process). A restart gets a new id, so a late message from a dead incarnation can
    never be mistaken for the new one. Backends key everything by this id. Remote workers
    that join on their own (ZeroMQ ``laneway worker --connect``) bring their own id and are
    announced with :meth:`WorkerHub.worker_joined`.

Tasks on the wire
    The pool serializes at submit time (so an unpicklable function or argument fails in the
    caller with :class:`~laneway.errors.SerializationError`) and hands the backend
    :class:`TaskWire` records: ``fn_bytes`` is the cloudpickled callable and ``fn_digest`` a
    16-byte digest of it; ``args_bytes`` the cloudpickled ``(args, kwargs)``. A backend
    should ship a function's bytes to each worker once and then only its digest: use
    :class:`laneway.worker.ShipLedger` on the sending side, which mirrors exactly the
    LRU cache of :class:`laneway.worker.TaskRunner` on the worker side (both evict in
    the same order because tasks reach a worker in the order they were sent). Inside the
    worker, run every task with ``TaskRunner.run(task_id, digest, fn_bytes_or_None,
    args_bytes) -> TaskOutcome``; it never raises: the result, or the exception with its
    remote traceback text, or an unpicklable result, all come back as a
    :class:`TaskOutcome` whose ``data`` the pool decodes (``laneway.worker.decode_outcome``).

Contract for a backend (what the Ray helper must implement)
    ``open(hub)``
        Called once by the pool before anything else. Start the backend's own threads
        (I/O loop, result collector, ...). Keep ``hub``; all reporting goes through it.
    ``start_worker(worker_id)``
        Called from the worker's actor thread (``on_start``) on every (re)start. Launch the
        worker and return promptly; do not wait for it to be ready. Raise
        :class:`~laneway.errors.PoolError` if it cannot even be launched (the supervisor
        counts that as a failed start). When the worker can take tasks, call
        ``hub.worker_ready(worker_id, pid=, host=, node=)``. If it dies before that, call
        ``hub.worker_lost`` as usual.
    ``wake()``
        Called from any thread (submitters, the hub itself) whenever there may be new work
        or new room in a window. Must be cheap and non-blocking (set a flag, write an
        eventfd). Soon after, from your dispatch thread, call ``hub.assign()``, which
        returns ``[(worker_id, [TaskWire, ...]), ...]``: every task in it is already
        counted in that worker's window and MUST be sent to that worker, in order. If the
        worker turns out to be gone, just report ``worker_lost``; the pool requeues its
        window. Keep calling ``assign()`` after each wake until it returns an empty list.
    Running tasks
        A worker runs its tasks one at a time, in the order they were assigned (the pool
        infers which task is running from that order, for timeouts and attempt counting).
        Report outcomes with ``hub.results(worker_id, [TaskOutcome, ...])`` in any batch
        size, from one thread at a time, in the order they arrived; report each outcome once.
        Outcomes for a worker the pool already considers lost are dropped and counted by
        the pool, so backends need not filter them.
    ``stop_worker(worker_id, timeout)``
        Graceful stop, called from the worker's actor thread (``on_stop``) when the pool
        shrinks, recycles, or shuts down; the pool has already drained the worker's
        window when it can. Ask the worker to exit, wait up to ``timeout`` seconds, then
        kill it. Block until it is gone; then call ``hub.worker_lost(worker_id, reason)``.
    ``kill_worker(worker_id, reason)``
        Kill now, from any thread, without blocking (a task timed out, a heartbeat was
        missed, a recycled worker ignored the stop). Then report ``worker_lost`` once it
        is really gone.
    ``hub.worker_lost(worker_id, reason)``
        Call exactly once per worker id, after the worker can no longer run anything,
        however it ended (crash, kill, stop, lost node, missed heartbeats). ``reason`` is
        short human text naming what happened and is shown to callers and in dead letters:
        ``"killed by SIGKILL"``, ``"exited with code 3"``, ``"no heartbeat for 5.0s"``,
        ``"ray actor died: <error>"``. Use :func:`exit_reason` to word a return code. The
        pool retries the running task elsewhere (or dead-letters it after its attempts,
        ``"worker pid 1234 killed by SIGKILL"``), requeues the rest of the window, and
        tells the worker's actor, whose supervisor restarts it by policy.
    Liveness
        Detect a dead local worker within 0.5 s (the ZeroMQ backend polls pidfds) and a
        hung or remote one by heartbeats; read time only from ``hub.clock`` (the
        orchestrator's clock, a ``ManualClock`` in tests). Report resource use with
        ``hub.heartbeat(worker_id, rss=bytes, cpu=percent)`` now and then (about every
        ``heartbeat_s``); the pool uses RSS for ``max_memory_mb`` recycling and statistics.
    ``close(timeout)``
        Called once at pool shutdown after every worker was stopped: release sockets,
        threads, and kill anything still alive. No orphan processes afterwards.
    ``is_remote(worker_id)`` / ``admits_remote_workers()`` / ``describe()``
        Whether a worker was started elsewhere (it is then never restarted by the pool),
        whether workers may join on their own at all (a pool without local workers is
        refused otherwise), and a small dict for statistics (endpoint, cluster address, ...).

Thread safety
    Every :class:`WorkerHub` method is thread-safe, holds its lock only briefly, never
    runs user code and never blocks on the backend, so backends may call it from any
    thread, including from inside ``wake()``.

Example:
    A backend that runs tasks in the calling process (handy to read, not for production)::

        class InlineBackend(Backend):
            name = "inline"
            def open(self, hub): self.hub, self.runner = hub, TaskRunner()
            def start_worker(self, worker_id): self.hub.worker_ready(worker_id, pid=os.getpid(), host="localhost")
            def wake(self):
                while batches := self.hub.assign():
                    for wid, tasks in batches:
                        self.hub.results(wid, [self.runner.run(t.task_id, t.fn_digest, t.fn_bytes, t.args_bytes)
                                               for t in tasks])
            def stop_worker(self, worker_id, timeout): self.hub.worker_lost(worker_id, "stopped")
            def kill_worker(self, worker_id, reason): self.hub.worker_lost(worker_id, reason)
            def close(self, timeout): pass
"""

from __future__ import annotations

import abc
import logging
import signal
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

import attrs

from laneway.worker import TaskOutcome

if TYPE_CHECKING:
    from laneway.actors import Clock

log = logging.getLogger(__name__)


@attrs.frozen(slots=True)
class TaskWire:
    """One task as the backend transmits it.

    Attributes:
        task_id: the pool's id for this attempt's task (unique per pool).
        fn_digest: 16-byte digest of ``fn_bytes``; workers cache functions by it.
        fn_bytes: the cloudpickled callable (send once per worker, then only the digest).
        args_bytes: the cloudpickled ``(args, kwargs)`` tuple.
        timeout: the task's time limit in seconds (the pool enforces it; informational).
        args_buffers: out-of-band buffers of ``args_bytes`` (pickle protocol 5:
            ``pickle.loads(args_bytes, buffers=args_buffers)``); only for backends whose
            :attr:`Backend.out_of_band` is True, empty otherwise. Large ``bytes`` arguments
            are the caller's own objects: send them as they are (zero-copy), never copy them.
    """

    task_id: int
    fn_digest: bytes
    fn_bytes: bytes
    args_bytes: bytes
    timeout: float | None = None
    args_buffers: tuple[bytes, ...] = ()


#: A :class:`TaskWire`'s fields as a plain tuple: ``(task_id, fn_digest, fn_bytes, args, args_buffers)``
#: (see :meth:`WorkerHub.assign_rows`); ``args`` is ``args_bytes``, or for a backend with
#: :attr:`Backend.inline_args`, possibly the positional arguments themselves (a tuple of small scalars).
TaskRow = tuple[int, bytes, bytes, "bytes | tuple", tuple[bytes, ...]]


class WorkerHub(Protocol):
    """What the pool offers a backend (implemented by the pool's scheduler)."""

    clock: Clock

    def assign(self) -> list[tuple[str, list[TaskWire]]]:
        """Tasks to transmit now, per worker id; each is already in that worker's window."""

    def assign_rows(self) -> list[tuple[str, list[TaskRow]]]:
        """:meth:`assign` with each task as a :data:`TaskRow` tuple (no record per task)."""

    def worker_ready(self, worker_id: str, *, pid: int, host: str, node: str = "") -> None:
        """The worker can take tasks."""

    def worker_joined(self, worker_id: str, *, pid: int, host: str, node: str = "") -> bool:
        """A remote worker connected on its own; False means refuse it (pool closing)."""

    def results(self, worker_id: str, outcomes: Sequence[TaskOutcome]) -> None:
        """Outcomes of tasks the worker ran, in any batch size."""

    def results_rows(self, worker_id: str, rows: Sequence[tuple[int, bool, int, Any]],
                     busy_s: float | None = None) -> None:
        """:meth:`results` in the wire's own form: ``(task_id, ok, form, data)`` rows of a DONE
        message (see :mod:`laneway.worker.wire`), sparing a record per tiny task.

        ``busy_s``: the seconds the worker itself spent on these tasks, if it says; the pool
        sizes the worker's window by it. None: the pool times the tasks by the gaps between
        their results, which also count the time tasks spend in transit."""

    def heartbeat(self, worker_id: str, *, rss: int = 0, cpu: float = 0.0) -> None:
        """The worker is alive; its resident memory (bytes) and CPU use (percent)."""

    def worker_lost(self, worker_id: str, reason: str) -> None:
        """The worker can no longer run anything; ``reason`` says why (exactly once per id)."""


class Backend(abc.ABC):
    """Transport that runs a pool's tasks in workers. See the module docstring for the contract."""

    #: Short name used in ``Pool(backend=...)`` and in statistics.
    name: str = "?"
    #: True if the backend transmits :attr:`TaskWire.args_buffers` (and runs tasks with
    #: ``TaskRunner.run(..., buffers)``); otherwise the pool pickles arguments in band.
    out_of_band: bool = False
    #: The per-worker window (most tasks in flight) a pool uses when it is given none
    #: (the Ray backend's is what its batch calls in flight hold, and one batch ready to follow them).
    window: int = 128
    #: True if the backend takes :meth:`WorkerHub.assign_rows` whose ``args`` may be an inline
    #: tuple of small scalars (no pickle per tiny task; see ``laneway.worker.wire``).
    inline_args: bool = False

    @abc.abstractmethod
    def open(self, hub: WorkerHub) -> None:
        """Start the backend's threads; keep ``hub`` for reporting."""

    @abc.abstractmethod
    def start_worker(self, worker_id: str) -> None:
        """Launch a worker and return promptly; report ``worker_ready`` later."""

    @abc.abstractmethod
    def stop_worker(self, worker_id: str, timeout: float) -> None:
        """Stop a worker gracefully, killing it after ``timeout``; block until gone."""

    @abc.abstractmethod
    def kill_worker(self, worker_id: str, reason: str) -> None:
        """Kill a worker now without blocking; report ``worker_lost`` when it is gone."""

    @abc.abstractmethod
    def wake(self) -> None:
        """There may be work to assign: call ``hub.assign()`` soon from the dispatch thread."""

    @abc.abstractmethod
    def close(self, timeout: float) -> None:
        """Release everything; no worker may outlive this call."""

    def is_remote(self, worker_id: str) -> bool:
        """True for workers started elsewhere, which the pool must not restart."""
        return False

    def admits_remote_workers(self) -> bool:
        """True if workers may join on their own (so a pool with no local workers can still run tasks)."""
        return False

    def describe(self) -> dict[str, Any]:
        """A few facts for statistics, e.g. the endpoint the pool listens on."""
        return {}

    def serve_waiter(self, done: Callable[[], bool], deadline: float | None) -> None:
        """Optional: a caller is about to block until ``done()``; the backend may use its thread meanwhile.

        Called by a task future's ``result()`` before it waits (``deadline``: monotonic time
        or None). A backend may receive and report outcomes on the calling thread (sparing
        the hop from its own I/O thread), returning as soon as ``done()`` is true, at the
        deadline, or at once if it cannot; it must never run tasks there or block past the
        deadline. The default does nothing: the caller waits for the future as usual.
        """

    def capacity(self) -> int | None:
        """How many workers can run at once (asked after :meth:`open`); None: as many as asked.

        The pool sizes itself down to this, with a warning, rather than wait for
        workers that cannot start.
        """
        return None


def exit_reason(returncode: int | None) -> str:
    """Word a process return code: ``-9`` -> ``"killed by SIGKILL"``, ``3`` -> ``"exited with code 3"``.

    Example:
        >>> exit_reason(-9)
        'killed by SIGKILL'
    """
    if returncode is None:
        return "vanished (exit status unknown)"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"
