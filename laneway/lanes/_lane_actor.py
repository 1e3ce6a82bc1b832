"""Each configured lane as a supervised actor: a mailbox that takes the lane's commands and controls.

Why two doors to one lane: the scheduler must compare every lane's head at
once ("control beats prompt regardless of arrival"), so the queues live
under the manager's one scheduler lock, and ``LaneManager.submit`` goes
straight there (about 40 µs p50; an actor hop would add a thread hand-off per
command). The lane actor is the actor-model door to the same lane: anything
that speaks in messages (other actors, remote callers, supervisors) can
``tell`` or ``ask`` it to submit, cancel, pause, resize or report, in mailbox
order, and it lives under the ``lanes`` supervisor like every other actor.
It never blocks its mailbox: submits through it never wait for room (a full
lane replies ``LaneFull``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import attrs

from laneway.actors import Actor, handler
from laneway.errors import LaneError

if TYPE_CHECKING:
    from laneway.lanes._config import RateLimit
    from laneway.lanes._manager import LaneManager
    from laneway.lanes._records import CommandHandle, LaneStats


@attrs.frozen
class Submit:
    """Queue a command in this lane; the reply is its :class:`CommandHandle`.

    ``options`` are :meth:`LaneManager.submit_nowait`'s keyword options
    (priority, caller, timeout, retry, deadline_s, preemptible, max_wait, command_id).
    """

    target: str | Callable[..., Any]
    params: Mapping[str, Any] | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Cancel:
    """Cancel a command of this lane by id; the reply is True if it was still unfinished."""

    command_id: str
    reason: str = "cancelled by caller"


@attrs.frozen
class SetMaxConcurrent:
    """Change the lane's max concurrency live."""

    n: int


@attrs.frozen
class SetRateLimit:
    """Replace the lane's rate limit (None removes it)."""

    limit: RateLimit | None


@attrs.frozen
class Pause:
    """Start nothing more from this lane until :class:`Resume`."""


@attrs.frozen
class Resume:
    """Undo :class:`Pause`."""


@attrs.frozen
class GetStats:
    """The reply is the lane's :class:`LaneStats`."""


class LaneActor(Actor):
    """One named lane's actor. Reach it with ``orch.lanes.lane_ref(name)`` or ``orch.lookup("lanes/<name>")``.

    Example:
        >>> ref = orch.lanes.lane_ref("query")                              # doctest: +SKIP
        >>> handle = ref.ask(Submit("search", {"q": "otp"}), timeout=5)     # doctest: +SKIP
        >>> ref.tell(SetMaxConcurrent(20)); ref.ask(GetStats()).pending     # doctest: +SKIP
    """

    # Lane errors (full, busy, unknown tool, bad parameters) are the sender's: reply them.
    reply_errors = Actor.reply_errors + (LaneError,)

    def __init__(self, manager: LaneManager, lane: str) -> None:
        self._manager = manager
        self._lane = lane

    @handler(Submit)
    def _submit(self, msg: Submit) -> CommandHandle:
        return self._manager.submit_nowait(self._lane, msg.target, msg.params, **msg.options)

    @handler(Cancel)
    def _cancel(self, msg: Cancel) -> bool:
        return self._manager.cancel(msg.command_id, msg.reason)

    @handler(SetMaxConcurrent)
    def _set_max(self, msg: SetMaxConcurrent) -> None:
        self._manager.set_max_concurrent(self._lane, msg.n)

    @handler(SetRateLimit)
    def _set_rate(self, msg: SetRateLimit) -> None:
        self._manager.set_rate_limit(self._lane, msg.limit)

    @handler(Pause)
    def _pause(self, msg: Pause) -> None:
        self._manager.pause(self._lane)

    @handler(Resume)
    def _resume(self, msg: Resume) -> None:
        self._manager.resume(self._lane)

    @handler(GetStats)
    def _stats(self, msg: GetStats) -> LaneStats:
        return self._manager.lane_stats(self._lane)
