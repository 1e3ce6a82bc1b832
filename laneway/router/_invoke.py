"""Running agent handlers: sync ones on a bounded set of threads, async ones on one event loop,
CPU-bound ones on the orchestrator's process pool.

:meth:`Runners.start` hands the call to the right place and returns; the
call reports its end through ``done(error, value)``. (Only the process
pool's own backpressure can make it wait: its submit blocks while its queue
is full.)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from laneway.core import DaemonThreads, LoopThread
from laneway.errors import Cancelled, ConfigError, SystemShutdown

if TYPE_CHECKING:
    from laneway.actors import ActorSystem
    from laneway.core import CpuRunnerProvider

log = logging.getLogger(__name__)

#: Called once a call ends: ``done(error)`` or ``done(None, result)``.
Done = Callable[..., None]


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _takes_ctx(fn: Callable[..., Any]) -> bool:
    try:
        param = inspect.signature(fn).parameters.get("ctx")
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


class Invoker:
    """How to call one agent's handler: ``handler(payload)``, or ``handler(payload, ctx=...)`` if it takes ``ctx``.

    Raises:
        ConfigError: the handler is not callable, or is async and CPU-bound.
    """

    __slots__ = ("handler", "is_async", "wants_ctx", "cpu_bound")

    def __init__(self, handler: Callable[..., Any], *, cpu_bound: bool = False) -> None:
        if not callable(handler):
            raise ConfigError(f"handler must be callable, got {handler!r}")
        self.handler = handler
        self.is_async = _is_async(handler)
        self.wants_ctx = _takes_ctx(handler)
        self.cpu_bound = cpu_bound
        if cpu_bound and self.is_async:
            raise ConfigError(f"handler {handler!r} is async; only sync handlers can run on the process pool")

    def kwargs(self, context: Any) -> dict[str, Any]:
        return {"ctx": context} if self.wants_ctx else {}


class AgentCall:
    """One run of a task on one agent; the router can cancel it (deadline, shutdown)."""

    __slots__ = ("task_id", "agent_id", "number", "latency_s", "cancel_error", "_cancel", "_lock")

    def __init__(self, task_id: str, agent_id: str, number: int) -> None:
        self.task_id = task_id
        self.agent_id = agent_id
        self.number = number
        self.latency_s = 0.0
        self.cancel_error: BaseException | None = None
        self._cancel: Callable[[], Any] | None = None
        self._lock = threading.Lock()

    def on_cancel(self, fn: Callable[[], Any]) -> None:
        """Register how to stop the running call; runs at once if already cancelled."""
        with self._lock:
            self._cancel = fn
            cancelled = self.cancel_error is not None
        if cancelled:
            fn()

    def cancel(self, error: BaseException) -> None:
        """Stop the call if it can be stopped (async and pool calls can; a running thread cannot)."""
        with self._lock:
            if self.cancel_error is not None:
                return
            self.cancel_error = error
            fn = self._cancel
        if fn is not None:
            fn()


class Runners:
    """Where handlers run, for one router.

    Args:
        orch: the actor system (for events).
        cpu: returns the process pool for ``cpu_bound`` handlers.
        threads: most threads for sync handlers; calls beyond wait in a queue.
        name: prefix of thread names.
    """

    def __init__(self, orch: ActorSystem, *, cpu: CpuRunnerProvider | None, threads: int, name: str) -> None:
        self._orch = orch
        self._cpu = cpu
        self._workers = DaemonThreads(threads, f"{name}-worker")
        self._loop = LoopThread(f"{name}-loop")

    def start(self, invoker: Invoker, payload: Any, context: Any, attempt: AgentCall, timeout_s: float | None, done: Done) -> None:
        """Start one call; ``done(error)`` or ``done(None, result)`` follows once it ends.

        ``attempt.latency_s`` holds the run time when ``done`` is called.
        """
        kwargs = invoker.kwargs(context)
        if invoker.cpu_bound:
            self._start_on_pool(invoker, payload, kwargs, attempt, timeout_s, done)
        elif invoker.is_async:
            self._start_async(invoker.handler(payload, **kwargs), attempt, done)
        else:
            self._workers.submit(lambda: self._run_sync(invoker, payload, kwargs, attempt, done))

    def _started(self, attempt: AgentCall) -> None:
        self._orch.events.publish(
            "agent.task.started", attempt.agent_id, agent_id=attempt.agent_id, task_id=attempt.task_id, attempt=attempt.number
        )

    def _run_sync(self, invoker: Invoker, payload: Any, kwargs: dict[str, Any], attempt: AgentCall, done: Done) -> None:
        if attempt.cancel_error is not None:  # cancelled while queued for a thread
            done(attempt.cancel_error)
            return
        self._started(attempt)
        t0 = time.perf_counter()
        try:
            result = invoker.handler(payload, **kwargs)
        except BaseException as exc:  # the worker must survive whatever a handler raises
            attempt.latency_s = time.perf_counter() - t0
            done(exc)
            return
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine (e.g. a partial)
            self._start_async(result, attempt, done, t0=t0, announced=True)
            return
        attempt.latency_s = time.perf_counter() - t0
        done(None, result)

    def _start_async(self, awaitable: Any, attempt: AgentCall, done: Done, *, t0: float | None = None, announced: bool = False) -> None:
        async def run() -> None:
            if not announced:
                self._started(attempt)
            start = time.perf_counter() if t0 is None else t0
            try:
                result = await awaitable
            except asyncio.CancelledError:
                attempt.latency_s = time.perf_counter() - start
                done(attempt.cancel_error or Cancelled(f"task {attempt.task_id} was cancelled on the event loop"))
                return
            except Exception as exc:
                attempt.latency_s = time.perf_counter() - start
                done(exc)
                return
            attempt.latency_s = time.perf_counter() - start
            done(None, result)

        try:
            loop = self._loop.get()
        except SystemShutdown as exc:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            done(exc)
            return
        future = asyncio.run_coroutine_threadsafe(run(), loop)
        attempt.on_cancel(future.cancel)

    def _start_on_pool(self, invoker: Invoker, payload: Any, kwargs: dict[str, Any], attempt: AgentCall, timeout_s: float | None, done: Done) -> None:
        self._started(attempt)
        t0 = time.perf_counter()
        # The router retries and fails over itself, so the pool gets one attempt.
        if self._cpu is None:
            done(ConfigError(f"agent {attempt.agent_id} is cpu_bound but this router was given no process pool (cpu=...)"))
            return
        future = self._cpu().run_cpu_bound(invoker.handler, (payload,), kwargs, timeout=timeout_s, attempts=1)

        def finished(f: Any) -> None:
            attempt.latency_s = time.perf_counter() - t0
            if f.cancelled():
                done(attempt.cancel_error or Cancelled(f"task {attempt.task_id} was cancelled on the pool"))
                return
            error = f.exception()
            done(error) if error is not None else done(None, f.result())

        future.add_done_callback(finished)
        attempt.on_cancel(future.force_cancel)  # even while a worker runs it

    def close(self, timeout: float) -> bool:
        """Cancel async handlers, let thread workers finish their current call; True if all stopped in time."""
        loop_ok = self._loop.close(timeout)
        return self._workers.close(timeout) and loop_ok
