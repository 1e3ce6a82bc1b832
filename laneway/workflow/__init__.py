"""Workflows: DAGs of agent tasks with persisted, versioned state, checkpoints, handoffs and progress streams.

Example:
    >>> from laneway import Orchestrator
    >>> from laneway.workflow import TaskDefinition
    >>> with Orchestrator(name="doc") as orch:
    ...     engine = orch.workflows
    ...     engine.register_executor("add", lambda ctx: sum(ctx.dependency_results.values()) + ctx.payload)
    ...     status = engine.run([
    ...         TaskDefinition("a", agent_type="add", payload=1),
    ...         TaskDefinition("b", agent_type="add", payload=2),
    ...         TaskDefinition("total", agent_type="add", payload=0, dependencies=["a", "b"]),
    ...     ], timeout=30)
    ...     status.results["total"]
    3
"""

from laneway.core import CancellationToken
from laneway.workflow._context import ProgressReporter, TaskContext
from laneway.workflow._dag import validate_graph
from laneway.workflow._engine import EngineStatistics, WorkflowEngine
from laneway.workflow._handle import Workflow
from laneway.workflow._handoff import (
    HANDOFF_SCHEMA,
    Handoff,
    create_handoff,
    deserialize_handoff,
    handoff_violations,
    serialize_handoff,
    validate_handoff,
)
from laneway.workflow._model import (
    TaskDefinition,
    TaskState,
    TaskStatus,
    WorkflowDefinition,
    WorkflowState,
    WorkflowStatus,
    WorkflowVersion,
)

__all__ = [
    "HANDOFF_SCHEMA",
    "CancellationToken",
    "EngineStatistics",
    "Handoff",
    "ProgressReporter",
    "TaskContext",
    "TaskDefinition",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowEngine",
    "WorkflowState",
    "WorkflowStatus",
    "WorkflowVersion",
    "create_handoff",
    "deserialize_handoff",
    "handoff_violations",
    "serialize_handoff",
    "validate_graph",
    "validate_handoff",
]
