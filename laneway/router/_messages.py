"""Messages of the router actor, and the small thread-safe helpers its callers share."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import attrs

from laneway.actors import ActorRef
from laneway.breakers import CallOutcome
from laneway.errors import ActorDead, LanewayError

if TYPE_CHECKING:
    from laneway.router._invoke import Attempt
    from laneway.router._select import AgentSlot
    from laneway.router._task import Task

log = logging.getLogger(__name__)


@attrs.frozen
class Submit:
    task: Task


@attrs.frozen
class SubmitNow:
    """Start the task on an eligible agent now, or raise; never queue it."""

    task: Task


@attrs.frozen
class Register:
    slot: AgentSlot


@attrs.frozen
class Unregister:
    agent_id: str


@attrs.frozen
class GetAgents:
    agent_id: str | None = None


@attrs.frozen
class GetStatistics:
    pass


@attrs.frozen
class CancelTask:
    task_id: str


@attrs.frozen
class Close:
    """Stop taking work; fail the tasks not yet running. Replies how many still run."""

    error: LanewayError


@attrs.frozen
class Abandon:
    """Fail the tasks still running (their agents did not finish in time at shutdown)."""

    error: LanewayError


@attrs.frozen
class Finished:
    task: Task
    slot: AgentSlot
    attempt: Attempt
    outcome: CallOutcome


@attrs.frozen
class BreakerMoved:
    """An agent's breaker changed state, or its breaker actor restarted (sent from any thread)."""

    agent_id: str


@attrs.frozen
class DeadlineDue:
    task_id: str


@attrs.frozen
class RetryDue:
    task_id: str


class LiveTasks:
    """Count of accepted, unfinished tasks, for ``Router.wait_idle``; safe from any thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._n = 0

    def add(self, n: int = 1) -> None:
        with self._cond:
            self._n += n
            if self._n == 0:
                self._cond.notify_all()

    def wait_zero(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._n == 0, timeout)


def tell_quietly(ref: ActorRef, message: Any) -> None:
    try:
        ref.tell(message)
    except ActorDead:
        log.debug("router is gone; dropping %r", type(message).__name__)
