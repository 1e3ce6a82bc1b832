"""Workflow records: task definitions, states and the status snapshots callers read."""

from __future__ import annotations

import enum
from typing import Any, Mapping

import attrs

from laneway.errors import WorkflowValidationError
from laneway.core import RetryPolicy


class TaskState(enum.Enum):
    """Where a task is in its life."""

    PENDING = "pending"  #: waiting for its dependencies (or for the workflow to run)
    RUNNING = "running"  #: an attempt is executing
    RETRY_WAIT = "retry_wait"  #: an attempt failed; the next one is scheduled after a backoff
    COMPLETED = "completed"
    FAILED = "failed"  #: every allowed attempt failed
    SKIPPED = "skipped"  #: a dependency failed, so it never ran (``reason`` says which)
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_TASK


_TERMINAL_TASK = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED})


class WorkflowState(enum.Enum):
    """Where a workflow is in its life."""

    CREATED = "created"  #: defined and stored, not started
    RUNNING = "running"
    PAUSED = "paused"  #: running tasks may still finish; no new ones start
    COMPLETED = "completed"  #: every task completed (or failed with ``allow_failure``)
    FAILED = "failed"  #: a task failed without ``allow_failure``
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_WORKFLOW


_TERMINAL_WORKFLOW = frozenset({WorkflowState.COMPLETED, WorkflowState.FAILED, WorkflowState.CANCELLED})


def _tuple_of_str(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise WorkflowValidationError(f"expected a list of strings, got {value!r}") from None


def _check_task(task: TaskDefinition, attribute: attrs.Attribute, value: Any) -> None:
    tid = task.task_id
    if not isinstance(tid, str) or not tid or "/" in tid:
        raise WorkflowValidationError(f"task_id must be a non-empty string without '/', got {tid!r}")
    if attribute.name in ("capabilities", "dependencies") and not all(isinstance(x, str) and x for x in value):
        raise WorkflowValidationError(f"task {tid!r}: {attribute.name} must be non-empty strings, got {value!r}")
    if attribute.name == "timeout" and value is not None and not (isinstance(value, (int, float)) and value > 0):
        raise WorkflowValidationError(f"task {tid!r}: timeout must be > 0 seconds or None, got {value!r}")
    if attribute.name == "checkpoint_every_s" and value is not None and not (
        isinstance(value, (int, float)) and value > 0
    ):
        raise WorkflowValidationError(f"task {tid!r}: checkpoint_every_s must be > 0 or None, got {value!r}")
    if attribute.name == "retry_policy" and not isinstance(value, RetryPolicy):
        raise WorkflowValidationError(f"task {tid!r}: retry_policy must be a laneway.lanes.RetryPolicy, got {value!r}")


@attrs.frozen
class TaskDefinition:
    """One step of a workflow.

    A task runs on the local executor registered for its ``agent_type``
    (:meth:`WorkflowEngine.register_executor`) when there is one, otherwise
    through the orchestrator's router: an ``agent_type`` that names an α-role
    (``"executor"``, ``"α9"``) selects agents of that role, any other
    ``agent_type`` is one more capability the agent must have, on top of
    ``capabilities``. The agent's handler gets the :class:`TaskContext` as
    ``ctx`` when it declares that parameter.

    Attributes:
        task_id: unique within the workflow.
        agent_type: which executor or agent role runs it.
        capabilities: what the agent must be able to do (router path).
        dependencies: ids of tasks that must finish first; their results reach this task's context.
        retry_policy: how failed attempts are retried.
        timeout: seconds one attempt may run; then its cancellation token is cancelled and the
            attempt counts as failed with :class:`~laneway.errors.TaskTimeout`.
        allow_failure: when True, the workflow and the dependents go on if this task fails.
        payload: the task's input.
        checkpoint_every_s: save the state set with ``ctx.update_state`` this often.

    Example:
        >>> fetch = TaskDefinition("fetch", agent_type="http", payload={"url": "https://example.org"})
        >>> parse = TaskDefinition("parse", agent_type="parser", dependencies=["fetch"])
        >>> parse.dependencies
        ('fetch',)
    """

    task_id: str = attrs.field(validator=_check_task)
    agent_type: str | None = attrs.field(default=None, kw_only=True)
    capabilities: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str, validator=_check_task, kw_only=True)
    dependencies: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str, validator=_check_task, kw_only=True)
    retry_policy: RetryPolicy = attrs.field(factory=RetryPolicy.none, validator=_check_task, kw_only=True)
    timeout: float | None = attrs.field(default=None, validator=_check_task, kw_only=True)
    allow_failure: bool = attrs.field(default=False, kw_only=True)
    payload: Any = attrs.field(default=None, kw_only=True)
    checkpoint_every_s: float | None = attrs.field(default=None, validator=_check_task, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if not self.agent_type and not self.capabilities:
            raise WorkflowValidationError(f"task {self.task_id!r} needs an agent_type or capabilities")
        if self.agent_type is not None and not isinstance(self.agent_type, str):
            raise WorkflowValidationError(f"task {self.task_id!r}: agent_type must be a string, got {self.agent_type!r}")


@attrs.frozen(slots=True)
class TaskRecord:
    """The persisted state of one task (one row of a workflow version)."""

    state: TaskState = TaskState.PENDING
    attempts: int = 0  #: attempts started so far, interrupted ones excluded
    run: str = ""  #: token of the attempt whose result is stored
    error: str = ""  #: repr of the last error
    reason: str = ""  #: why it was skipped, cancelled or re-run

    def to_json(self) -> list[Any]:
        return [self.state.value, self.attempts, self.run, self.error, self.reason]

    @classmethod
    def from_json(cls, row: list[Any]) -> TaskRecord:
        state, attempts, run, error, reason = row
        return cls(TaskState(state), attempts, run, error, reason)


@attrs.frozen
class TaskStatus:
    """A task as callers see it."""

    task_id: str
    state: TaskState
    attempts: int
    error: str = ""
    reason: str = ""


@attrs.frozen
class WorkflowStatus:
    """A consistent snapshot of a workflow.

    Attributes:
        workflow_id: its id.
        name: its human name.
        state: the workflow's state.
        version: the store version this snapshot corresponds to.
        tasks: every task's status, in definition order.
        results: results of the completed tasks.
    """

    workflow_id: str
    name: str
    state: WorkflowState
    version: int
    tasks: Mapping[str, TaskStatus]
    results: Mapping[str, Any]

    @property
    def succeeded(self) -> bool:
        return self.state is WorkflowState.COMPLETED

    def tasks_in(self, state: TaskState) -> list[str]:
        """Ids of the tasks currently in ``state``, in definition order."""
        return [tid for tid, t in self.tasks.items() if t.state is state]


@attrs.frozen
class WorkflowVersion:
    """One entry of a workflow's history.

    Attributes:
        version: 1, 2, ... in write order.
        ts: wall-clock time it was written (for humans).
        state: the workflow's state in this version.
        note: what changed, e.g. ``"task fetch completed"``.
        tasks: each task's state in this version.
    """

    version: int
    ts: float
    state: WorkflowState
    note: str
    tasks: Mapping[str, TaskState]


@attrs.frozen
class WorkflowDefinition:
    """What a workflow is made of; stored once when it is created.

    Attributes:
        workflow_id: its id.
        name: its human name.
        tasks: the task definitions, in definition order.
        variables: read-only values every task's context sees.
        max_parallel_tasks: how many of its tasks may run at once.
    """

    workflow_id: str
    name: str
    tasks: tuple[TaskDefinition, ...]
    variables: Mapping[str, Any]
    max_parallel_tasks: int
