"""Where a task attempt runs: a local executor on an engine thread, or an agent through the router."""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Callable

from laneway.errors import Cancelled, ConfigError, SystemShutdown
from laneway.lanes import RetryPolicy
from laneway.workflow._model import TaskDefinition
from laneway.actors._threads import DaemonThreads

if TYPE_CHECKING:
    from laneway.actors import Orchestrator
    from laneway.workflow._run import Attempt, WorkflowRun

Executor = Callable[[Any], Any]


def _routing(task: TaskDefinition) -> tuple[Any, tuple[str, ...]]:
    """Role and capabilities for the router: an ``agent_type`` naming an α-role selects the role,
    any other ``agent_type`` is one more capability the agent must have."""
    from laneway.router import AlphaRole

    if not task.agent_type:
        return None, task.capabilities
    try:
        return AlphaRole.coerce(task.agent_type), task.capabilities
    except ConfigError:
        return None, tuple(dict.fromkeys((*task.capabilities, task.agent_type)))


class Dispatcher:
    """Runs attempts; every outcome comes back through ``run.finish_attempt``."""

    def __init__(self, orch: Orchestrator, threads: int) -> None:
        self._orch = orch
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
            future = self._orch.router.submit(
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
