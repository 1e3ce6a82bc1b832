"""What the console needs from the system it shows and steers.

The :class:`~laneway.Orchestrator` provides it (the console never imports the
orchestrator). It is what observers see (:class:`laneway.observe.Observed`:
``started_*`` methods that never start a subsystem, so opening the console
never starts a pool, lanes or a router) plus what the console's operations act on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from laneway.observe import Observed

if TYPE_CHECKING:
    from laneway.core import DeadLetterQueue
    from laneway.workflow import WorkflowEngine


class ConsoleTarget(Observed, Protocol):
    """A running system as the console sees it: an :class:`~laneway.observe.Observed` with dead letters and workflows."""

    dead_letters: DeadLetterQueue

    def started_workflows(self) -> WorkflowEngine | None: ...
