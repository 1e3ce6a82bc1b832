"""The caller's handle on one workflow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from laneway.core import Future
from laneway.errors import WorkflowFailed
from laneway.core import ProgressStream
from laneway.workflow._model import WorkflowStatus, WorkflowVersion

if TYPE_CHECKING:
    from laneway.workflow._engine import WorkflowEngine


class Workflow:
    """A handle on one workflow of a :class:`WorkflowEngine` (cheap; the engine holds the state).

    Example:
        >>> wf = engine.create_workflow(tasks, variables={"lang": "en"})    # doctest: +SKIP
        >>> wf.start()                                                     # doctest: +SKIP
        >>> wf.pause(); wf.resume()                                        # doctest: +SKIP
        >>> wf.wait(timeout=60).state                                      # doctest: +SKIP
        <WorkflowState.COMPLETED: 'completed'>
    """

    __slots__ = ("engine", "id")

    def __init__(self, engine: WorkflowEngine, workflow_id: str) -> None:
        self.engine = engine
        self.id = workflow_id

    def __repr__(self) -> str:
        return f"<Workflow {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workflow) and other.engine is self.engine and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def start(self) -> Workflow:
        """Start it (see :meth:`WorkflowEngine.start`)."""
        return self.engine.start(self.id)

    def status(self) -> WorkflowStatus:
        """Its current status."""
        return self.engine.status(self.id)

    def pause(self) -> bool:
        """See :meth:`WorkflowEngine.pause`."""
        return self.engine.pause(self.id)

    def resume(self) -> bool:
        """See :meth:`WorkflowEngine.resume`."""
        return self.engine.resume(self.id)

    def cancel(self, reason: str = "cancelled by caller") -> bool:
        """See :meth:`WorkflowEngine.cancel`."""
        return self.engine.cancel(self.id, reason)

    def rollback(self, version: int) -> WorkflowStatus:
        """See :meth:`WorkflowEngine.rollback_workflow`."""
        return self.engine.rollback_workflow(self.id, version)

    def history(self) -> list[WorkflowVersion]:
        """See :meth:`WorkflowEngine.history`."""
        return self.engine.history(self.id)

    @property
    def future(self) -> Future[WorkflowStatus]:
        """Settled with the final status when it ends (and no task is still running)."""
        return self.engine._run(self.id).done

    @property
    def progress(self) -> ProgressStream:
        """Its progress stream: per task id, ``{"state", "attempts", <reported fields>}``."""
        return self.engine._run(self.id).progress

    def wait(self, timeout: float | None = None) -> WorkflowStatus:
        """Block until it ends; return the final status (completed, failed or cancelled).

        Raises:
            LanewayTimeout: it did not end within ``timeout`` seconds (it keeps running).
        """
        return self.future.get(timeout)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until it ends; the results by task id.

        Raises:
            WorkflowFailed: it failed or was cancelled (``status`` attached).
            LanewayTimeout: it did not end in time.
        """
        status = self.wait(timeout)
        if not status.succeeded:
            raise WorkflowFailed(f"workflow {self.id} ended {status.state.value}", status)
        return dict(status.results)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no task of it is running (e.g. after :meth:`pause`); False on timeout."""
        return self.engine._wait_idle(self.id, timeout)
