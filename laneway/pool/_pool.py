"""The public :class:`Pool`: submit CPU-bound work to supervised worker processes."""

from __future__ import annotations

import logging
import os
from typing import Mapping, Any, Callable

from laneway.actors import Backoff, ChildSpec, Future, OneForOne, Strategy
from laneway.errors import ConfigError, SerializationError
from laneway.pool import _codec
from laneway.pool._backend import Backend, make_backend
from laneway.pool._records import Assignment, PoolStats, TaskPayload, WorkerStats
from laneway.pool._scheduler import Scheduler
from laneway.pool._worker_actor import Adopt, Drained, Grow, Populate, PoolManager, ProcessLost, WorkerActor

log = logging.getLogger(__name__)


def _default_supervision(max_workers: int) -> Strategy:
    # Worker processes die for reasons outside our control (OOM killer, a segfaulting
    # task retried a few times), so tolerate more than OTP's 1-in-5s before giving up.
    return OneForOne(max_restarts=max(10, 5 * max_workers), within_s=10.0,
                     backoff=Backoff(initial_s=0.05, factor=2.0, max_s=2.0, jitter=0.1))


class Pool:
    """Runs functions in worker processes, outside the GIL, with retries, timeouts and supervision.

    Usually reached as ``orch.pool`` (defaults) or started with ``orch.start_pool(**config)``.
    Each worker process has an actor under the pool's supervisor (named ``name``); a
    worker that dies is restarted by the supervisor's policy and the task it held is
    retried on another worker up to its ``attempts``, then dead-lettered
    (``orch.dead_letters``, source ``"pool"``) and its future fails with
    :class:`~laneway.errors.WorkerDied`.

    Events on ``orch.events`` (source: the worker's slot, e.g. ``"w1"``):
    ``pool.worker.ready``, ``pool.worker.joined`` (remote), ``pool.worker.lost``
    (``reason``, ``pid``, ``planned``), ``pool.worker.added``, ``pool.worker.removed``,
    ``pool.worker.recycled``.

    Workers are started with the ``spawn`` method, so, as with :mod:`multiprocessing`,
    a script that starts a pool must guard its entry point with
    ``if __name__ == "__main__":`` (workers import the main module).

    Args:
        orch: the orchestrator.
        backend: ``"zmq"`` (default: local processes over ZeroMQ), ``"ray"``, or a
            :class:`~laneway.pool.Backend` instance.
        workers: fixed number of local workers (sets both bounds unless given).
        min_workers, max_workers: bounds for growing under queue pressure and shrinking
            after ``idle_shrink_s`` of idleness. Defaults: 1 and ``os.cpu_count()``.
        window: most tasks in flight per worker (batching; kept at 2 for slow tasks).
        max_queue: bound of the pool's queue; ``submit`` blocks past it, ``submit_nowait`` raises.
        assignment: :class:`~laneway.pool.Assignment` (or its value) for picking workers.
        max_tasks_per_worker: replace a worker after this many tasks (None: never).
        max_memory_mb: replace a worker whose RSS exceeds this (None: never).
        idle_shrink_s: idle time after which workers above ``min_workers`` are stopped.
        supervision: the worker supervisor's :class:`~laneway.actors.Strategy`
            (default ``OneForOne(max_restarts=max(10, 5*max_workers), within_s=10, backoff=Backoff(0.05, max_s=2))``).
        stop_timeout_s: how long a worker may take to stop before it is killed.
        name: the supervisor's actor name.
        **backend_options: passed to the backend, e.g. for ZeroMQ ``listen``, ``keys``,
            ``heartbeat_s``, ``heartbeat_timeout_s`` (see ``ZmqBackend``); for Ray ``address``.

    Example:
        >>> pool = orch.start_pool(workers=2, max_tasks_per_worker=1000)   # doctest: +SKIP
        >>> fut = pool.submit(pow, 2, 10, timeout=5)                        # doctest: +SKIP
        >>> fut.get(timeout=30)                                             # doctest: +SKIP
        1024
    """

    def __init__(
        self,
        orch: Any,
        *,
        backend: str | Backend = "zmq",
        workers: int | None = None,
        min_workers: int | None = None,
        max_workers: int | None = None,
        window: int = 16,
        max_queue: int = 10_000,
        assignment: Assignment | str = Assignment.ROUND_ROBIN,
        max_tasks_per_worker: int | None = None,
        max_memory_mb: float | None = None,
        idle_shrink_s: float = 60.0,
        supervision: Strategy | None = None,
        stop_timeout_s: float = 5.0,
        name: str = "pool",
        **backend_options: Any,
    ) -> None:
        self.orch = orch
        self.name = name
        self.min_workers, self.max_workers = _bounds(workers, min_workers, max_workers)
        for label, value in (("window", window), ("max_queue", max_queue)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be an int >= 1, got {value!r}")
        if max_tasks_per_worker is not None and max_tasks_per_worker < 1:
            raise ConfigError(f"max_tasks_per_worker must be >= 1 or None, got {max_tasks_per_worker!r}")
        if max_memory_mb is not None and max_memory_mb <= 0:
            raise ConfigError(f"max_memory_mb must be > 0 or None, got {max_memory_mb!r}")
        if idle_shrink_s <= 0 or stop_timeout_s <= 0:
            raise ConfigError("idle_shrink_s and stop_timeout_s must be > 0")
        try:
            assignment = Assignment(assignment)
        except ValueError:
            raise ConfigError(f"assignment must be one of {[a.value for a in Assignment]}, got {assignment!r}") from None
        if supervision is not None and not isinstance(supervision, Strategy):
            raise ConfigError(f"supervision must be a Strategy such as OneForOne(...), got {supervision!r}")
        self.idle_shrink_s = idle_shrink_s
        self.idle_check_s = min(idle_shrink_s / 2, 5.0)
        self.stop_timeout_s = stop_timeout_s
        try:
            self._backend = make_backend(backend, **backend_options)
        except TypeError as exc:
            raise ConfigError(f"bad option for the {backend!r} pool backend: {exc}") from None
        self._pickler = _codec.FunctionPickler()
        self._restarts: dict[str, int] = {}
        self._closed = False
        self._core = Scheduler(
            orch, name=name, max_queue=max_queue, window=window, assignment=assignment,
            max_tasks_per_worker=max_tasks_per_worker,
            max_memory_bytes=None if max_memory_mb is None else int(max_memory_mb * 2**20),
            on_lost=self._on_lost, on_grow=lambda: self._tell_manager(Grow()),
            on_drained=lambda slot: self._tell_manager(Drained(slot)),
            on_joined=lambda wid: self._tell_manager(Adopt(wid)),
        )
        self._core.worker_limit = self.max_workers
        self._core.backend = self._backend
        self._backend.open(self._core)
        self._manager = None
        try:
            self._sup = orch.spawn_supervisor(
                name, strategy=supervision or _default_supervision(self.max_workers),
                shutdown_timeout=stop_timeout_s + 10,
            )
            self._remove_listener = orch.events.add_listener(self._on_supervisor_event, "supervisor")
            self._manager = orch.spawn(PoolManager, self, name=f"{name}.manager")
            # Workers start from the manager's thread, after this constructor returns: the
            # orchestrator holds its lock while building a component, and starting children
            # (which registers their names) from here would wait on it.
            self._manager.tell(Populate())
        except Exception:
            self._abort()
            raise
        orch.on_shutdown(f"pool {name}", self.shutdown)
        orch.dead_letters.register_resubmitter("pool", self._resubmit)

    # --- submitting -----------------------------------------------------------------

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
        attempts: int = 3,
        queue_timeout: float | None = None,
        dead_letter: bool = True,
    ) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker; returns a future of its result.

        Blocks while the pool's queue is full (backpressure), up to ``queue_timeout``.

        Args:
            fn: a picklable callable (lambdas and closures travel by value).
            kwargs: keyword arguments for ``fn``.
            timeout: seconds the task may run once started; past it its worker is killed
                and replaced and the future fails with :class:`~laneway.errors.TaskTimeout`.
            attempts: runs allowed when workers die under the task (not when it raises).
            queue_timeout: seconds to wait for room in the queue (None: until there is room).
            dead_letter: put a task whose attempts ran out in the dead-letter queue; pass
                False when the caller owns the outcome (it retries and dead-letters itself).

        Returns:
            A :class:`~laneway.actors.Future` (done callbacks run on the pool's results thread;
            they may submit, but must not wait for other pool results there):
            ``.get(timeout)`` gives the result or raises
            :class:`~laneway.errors.RemoteError` (with the remote traceback),
            :class:`~laneway.errors.TaskTimeout`, :class:`~laneway.errors.WorkerDied`.

        Raises:
            SerializationError: ``fn`` or an argument cannot be pickled.
            PoolFull: the queue stayed full for ``queue_timeout``.
            SystemShutdown: the pool is shut down.
        """
        return self._submit(fn, args, kwargs, timeout, attempts, True, queue_timeout, dead_letter)

    def submit_nowait(
        self,
        fn: Callable[..., Any],
        *args: Any,
        kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
        attempts: int = 3,
        dead_letter: bool = True,
    ) -> Future[Any]:
        """Like :meth:`submit` but raises :class:`~laneway.errors.PoolFull` instead of blocking."""
        return self._submit(fn, args, kwargs, timeout, attempts, False, None, dead_letter)

    def run_cpu_bound(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None,
        *,
        timeout: float | None,
        attempts: int | None = None,
        block: bool = True,
    ) -> Future[Any]:
        """Run a call for a caller that owns its outcome (lanes, the router): never dead-lettered here.

        This is the pool's side of :class:`laneway.core.CpuRunner`.
        """
        return self._submit(fn, args, dict(kwargs) if kwargs else None, timeout, 3 if attempts is None else attempts,
                            block, None, dead_letter=False)

    def _submit(self, fn: Callable[..., Any], args: tuple, kwargs: dict | None, timeout: float | None,
                attempts: int, block: bool, queue_timeout: float | None, dead_letter: bool = True) -> Future[Any]:
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be > 0 or None, got {timeout!r}")
        if type(attempts) is not int or attempts < 1:
            raise ConfigError(f"attempts must be an int >= 1, got {attempts!r}")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ConfigError(f"kwargs must be a dict or None, got {type(kwargs).__name__}")
        digest, fn_bytes = self._pickler.dumps(fn)
        args_bytes = _codec.dumps_args(args, kwargs)
        label = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        return self._core.submit((digest, fn_bytes, args_bytes), timeout, attempts, label, block, queue_timeout,
                                 dead_letter)

    def _resubmit(self, letter: Any) -> Future[Any]:
        payload = letter.payload
        if not isinstance(payload, TaskPayload):
            raise SerializationError(f"dead letter {letter.id} carries no pool task payload")
        parts = (_codec.digest(payload.fn_bytes), payload.fn_bytes, payload.args_bytes)
        return self._core.submit(parts, payload.timeout, payload.attempts, payload.label, False, None)

    # --- observing ------------------------------------------------------------------

    def statistics(self) -> PoolStats:
        """Counters and gauges of the pool now."""
        return self._core.statistics(self._backend.name, sum(self._restarts.values()))

    def workers(self) -> list[WorkerStats]:
        """Every worker (and recently gone remote workers) with pid, state, tasks done, RSS, CPU."""
        return self._core.worker_stats(dict(self._restarts))

    def wait_ready(self, count: int | None = None, timeout: float | None = 30.0) -> bool:
        """Wait until ``count`` workers (default ``min_workers``) are connected; False on timeout."""
        return self._core.wait_ready(self.min_workers if count is None else count, timeout)

    @property
    def backend(self) -> Backend:
        """The backend running the workers."""
        return self._backend

    @property
    def endpoint(self) -> str:
        """Where the pool listens (ZeroMQ backend), e.g. ``"tcp://127.0.0.1:40123"``."""
        return self._backend.describe().get("endpoint", "")

    # --- shutdown -----------------------------------------------------------------------

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop taking tasks, let running ones finish for up to ``timeout`` s, stop every worker.

        Queued tasks fail with :class:`~laneway.errors.SystemShutdown` and are dead-lettered,
        so they can be resubmitted later. No worker process outlives this call.
        """
        if self._closed:
            return
        self._closed = True
        timeout = self.stop_timeout_s if timeout is None else timeout
        self._core.close()
        if not self._core.wait_idle(timeout):
            for wid in self._core.busy_workers():
                self._backend.kill_worker(wid, "pool shut down while it ran a task")
        self._remove_listener()
        if self._manager is not None:
            self._manager.stop(timeout=timeout)
        self._sup.stop(timeout=timeout + self.stop_timeout_s * max(1, self.max_workers))
        self._backend.close(timeout)
        self._core.stop_results(timeout)

    def _abort(self) -> None:
        self._closed = True
        self._core.close("the pool failed to start")
        if hasattr(self, "_remove_listener"):
            self._remove_listener()
        for ref in (self._manager, getattr(self, "_sup", None)):
            if ref is not None:
                ref.stop(timeout=self.stop_timeout_s)
        self._backend.close(1.0)
        self._core.stop_results(1.0)

    # --- callbacks from the scheduler and the supervisor ---------------------------------

    def _spec(self, slot: str) -> ChildSpec:
        return ChildSpec(WorkerActor, name=slot, kwargs={"pool": self, "slot": slot},
                         shutdown_s=self.stop_timeout_s + 5)

    def _add_slot(self) -> None:
        taken = {c.name for c in self._sup.which_children()}
        slot = next(f"w{i}" for i in range(1, len(taken) + 2) if f"w{i}" not in taken)
        self._sup.start_child(self._spec(slot))
        self._core.slots += 1
        self.orch.events.publish("pool.worker.added", slot)

    def _on_lost(self, ref: Any, worker_id: str, reason: str) -> None:
        try:
            ref.tell(ProcessLost(worker_id, reason))
        except Exception:
            log.debug("actor of worker %s is not running", worker_id)

    def _tell_manager(self, msg: Any) -> None:
        manager = self._manager
        if manager is None or self._closed:
            return
        try:
            manager.tell(msg)
        except Exception:
            log.debug("pool manager is not running; dropped %r", msg)

    def _on_supervisor_event(self, event: Any) -> None:
        if event.source != self.name:
            return
        if event.key == "supervisor.child.restarted":
            child = event.data.get("child", "")
            self._restarts[child] = self._restarts.get(child, 0) + 1
        elif event.key == "supervisor.escalated" and not self._closed:
            reason = event.data.get("reason", "the pool supervisor gave up")
            log.error("pool %s is down: %s", self.name, reason)
            self._core.close(reason)


def _bounds(workers: int | None, lo: int | None, hi: int | None) -> tuple[int, int]:
    cpus = os.cpu_count() or 1
    if workers is not None:
        lo = workers if lo is None else lo
        hi = workers if hi is None else hi
    lo = 1 if lo is None else lo
    hi = max(cpus, lo) if hi is None else hi
    for label, value in (("min_workers", lo), ("max_workers", hi)):
        if type(value) is not int or value < 0:
            raise ConfigError(f"{label} must be an int >= 0, got {value!r}")
    if lo > hi:
        raise ConfigError(f"min_workers ({lo}) must not exceed max_workers ({hi})")
    return lo, hi
