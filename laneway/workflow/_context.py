"""What a task's executor (or agent) receives: :class:`TaskContext`."""

from __future__ import annotations

import types
from typing import Any, Callable, Mapping

from laneway.core import CancellationToken
from laneway.workflow._handoff import Handoff, create_handoff
from laneway.workflow._model import TaskDefinition

_NO_STATE = object()


class ProgressReporter:
    """Reports a task's progress to its workflow's progress stream.

    Example:
        >>> def crawl(ctx):                                  # doctest: +SKIP
        ...     for i, url in enumerate(ctx.payload):
        ...         ctx.progress.report(done=i + 1, total=len(ctx.payload))
    """

    __slots__ = ("_sink",)

    def __init__(self, sink: Callable[[Mapping[str, Any]], None]) -> None:
        self._sink = sink

    def report(self, **fields: Any) -> None:
        """Set progress fields (only changed ones reach subscribers, as a delta)."""
        if fields:
            self._sink(fields)

    __call__ = report


class TaskContext:
    """Everything a running task knows about itself and its workflow.

    Attributes:
        task: the task's definition.
        workflow_id: the workflow it belongs to.
        payload: shortcut for ``task.payload``.
        attempt: which attempt this is (1, 2, ...).
        dependency_results: results of the dependencies that completed, by task id.
        failed_dependencies: errors (texts) of dependencies that failed with ``allow_failure``.
        variables: the workflow's variables (read-only).
        progress: a :class:`ProgressReporter`.
        cancel_token: cancelled when the workflow is cancelled, the attempt times
            out or the engine shuts down; long tasks should check it.
        resume_state: the last checkpoint saved by an earlier attempt (None if none).
        has_checkpoint: whether ``resume_state`` comes from a checkpoint.
        idempotency_key: ``"<workflow_id>/<task_id>"``, the same for every attempt
            of this task on any node; a tool that records it with its effect
            (a unique key, ``INSERT ... ON CONFLICT DO NOTHING``) makes a re-run
            after a crash or a failover exactly-once in effect.

    Example:
        >>> def count(ctx):                                  # doctest: +SKIP
        ...     n = ctx.resume_state or 0
        ...     while n < 1000:
        ...         ctx.cancel_token.raise_if_cancelled()
        ...         n += 1
        ...         ctx.checkpoint(n)
        ...     return n
    """

    def __init__(
        self,
        *,
        task: TaskDefinition,
        workflow_id: str,
        attempt: int,
        dependency_results: Mapping[str, Any],
        failed_dependencies: Mapping[str, str],
        variables: Mapping[str, Any],
        progress: ProgressReporter,
        cancel_token: CancellationToken,
        resume: tuple[bool, Any],
        save_checkpoint: Callable[[Any], None],
    ) -> None:
        self.task = task
        self.workflow_id = workflow_id
        self.attempt = attempt
        self.dependency_results = types.MappingProxyType(dict(dependency_results))
        self.failed_dependencies = types.MappingProxyType(dict(failed_dependencies))
        self.variables = variables
        self.progress = progress
        self.cancel_token = cancel_token
        self.has_checkpoint, self.resume_state = resume
        self._save = save_checkpoint
        self._latest: Any = _NO_STATE

    def __repr__(self) -> str:
        return f"<TaskContext {self.workflow_id}/{self.task.task_id} attempt {self.attempt}>"

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def idempotency_key(self) -> str:
        return f"{self.workflow_id}/{self.task.task_id}"

    @property
    def payload(self) -> Any:
        return self.task.payload

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled

    def checkpoint(self, state: Any) -> None:
        """Save ``state`` durably now; a later attempt (even in a new process) gets it as ``resume_state``."""
        self._latest = _NO_STATE
        self._save(state)

    def update_state(self, state: Any) -> None:
        """Remember ``state`` cheaply; it is saved every ``checkpoint_every_s`` seconds if the task sets that."""
        self._latest = state

    def _take_latest(self) -> tuple[bool, Any]:
        """The state set since the last save, if any (for periodic checkpoints)."""
        latest, self._latest = self._latest, _NO_STATE
        return (latest is not _NO_STATE, latest)

    def handoff(
        self, target: str, task_description: str, context: Mapping[str, Any] | None = None, **options: Any
    ) -> Handoff:
        """A handoff from this task's agent type to ``target``, tagged with this workflow and task.

        See :func:`create_handoff` for the options.
        """
        source = self.task.agent_type or "+".join(self.task.capabilities)
        return create_handoff(
            source, target, task_description, context, workflow_id=self.workflow_id, task_id=self.task_id, **options
        )

