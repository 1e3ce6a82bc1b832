"""Public records of the cluster: node info, statistics, and the handles ``submit`` returns."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Callable

import attrs

from laneway.core import Future
from laneway.errors import LanewayTimeout

if TYPE_CHECKING:
    from laneway.workflow import WorkflowStatus


class NodeState(enum.Enum):
    """Where this node is in its membership."""

    JOINING = "joining"  #: not yet registered
    MEMBER = "member"  #: holds a live lease; claims and commits work
    FENCED = "fenced"  #: lost its lease (paused, cut off); rejoining under a new epoch
    LEFT = "left"  #: stopped; its lease was given up


@attrs.frozen
class NodeInfo:
    """One row of the node registry, from :meth:`ClusterNode.nodes`.

    Attributes:
        node: the node's name.
        epoch: its fencing token (bumped at every join and when declared dead).
        alive: holds a lease nobody has taken over.
        lease_left_s: seconds until its lease expires (negative: expired), by the database clock.
        pid: its process id; host: its host name.
    """

    node: str
    epoch: int
    alive: bool
    lease_left_s: float
    pid: int | None
    host: str | None


@attrs.frozen
class ClusterStats:
    """Counters of one node, from :meth:`ClusterNode.statistics`.

    Attributes:
        node: this node's name; epoch: its current fencing token; state: its :class:`NodeState`.
        claimed: commands claimed here; committed: results committed from here.
        fenced: commands and workflows this node lost with its lease and did not commit (a commit
            refused by the fencing check, or a run dropped when the node found its lease gone).
        running: commands claimed here and not yet committed.
        workflows_claimed: workflow runs claimed (or adopted) here; workflows_running: running here now.
        requeued: orphaned commands and workflows this node put back in the queue (adoption).
        nodes_declared_dead: nodes whose expired lease this node ended.
        lease_losses: times this node found its own lease gone and rejoined.
    """

    node: str
    epoch: int
    state: NodeState
    claimed: int
    committed: int
    fenced: int
    running: int
    workflows_claimed: int
    workflows_running: int
    requeued: int
    nodes_declared_dead: int
    lease_losses: int


class ResultFuture(Future[Any]):
    """The future of a cluster command or workflow; a wait that runs out raises :class:`LanewayTimeout`."""

    _what = "cluster result"
    _timeout_error = LanewayTimeout


@attrs.frozen
class ClusterHandle:
    """What :meth:`ClusterNode.submit` returns; its result arrives whichever node ran the command.

    Attributes:
        command_id: the command's cluster-wide id (also its idempotency key).
        lane: the lane it was submitted to.
        future: settles with the tool's return value, or its error.
    """

    command_id: str
    lane: str
    future: ResultFuture = attrs.field(eq=False, repr=False)

    def result(self, timeout: float | None = None) -> Any:
        """Block for the result (``LanewayTimeout`` after ``timeout`` s); raises the command's error if it failed.

        An error that cannot be rebuilt here (its class is not importable) is a
        :class:`~laneway.errors.CommandFailed` carrying its text.
        """
        return self.future.get(timeout)

    def done(self) -> bool:
        """True once the result is known here."""
        return self.future.done()


@attrs.frozen
class ClusterWorkflow:
    """What :meth:`ClusterNode.submit_workflow` returns; waits for the workflow wherever it runs."""

    workflow_id: str
    future: ResultFuture = attrs.field(eq=False, repr=False)
    _status: Callable[[str], WorkflowStatus | None] = attrs.field(eq=False, repr=False, alias="status_fn")

    def wait(self, timeout: float | None = None) -> WorkflowStatus:
        """The final :class:`~laneway.workflow.WorkflowStatus` (failed or not); ``LanewayTimeout`` after ``timeout`` s."""
        return self.future.get(timeout)

    def done(self) -> bool:
        """True once the final status is known here."""
        return self.future.done()

    def final_status(self) -> WorkflowStatus | None:
        """The final status from the database now, or None while it is not finished."""
        return self._status(self.workflow_id)
