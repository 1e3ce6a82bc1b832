"""Messages of the router actor, and the small thread-safe helpers its callers share."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs

from laneway.actors import ActorRef
from laneway.breakers import CallOutcome
from laneway.errors import ActorDead, LaneFull, LanewayError, SystemShutdown

if TYPE_CHECKING:
    from laneway.router._invoke import AgentCall
    from laneway.router._select import AgentSlot
    from laneway.router._task import RoutedTask

log = logging.getLogger(__name__)


@attrs.frozen
class Route:
    task: RoutedTask


@attrs.frozen
class SubmitNow:
    """Start the task on an eligible agent now, or raise; never queue it."""

    task: RoutedTask


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
    task: RoutedTask
    slot: AgentSlot
    attempt: AgentCall
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
    """The tasks submitted and not yet ended, by id; safe from any thread.

    It outlives the router actor's incarnations: the router puts a task in
    before sending it to the actor, the actor takes it out when it ends, and
    an incarnation that starts after a crash takes over the tasks still in
    it, so none is left hanging (not even one whose ``Route`` was lost with
    the crashed actor's mailbox). ``Router.wait_idle`` waits for it to empty.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._tasks: dict[str, RoutedTask] = {}
        self._shut: str | None = None

    def __len__(self) -> int:
        return len(self._tasks)

    def enter(self, task: RoutedTask) -> None:
        """Count ``task`` in.

        Raises:
            SystemShutdown: the router stopped for good (see :meth:`shut`).
        """
        with self._cond:
            if self._shut is not None:
                raise SystemShutdown(self._shut)
            self._tasks[task.id] = task

    def leave(self, task: RoutedTask) -> None:
        """Count ``task`` out (it ended, or was never handed over); idempotent."""
        with self._cond:
            if self._tasks.pop(task.id, None) is not None and not self._tasks:
                self._cond.notify_all()

    def tasks(self) -> list[RoutedTask]:
        """The tasks still in, oldest first."""
        with self._cond:
            return sorted(self._tasks.values(), key=lambda t: t.seq)

    def shut(self, reason: str) -> list[RoutedTask]:
        """Refuse new tasks from now on (their ``enter`` raises SystemShutdown with ``reason``); returns those still in."""
        with self._cond:
            self._shut = reason
            return sorted(self._tasks.values(), key=lambda t: t.seq)

    def wait_zero(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._tasks, timeout)


class QueueRoom:
    """The bound on tasks submitted but not yet started on an agent; safe from any thread.

    ``Router.submit`` takes a place (waiting for one up to its block timeout,
    like a lane's ``submit``); the router actor gives it back when the task
    first starts on an agent or ends without running.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._n = 0
        self._closed = False

    def __len__(self) -> int:
        return self._n

    def take(self, block: float, router: str) -> None:
        """Take a place, waiting up to ``block`` seconds for one.

        Raises:
            LaneFull: still full after ``block`` seconds (at once when ``block`` <= 0).
            SystemShutdown: the router closed while the caller waited.
        """
        with self._cond:
            if self._n >= self.limit and not self._closed:
                if block <= 0:
                    raise LaneFull(f"router {router} is full ({self.limit} tasks waiting to start)")
                deadline = time.monotonic() + block
                while self._n >= self.limit and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LaneFull(f"router {router} stayed full ({self.limit} tasks waiting to start) for {block}s")
                    self._cond.wait(left)
            if self._closed:
                raise SystemShutdown(f"router {router} is shut down")
            self._n += 1

    def give_back(self) -> None:
        with self._cond:
            self._n -= 1
            self._cond.notify()

    def close(self) -> None:
        """Wake every waiting submitter; they raise SystemShutdown."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def tell_quietly(ref: ActorRef, message: Any) -> None:
    try:
        ref.tell(message)
    except ActorDead:
        log.debug("router is gone; dropping %r", type(message).__name__)
