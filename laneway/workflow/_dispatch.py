"""Where a task attempt runs: a local executor on an engine thread, or an agent through the router."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from laneway.core import DaemonThreads, Future, RetryPolicy
from laneway.errors import Cancelled, ConfigError, SystemShutdown
from laneway.router import AlphaRole
from laneway.workflow._model import TaskDefinition

if TYPE_CHECKING:
    from laneway.workflow._run import Attempt, WorkflowRun

Executor = Callable[[Any], Any]


class Routing(Protocol):
    """What the engine needs to run a task on an agent: the router's ``submit``."""

    def submit(
        self,
        payload: Any,
        *,
        capabilities: Iterable[str] | str = (),
        role: AlphaRole | str | int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        context: Any = None,
    ) -> Future[Any]: ...


#: Returns the router, starting it on first call.
RoutingProvider = Callable[[], Routing]


def _routing(task: TaskDefinition) -> tuple[Any, tuple[str, ...]]:
    """Role and capabilities for the router: an ``agent_type`` naming an α-role selects the role,
    any other ``agent_type`` is one more capability the agent must have."""
    if not task.agent_type:
        return None, task.capabilities
    try:
        return AlphaRole.coerce(task.agent_type), task.capabilities
    except ConfigError:
        return None, tuple(dict.fromkeys((*task.capabilities, task.agent_type)))


class Dispatcher:
    """Runs attempts; every outcome comes back through ``run.finish_attempt``."""

    def __init__(self, router: RoutingProvider | None, threads: int) -> None:
        self._router = router
        self.executors: dict[str, Executor] = {}  # replaced whole-key only, so reads need no lock
        self._workers = DaemonThreads(threads, "laneway-workflow")

    @property
    def threads(self) -> int:
        return self._workers.threads

    def close(self) -> None:
        # Do not wait: a task ignoring its token must not hold up shutdown (threads are daemons).
        self._workers.close(timeout=0)

    def execute(self, run: WorkflowRun, tid: str, attempt: Attempt) -> None:
        task = run.tasks[tid]
        fn = self.executors.get(task.agent_type) if task.agent_type else None
        if fn is not None:
            try:
                self._workers.submit(lambda: self._run_local(run, tid, attempt, fn))
            except SystemShutdown as exc:
                run.finish_attempt(tid, attempt.token, False, exc)
            return
        try:
            role, capabilities = _routing(task)
            # The workflow owns retries (each attempt is persisted), so the router makes one attempt.
            if self._router is None:
                raise ConfigError(f"task {tid} has no local executor for {task.agent_type!r} and this engine "
                                  "was given no router (router=...)")
            future = self._router().submit(
                task.payload,
                capabilities=capabilities,
                role=role,
                timeout=task.timeout,
                retry=RetryPolicy.none(),
                context=attempt.ctx,
            )
        except Exception as exc:
            run.finish_attempt(tid, attempt.token, False, exc)
            return
        attempt.ctx.cancel_token.add_callback(lambda _reason: future.cancel())  # withdraws it if still queued
        future.add_done_callback(lambda f: self._router_done(run, tid, attempt, f))

    @staticmethod
    def _run_local(run: WorkflowRun, tid: str, attempt: Attempt, fn: Executor) -> None:
        if run.engine.stopping:
            run.finish_attempt(tid, attempt.token, False, SystemShutdown("workflow engine is shutting down"))
            return
        try:
            value = asyncio.run(fn(attempt.ctx)) if inspect.iscoroutinefunction(fn) else fn(attempt.ctx)
        except Exception as exc:
            run.finish_attempt(tid, attempt.token, False, exc)
        else:
            run.finish_attempt(tid, attempt.token, True, value)

    @staticmethod
    def _router_done(run: WorkflowRun, tid: str, attempt: Attempt, future: Any) -> None:
        error = Cancelled("the routed task was withdrawn") if future.cancelled() else future.exception()
        if error is None:
            run.finish_attempt(tid, attempt.token, True, future.result())
        else:
            run.finish_attempt(tid, attempt.token, False, error)
