"""A routed task as the router actor tracks it, and the queue of tasks waiting for an eligible agent."""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator

from laneway.actors import Future, TimerHandle
from laneway.core import RetryPolicy
from laneway.lanes import Priority
from laneway.router._records import RoutedWork
from laneway.router._roles import AlphaRole

if TYPE_CHECKING:
    from laneway.core import DeadLetterQueue
    from laneway.router._invoke import AgentCall
    from laneway.router._select import AgentSlot

log = logging.getLogger(__name__)

#: The router's dead letters' source (resubmitted through the router).
DEAD_LETTER_SOURCE = "router"


class RouteState(enum.Enum):
    WAITING = "waiting"  #: no eligible agent yet
    RUNNING = "running"  #: an agent runs it (or its breaker is deciding)
    RETRY_WAIT = "retry_wait"  #: failed; waiting out the retry delay
    DONE = "done"  #: its future is settled


class RoutedTask:
    """One submitted task; owned by the router actor's thread (no locks)."""

    __slots__ = (
        "id", "payload", "capabilities", "role", "context", "retry", "future", "deadline", "timeout", "seq",
        "state", "attempts", "tried", "attempt", "last_error", "timers", "priority", "holds_place", "handed_over",
    )  # fmt: skip

    def __init__(
        self,
        id: str,
        payload: Any,
        capabilities: frozenset[str],
        role: AlphaRole | None,
        context: Any,
        retry: RetryPolicy,
        future: Future[Any],
        *,
        timeout: float | None,
        seq: int,
        priority: Priority = Priority.NORMAL,
        holds_place: bool = False,
    ) -> None:
        self.id = id
        self.payload = payload
        self.capabilities = capabilities
        self.role = role
        self.context = context
        self.retry = retry
        self.future = future
        self.timeout = timeout
        self.deadline: float | None = None  # set by the router from its clock on arrival
        self.seq = seq
        self.priority = priority
        # Holds a place of the router's queue bound until it first starts on an agent or ends.
        self.holds_place = holds_place
        # The caller holds the future: a router restarted after a crash must see the task through.
        # (A submit_nowait the router has not accepted yet is its caller's to retry.)
        self.handed_over = False
        self.state = RouteState.WAITING
        self.attempts = 0
        self.tried: set[AgentSlot] = set()
        self.attempt: AgentCall | None = None
        self.last_error: BaseException | None = None
        self.timers: list[TimerHandle] = []

    def __repr__(self) -> str:
        return f"<RoutedTask {self.id} {self.state.value} needs {sorted(self.capabilities)}>"

    @property
    def key(self) -> tuple[frozenset[str], AlphaRole | None]:
        return (self.capabilities, self.role)

    def work(self) -> RoutedWork:
        """What a dead letter keeps to route this task again."""
        return RoutedWork(self.payload, tuple(sorted(self.capabilities)), self.role, self.context, self.retry, self.priority)

    def dead_letter(self, letters: DeadLetterQueue, error: BaseException, reason: str) -> None:
        """Put this task in ``letters`` to be routed again; a letter that cannot be kept is logged."""
        try:
            letters.put(DEAD_LETTER_SOURCE, f"task {self.id}: {reason}", attempts=self.attempts, error=error,
                        work_id=self.id, payload=self.work())
        except Exception:  # e.g. the store's disk is full: the caller still gets the error
            log.exception("could not dead-letter task %s (%s)", self.id, reason)

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class WaitQueue:
    """Tasks waiting for an eligible agent: by priority, then oldest first, per requirement (capabilities and role).

    Tasks that leave by another way (deadline, cancel, shutdown) are marked
    DONE by the router and :meth:`forget` is called; their entries are skipped
    when reached, so leaving is O(1).
    """

    def __init__(self) -> None:
        self._queues: dict[tuple[frozenset[str], AlphaRole | None], list[tuple[int, int, int, RoutedTask]]] = {}
        self._live = 0
        self._ties = itertools.count()  # a task pushed again (a retry) never compares RoutedTask objects

    def __len__(self) -> int:
        return self._live

    def push(self, task: RoutedTask) -> None:
        task.state = RouteState.WAITING
        heapq.heappush(self._queues.setdefault(task.key, []), (task.priority, task.seq, next(self._ties), task))
        self._live += 1

    def forget(self, task: RoutedTask) -> None:
        """A waiting task left without being dispatched."""
        self._live -= 1

    def drain(self, dispatch: Callable[[RoutedTask], bool]) -> None:
        """Offer the waiting tasks to ``dispatch``, requirement by requirement (most urgent head first).

        Within a requirement tasks go by priority, then age; the first one
        ``dispatch`` refuses ends that requirement's turn (the ones behind need
        the same agents). A dispatch only ever makes agents less eligible, so
        one pass is enough.
        """
        if not self._live:
            return
        for key in sorted(self._queues, key=self._head):
            queue = self._queues[key]
            while queue:
                task = queue[0][-1]
                if task.state is not RouteState.WAITING:
                    heapq.heappop(queue)
                    continue
                if not dispatch(task):
                    break
                heapq.heappop(queue)
                self._live -= 1
            if not queue:
                del self._queues[key]

    def _head(self, key: tuple[frozenset[str], AlphaRole | None]) -> tuple[int, int]:
        queue = self._queues[key]
        return (queue[0][0], queue[0][1]) if queue else (-1, -1)

    def live(self) -> Iterator[RoutedTask]:
        """The tasks still waiting, most urgent first within each requirement."""
        for queue in list(self._queues.values()):
            for *_, task in sorted(queue):
                if task.state is RouteState.WAITING:
                    yield task
