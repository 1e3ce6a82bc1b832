"""The public :class:`Pool`: a :class:`concurrent.futures.Executor` running work in supervised worker processes."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
import types
from typing import Any, Callable, Iterable, Iterator, Mapping

import attrs

from laneway.actors import Backoff, ChildSpec, OneForOne, RestForOne, Strategy, StrategyKind
from laneway import errors
from laneway.errors import ConfigError, PoolError, SerializationError
from laneway.worker import codec as _codec
from laneway.pool._backend import Backend
from laneway.pool._select_backend import make_backend
from laneway.pool._future import TaskFuture
from laneway.pool._map import map_calls
from laneway.pool._options import TaskOptions, TaskSubmitter, evolve
from laneway.pool._records import Assignment, PoolStats, TaskPayload, WorkerStats
from laneway.pool._scheduler import Scheduler
from laneway.pool._worker_actor import (
    Adopt,
    Drained,
    Grow,
    PoolManager,
    ProcessLost,
    WorkerActor,
    WorkerSupervisor,
)

log = logging.getLogger(__name__)

_DEFAULTS = TaskOptions()


#: The worker supervisor's default restart backoff.
DEFAULT_WORKER_BACKOFF = Backoff(initial_s=0.05, factor=2.0, max_s=2.0, jitter=0.1)


def _default_supervision(max_workers: int) -> Strategy:
    # Worker processes die for reasons outside our control (OOM killer, a segfaulting
    # task retried a few times), so tolerate more than OTP's 1-in-5s before giving up.
    # A replacement that served for a second was healthy: the next death waits only 50 ms again.
    return OneForOne(max_restarts=max(10, 5 * max_workers), within_s=10.0, backoff=DEFAULT_WORKER_BACKOFF,
                     backoff_reset_s=1.0)


#: The pool root's default: restart the workers' supervisor 3 times in a minute, 1 s, 2 s, 4 s apart.
DEFAULT_ROOT_SUPERVISION = RestForOne(max_restarts=3, within_s=60.0,
                                      backoff=Backoff(initial_s=1.0, factor=2.0, max_s=10.0, jitter=0.1))


class Pool(concurrent.futures.Executor):
    """Runs functions in worker processes, outside the GIL, with retries, timeouts and supervision.

    A :class:`concurrent.futures.Executor`: ``submit(fn, /, *args, **kwargs)``, ``map``,
    ``shutdown(wait=True, *, cancel_futures=False)``, ``with pool:``, and
    ``loop.run_in_executor(pool, fn, *args)`` work as with ``ProcessPoolExecutor``, with
    these differences: a task's error is raised as its own type *and* as
    :class:`~laneway.errors.RemoteError` (remote traceback attached); a worker that dies
    is replaced and its task retried (the pool never breaks; after the task's attempts
    the error is :class:`~laneway.errors.WorkerDied`, a ``BrokenProcessPool``); ``map`` is
    lazy over its input. laneway's own task options (timeout, attempts, ...) never mix
    with the task's arguments: ``pool.options(timeout=5, attempts=1).submit(fn, x)``.

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
    ``if __name__ == "__main__":`` (workers import the main module; a program read from
    standard input has no file to import, and its workers start without it).

    Args:
        orch: the orchestrator.
        backend: ``"zmq"`` (default: local processes over ZeroMQ), ``"ray"``, or a
            :class:`~laneway.pool.Backend` instance.
        workers: fixed number of local workers (sets both bounds unless given).
        min_workers, max_workers: bounds for growing under queue pressure and shrinking
            after ``idle_shrink_s`` of idleness. Defaults: 1 and ``os.cpu_count()``.
            ``max_workers`` (or ``workers``) below 1 needs a ``listen`` address for remote workers.
        initializer: called as ``initializer(*initargs)`` in each worker before its first task,
            and again in every replacement worker. If it raises, the pool is down:
            :meth:`wait_ready`, ``submit`` and the queued tasks' futures raise
            :class:`~laneway.errors.InitializerError` naming it.
        initargs: arguments for ``initializer``.
        window: most tasks in flight per worker (batching): all of them only for tasks of well under
            a millisecond (a worker's window holds about 30 ms of work), 2 for tasks of 5 ms or more.
            Default: the backend's ``window`` (128 for ZeroMQ; for Ray ``batch_size *
            (max_calls_per_worker + 1)``, 80: what its calls in flight hold and one batch ready to
            follow them, so an answering call is replaced at once; the window's work stays within
            about 30 ms, as for every backend, so little waits in one worker's outbox while another has room).
        max_queue: bound of the pool's queue; ``submit`` blocks past it, ``submit_nowait`` raises.
        max_queue_mb: bound of the pickled arguments the queue holds, in MiB (the same
            backpressure). Large ``bytes`` arguments are kept by reference, not pickled, and
            do not count; copies of large mutable buffers (``bytearray``, arrays) do.
        assignment: :class:`~laneway.pool.Assignment` (or its value) for picking workers.
        max_tasks_per_worker: replace a worker after this many tasks (None: never).
        max_memory_mb: replace a worker whose RSS exceeds this (None: never).
        idle_shrink_s: idle time after which workers above ``min_workers`` are stopped.
        supervision: the worker supervisor's :class:`~laneway.actors.Strategy`
            (default ``OneForOne(max_restarts=max(10, 5*max_workers), within_s=10, backoff=Backoff(0.05, max_s=2))``
            with ``backoff_reset_s=1``: a worker that ran for a second resets its slot's backoff).
        root_supervision: intensity and backoff of the pool root, which restarts the worker
            supervisor when that one gives up (its kind is always rest_for_one: the pool
            manager restarts with the workers). Default :data:`DEFAULT_ROOT_SUPERVISION`
            (3 restarts within 60 s, backoff 1 s doubling to 10 s). While the workers are
            down, queued tasks wait and ``submit``/``wait_ready`` raise
            :class:`~laneway.errors.PoolDown`; when the root gives up too, the pool is down
            for good and every queued task fails with ``PoolDown`` naming the cause.
        stop_timeout_s: how long a worker may take to stop before it is killed.
        name: the pool root supervisor's actor name (workers are ``<name>/workers/w1``, ...).
        **backend_options: passed to the backend, e.g. for ZeroMQ ``listen``, ``keys``,
            ``heartbeat_s``, ``heartbeat_timeout_s`` (see ``ZmqBackend``); for Ray ``address``.

    Raises:
        ConfigError: a bad option (also a ``ValueError``).
        SerializationError: ``initializer`` or ``initargs`` cannot be pickled.

    Example:
        >>> with orch.start_pool(workers=2, max_tasks_per_worker=1000) as pool:     # doctest: +SKIP
        ...     pool.submit(pow, 2, 10).result(timeout=30)
        ...     list(pool.map(pow, [2, 3], [10, 2], chunksize=64))
        ...     pool.options(timeout=5, attempts=1).submit(sorted, [3, 1, 2], reverse=True).result()
        1024
        [1024, 9]
        [3, 2, 1]
    """

    def __init__(
        self,
        orch: Any,
        *,
        backend: str | Backend = "zmq",
        workers: int | None = None,
        min_workers: int | None = None,
        max_workers: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        window: int | None = None,
        max_queue: int = 10_000,
        max_queue_mb: float = 256.0,
        assignment: Assignment | str = Assignment.ROUND_ROBIN,
        max_tasks_per_worker: int | None = None,
        max_memory_mb: float | None = None,
        idle_shrink_s: float = 60.0,
        supervision: Strategy | None = None,
        root_supervision: Strategy | None = None,
        stop_timeout_s: float = 5.0,
        name: str = "pool",
        **backend_options: Any,
    ) -> None:
        self.orch = orch
        self.name = name
        self.min_workers, self.max_workers = _bounds(workers, min_workers, max_workers)
        for label, value in (("window", window), ("max_queue", max_queue)):
            if not (label == "window" and value is None) and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{label} must be an int >= 1, got {value!r}")
        if max_tasks_per_worker is not None and max_tasks_per_worker < 1:
            raise ConfigError(f"max_tasks_per_worker must be >= 1 or None, got {max_tasks_per_worker!r}")
        if max_memory_mb is not None and max_memory_mb <= 0:
            raise ConfigError(f"max_memory_mb must be > 0 or None, got {max_memory_mb!r}")
        if not isinstance(max_queue_mb, (int, float)) or max_queue_mb <= 0:
            raise ConfigError(f"max_queue_mb must be a number > 0, got {max_queue_mb!r}")
        if idle_shrink_s <= 0 or stop_timeout_s <= 0:
            raise ConfigError("idle_shrink_s and stop_timeout_s must be > 0")
        try:
            assignment = Assignment(assignment)
        except ValueError:
            raise ConfigError(f"assignment must be one of {[a.value for a in Assignment]}, got {assignment!r}") from None
        for label, given in (("supervision", supervision), ("root_supervision", root_supervision)):
            if given is not None and not isinstance(given, Strategy):
                raise ConfigError(f"{label} must be a Strategy such as OneForOne(...), got {given!r}")
        if initializer is not None and not callable(initializer):
            raise ConfigError(f"initializer must be callable or None, got {initializer!r}")
        self.idle_shrink_s = idle_shrink_s
        self.idle_check_s = min(idle_shrink_s / 2, 5.0)
        self.stop_timeout_s = stop_timeout_s
        try:
            self._backend = make_backend(backend, **backend_options)
        except TypeError as exc:
            raise ConfigError(f"bad option for the {backend!r} pool backend: {exc}") from None
        if self.max_workers < 1 and not self._backend.admits_remote_workers():
            raise ConfigError(
                f"a pool needs workers: max_workers (or workers) is {self.max_workers}, and the {self._backend.name} "
                "backend admits no remote workers (give workers >= 1, or listen= for `laneway worker --connect`)")
        if window is None:
            window = self._backend.window
        self._pickler = _codec.FunctionPickler()
        # The last plain function submitted, with its pickle and label (one tuple, swapped whole, so
        # threads submitting at once read a consistent entry; it keeps that one function alive).
        self._last_fn: tuple[Any, tuple[bytes, bytes, str]] = (None, (b"", b"", ""))
        self._oob = self._backend.out_of_band
        self._inline = self._backend.inline_args
        init = None
        if initializer is not None:
            init_parts = (*self._pickler.dumps(initializer), _codec.dumps_args(tuple(initargs), None))
            init = (init_parts, _qualified(initializer))
        self._restarts: dict[str, int] = {}
        self._stopping = False  # shutdown is tearing the pool down
        self._stop_lock = threading.Lock()
        self._stopped = threading.Event()
        self._drainer: threading.Thread | None = None
        self._core = Scheduler(
            orch, self._backend, name=name, worker_limit=self.max_workers, max_queue=max_queue, window=window,
            max_queue_bytes=int(max_queue_mb * 2**20),
            assignment=assignment,
            max_tasks_per_worker=max_tasks_per_worker,
            max_memory_bytes=None if max_memory_mb is None else int(max_memory_mb * 2**20),
            on_lost=self._on_lost, on_grow=lambda: self._tell_manager(Grow()),
            on_drained=lambda slot: self._tell_manager(Drained(slot)),
            on_joined=lambda wid: self._tell_manager(Adopt(wid)),
            initializer=init,
        )
        self._backend.open(self._core)
        self._fit_capacity(workers)
        self._manager: Any = None
        self._sup: Any = None
        self._sup_name = f"{name}/workers"
        self._down_cause = ""  # why the workers' supervisor last gave up
        workers_stop_s = stop_timeout_s + (stop_timeout_s + 5) * max(1, self.max_workers)
        root = attrs.evolve(root_supervision or DEFAULT_ROOT_SUPERVISION, kind=StrategyKind.REST_FOR_ONE)
        try:
            self._remove_listener = orch.events.add_listener(self._on_supervisor_event, "supervisor")
            # Workers start from the manager's thread (its on_start sends it Populate), after
            # this constructor returns: starting processes here would hold the orchestrator's
            # lock for building components that long.
            self._root = orch.spawn_supervisor(name, strategy=root, shutdown_timeout=workers_stop_s + 10, children=[
                ChildSpec(WorkerSupervisor, name="workers", shutdown_s=workers_stop_s,
                          kwargs={"pool": self, "strategy": supervision or _default_supervision(self.max_workers)}),
                ChildSpec(PoolManager, name="manager", kwargs={"pool": self}, shutdown_s=stop_timeout_s + 5),
            ])
            self._sup = self._root.child("workers")
            self._manager = self._root.child("manager")
        except Exception:
            self._abort()
            raise
        orch.on_shutdown(f"pool {name}", self._shutdown_hook)
        orch.dead_letters.register_resubmitter("pool", self._resubmit)

    # --- submitting -----------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` in a worker; returns a future of its result.

        Every keyword goes to ``fn``. laneway's task options (``timeout``, ``attempts``,
        ``queue_timeout``, ``dead_letter``) are set with :meth:`options`. Blocks while the
        pool's queue is full (backpressure).

        Args:
            fn: a picklable callable (lambdas and closures travel by value).

        Returns:
            A :class:`concurrent.futures.Future` (a :class:`~laneway.actors.Future`, so
            ``.get(timeout)`` and ``await`` work too). It is RUNNING while a worker runs the
            task; ``cancel()`` succeeds only before a worker has it. ``result()`` gives the
            value or raises what the task raised, as its own type and as
            :class:`~laneway.errors.RemoteError` (``remote_traceback`` attached),
            :class:`~laneway.errors.SerializationError` (the result cannot be pickled in the
            worker or unpickled here), :class:`~laneway.errors.TaskTimeout` or
            :class:`~laneway.errors.WorkerDied`. Done callbacks run on the pool's results
            thread; they may submit, but must not wait there for other pool results.

        Raises:
            SerializationError: ``fn`` or an argument cannot be pickled (raised here, at
                submit, not through the future; also a ``TypeError``).
            SystemShutdown: the pool is shut down (also a ``RuntimeError``).
            PoolDown: the pool is down (see ``root_supervision``; also a ``SystemShutdown``).
            InitializerError: the pool is down because its initializer failed.
        """
        return self._submit(fn, args, kwargs, _DEFAULTS, True)

    def submit_nowait(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Like :meth:`submit` but raises :class:`~laneway.errors.PoolFull` instead of blocking on a full queue."""
        return self._submit(fn, args, kwargs, _DEFAULTS, False)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1, buffersize: int | None = None) -> Iterator[Any]:
        """``fn(*args)`` for each ``args`` in ``zip(*iterables)``, run in workers, results in input order.

        As :meth:`concurrent.futures.Executor.map`: an exception raised by a call is raised
        when its result is reached; past ``timeout`` seconds from this call, iterating
        raises :class:`TimeoutError`; closing the iterator (leaving the loop) cancels the
        calls no worker has yet. Unlike it, the input is read lazily, ``buffersize`` tasks
        ahead, so it may be endless.

        Args:
            timeout: seconds from this call for all results (None: no limit).
            chunksize: calls sent as one task (one message and one result each way); raise it
                for many small calls. A raising call ends its chunk: the results before it
                are still returned.
            buffersize: tasks (chunks) in flight at most, so inputs read ahead and results held;
                None: 256, or twice what the workers' windows hold if that is more.

        Example:
            >>> list(pool.map(pow, range(4), [2] * 4, chunksize=2))   # doctest: +SKIP
            [0, 1, 4, 9]
        """
        return map_calls(self, _DEFAULTS, fn, iterables, timeout, chunksize, buffersize)

    def options(self, options: TaskOptions | None = None, /, **changes: Any) -> TaskSubmitter:
        """This pool with task options bound: ``pool.options(timeout=5, attempts=1).submit(fn, x)``.

        Args:
            options: a :class:`~laneway.pool.TaskOptions` to start from (default: the defaults).
            **changes: :class:`~laneway.pool.TaskOptions` fields to set: ``timeout``,
                ``attempts``, ``queue_timeout``, ``dead_letter``.

        Raises:
            ConfigError: an unknown option or a bad value.
        """
        return TaskSubmitter(self, evolve(options or _DEFAULTS, changes) if changes else options or _DEFAULTS)

    def run_cpu_bound(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any] | None,
        *,
        timeout: float | None,
        attempts: int | None = None,
        block: bool = True,
    ) -> TaskFuture:
        """Run a call for a caller that owns its outcome (lanes, the router): never dead-lettered here.

        This is the pool's side of :class:`laneway.core.CpuRunner`.
        """
        changes: dict[str, Any] = {"timeout": timeout, "dead_letter": False}
        if attempts is not None:
            changes["attempts"] = attempts
        return self._submit(fn, args, dict(kwargs) if kwargs else {}, evolve(_DEFAULTS, changes), block)

    def _submit(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any], options: TaskOptions,
                block: bool) -> TaskFuture:
        last = self._last_fn
        if last[0] is fn:  # the same plain function as the last submit (a burst of one kind of task)
            digest, fn_bytes, label = last[1]
        else:
            digest, fn_bytes = self._pickler.dumps(fn)
            label = getattr(fn, "__qualname__", None) or type(fn).__qualname__
            if type(fn) is types.FunctionType and fn.__closure__ is None:  # what FunctionPickler memoizes too
                self._last_fn = (fn, (digest, fn_bytes, label))
        if self._inline and not kwargs and _codec.inlinable(args):  # no pickle at all (see Scheduler.submit)
            return self._core.submit((digest, fn_bytes, args), options.timeout, options.attempts, label, block,
                                     options.queue_timeout, options.dead_letter, (), 0)
        if self._oob:  # one pickle; large buffers travel as frames of their own
            args_bytes, buffers, owned = _codec.dumps_args_oob(args, kwargs)
            return self._core.submit((digest, fn_bytes, args_bytes), options.timeout, options.attempts, label, block,
                                     options.queue_timeout, options.dead_letter, buffers, owned)
        args_bytes = _codec.dumps_args(args, kwargs)
        return self._core.submit((digest, fn_bytes, args_bytes), options.timeout, options.attempts, label, block,
                                 options.queue_timeout, options.dead_letter)

    def _submit_parts(self, parts: tuple[bytes, bytes, bytes], label: str, options: TaskOptions,
                      queue_timeout: float | None) -> TaskFuture:
        return self._core.submit(parts, options.timeout, options.attempts, label, True, queue_timeout,
                                 options.dead_letter)

    def _resubmit(self, letter: Any) -> TaskFuture:
        payload = letter.payload
        if not isinstance(payload, TaskPayload):
            raise SerializationError(f"dead letter {letter.id} carries no pool task payload")
        parts = (_codec.digest(payload.fn_bytes), payload.fn_bytes, payload.args_bytes)
        return self._core.submit(parts, payload.timeout, payload.attempts, payload.label, False, None,
                                 buffers=payload.args_buffers)

    # --- observing ------------------------------------------------------------------

    def statistics(self) -> PoolStats:
        """Counters and gauges of the pool now."""
        return self._core.statistics(self._backend.name, sum(self._restarts.values()))

    def workers(self) -> list[WorkerStats]:
        """Every worker (and recently gone remote workers) with pid, state, tasks done, RSS, CPU."""
        return self._core.worker_stats(dict(self._restarts), self._sup_name)

    def wait_ready(self, count: int | None = None, timeout: float | None = 30.0) -> bool:
        """Wait until ``count`` workers (default ``min_workers``) take tasks; False on timeout.

        Raises:
            InitializerError: the initializer failed in a worker: the pool is down.
            PoolDown: the pool is down: for good (workers cannot start, its root supervisor
                gave up) or until its root supervisor restarts the workers' one.
        """
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

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None) -> None:
        """Take no more tasks, run the ones already submitted, then stop every worker.

        As :meth:`concurrent.futures.Executor.shutdown`, plus a ``timeout``. Calling it again
        (or the orchestrator's shutdown) is harmless. No worker process outlives the stop.

        Args:
            wait: return once the submitted tasks ran and the workers stopped; False: return
                at once, and let the pool finish and stop in the background.
            cancel_futures: first cancel the tasks no worker has yet (they never run); tasks
                a worker has still finish.
            timeout: how long the tasks may take (None: as long as they need). Past it, tasks
                still queued fail with :class:`~laneway.errors.SystemShutdown` and those
                running with :class:`~laneway.errors.WorkerDied` (their workers are killed);
                both are dead-lettered, so they can be resubmitted later.
        """
        self._core.stop_taking()
        if cancel_futures:
            self._core.cancel_queued()
        if wait:
            self._finish(timeout)
            return
        with self._stop_lock:
            if self._stopping or self._drainer is not None:
                return
            self._drainer = threading.Thread(target=self._finish, args=(timeout,), daemon=True,
                                             name=f"laneway-pool-shutdown:{self.name}")
            self._drainer.start()

    def _shutdown_hook(self, timeout: float) -> None:
        """The orchestrator's shutdown: finish what was submitted within ``timeout``, then stop."""
        self.shutdown(wait=True, timeout=timeout)

    def _finish(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        drained = self._core.wait_drained(timeout)
        with self._stop_lock:
            first, self._stopping = not self._stopping, True
        if not first:  # another caller is stopping the pool; wait for it as long as ours allows
            self._stopped.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            return
        try:
            self._stop(drained, self.stop_timeout_s if timeout is None else timeout)
        finally:
            self._stopped.set()
        drainer = self._drainer
        if drainer is not None and drainer is not threading.current_thread():
            drainer.join(self.stop_timeout_s)

    def _stop(self, drained: bool, timeout: float) -> None:
        self._core.close()  # what is still queued (the timeout passed) fails and is dead-lettered
        if not drained:
            for wid in self._core.busy_workers():
                self._backend.kill_worker(wid, "pool shut down while it ran a task")
        self._remove_listener()
        self._root.stop(timeout=timeout + (self.stop_timeout_s + 5) * max(1, self.max_workers))
        self._backend.close(timeout)
        self._core.stop_results(timeout)

    def _abort(self) -> None:
        self._stopping = True
        self._core.close("the pool failed to start")
        if hasattr(self, "_remove_listener"):
            self._remove_listener()
        root = getattr(self, "_root", None)
        if root is not None:
            root.stop(timeout=self.stop_timeout_s)
        self._backend.close(1.0)
        self._core.stop_results(1.0)
        self._stopped.set()

    # --- callbacks from the scheduler and the supervisor ---------------------------------

    def _spec(self, slot: str) -> ChildSpec:
        return ChildSpec(WorkerActor, name=slot, kwargs={"pool": self, "slot": slot},
                         shutdown_s=self.stop_timeout_s + 5)

    def _fit_capacity(self, workers: int | None) -> None:
        """Size the pool down to what the backend can run (e.g. a Ray cluster's CPUs), saying so."""
        try:
            cap = self._backend.capacity()
        except Exception:
            self._abort()
            raise
        if cap is None or self.max_workers <= cap:
            return
        if cap < 1 and not self._backend.admits_remote_workers():
            self._abort()
            raise PoolError(f"the {self._backend.name} backend has room for no worker "
                            f"({self._backend.describe().get('capacity', 'no resources')}): a pool there never runs a task")
        asked = f"workers={workers}" if workers is not None else f"max_workers={self.max_workers}"
        log.warning("pool %s: the %s backend has room for %d worker(s) (%s); %s would leave %d starting "
                    "forever: sizing the pool to %d", self.name, self._backend.name, cap,
                    self._backend.describe().get("capacity", "its resources"), asked, self.max_workers - cap, cap)
        self.orch.events.publish("pool.resized", self.name, asked=self.max_workers, capacity=cap)
        self.max_workers = cap
        self.min_workers = min(self.min_workers, cap)
        self._core.limit_workers(cap)

    def _workers_sup(self) -> Any:
        """The workers' supervisor (its reference outlives its restarts); the manager may ask before __init__ ends."""
        if self._sup is None:
            self._sup = self.orch.lookup(self._sup_name)
        return self._sup

    def _add_slot(self) -> None:
        sup = self._workers_sup()
        taken = {c.name for c in sup.which_children()}
        slot = next(f"w{i}" for i in range(1, len(taken) + 2) if f"w{i}" not in taken)
        sup.start_child(self._spec(slot))
        self._core.slot_added()
        self.orch.events.publish("pool.worker.added", slot)

    def _on_lost(self, ref: Any, worker_id: str, reason: str) -> None:
        try:
            ref.tell(ProcessLost(worker_id, reason))
        except Exception:
            log.debug("actor of worker %s is not running", worker_id)

    def _tell_manager(self, msg: Any) -> None:
        if self._stopping:
            return
        try:
            if self._manager is None:
                self._manager = self.orch.lookup(f"{self.name}/manager")
            self._manager.tell(msg)
        except Exception:
            log.debug("pool manager is not running; dropped %r", msg)

    def _on_supervisor_event(self, event: Any) -> None:
        # Runs synchronously on the supervisor's thread as it gives up, before it stops its children.
        if event.source == self._sup_name:
            if event.key == "supervisor.child.restarted":
                child = event.data.get("child", "")
                self._restarts[child] = self._restarts.get(child, 0) + 1
            elif event.key == "supervisor.escalated" and not self._stopping:
                self._down_cause = event.data.get("reason", "the workers' supervisor gave up")
                log.error("pool %s is down until its root restarts it: %s", self.name, self._down_cause)
                self._core.suspend(self._down_cause)
        elif event.source == self.name and event.key == "supervisor.escalated" and not self._stopping:
            reason = event.data.get("reason", "the pool root supervisor gave up")
            log.error("pool %s is down for good: %s", self.name, reason)
            self._core.close(reason, errors.PoolDown(f"pool {self.name} is down for good: {reason}", permanent=True))


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


def _qualified(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module and module not in ("builtins", "__main__") else name
