"""The scheduler's mutable records: a command, one run (attempt) of it, and a parallel group.

Private: only the lane manager touches them, under its scheduler lock.
"""

from __future__ import annotations

import collections
import concurrent.futures._base as _cf
import threading
from typing import TYPE_CHECKING, Any

from laneway.core import LazyFuture
from laneway.errors import LanewayTimeout
from laneway.lanes._records import CommandState
from laneway.core import CancellationToken

if TYPE_CHECKING:
    from laneway.lanes._lane import Lane
    from laneway.core import RetryPolicy, TimerHandle
    from laneway.lanes._tools import ToolSpec


_FINISHED = _cf.FINISHED
_DONE = (_cf.CANCELLED, _cf.CANCELLED_AND_NOTIFIED, _cf.FINISHED)
#: ``new_future(CommandFuture)``: an instance whose fields are all the class-level defaults (no __init__).
new_future = object.__new__


class CommandFuture(LazyFuture[Any]):
    """A command's future: cheap to make and to settle while nobody waits (see :class:`LazyFuture`).

    :meth:`prepare_wait` arms a bare lock that settling releases, for a caller
    that will block on the result (``LaneManager.call``): armed before the run
    can start, so that the caller, once the worker is woken, goes straight to
    sleep on it instead of building a condition and a waiter while the woken
    worker waits for the GIL.
    """

    _timeout_error = LanewayTimeout
    wait_gate: threading.Lock | None = None  # set by prepare_wait, released by the first settle or cancel
    def __init__(self, command_id: str) -> None:
        # Every other field starts at LazyFuture's class-level default. A Command makes its
        # future without this frame (new_future, then command_id set).
        self.command_id = command_id

    @property
    def _what(self) -> str:  # type: ignore[override]
        return f"result of command {self.command_id}"

    def prepare_wait(self) -> None:
        """Arm the lock :meth:`wait_prepared` sleeps on; call before the command can settle."""
        gate = threading.Lock()
        gate.acquire()
        self.wait_gate = gate

    def settle(self, result: Any = None, error: BaseException | None = None) -> bool:
        done = super().settle(result, error)
        if done:
            gate = self.wait_gate
            if gate is not None:
                gate.release()  # last: the waiter runs as soon as it gets the GIL
        return done

    def settle_and_wake(self, result: Any) -> bool:
        """Set ``result`` and wake the caller sleeping on the armed gate, from under the settler's lock.

        False if someone else waits on this future too: then settle it the usual way after the
        lock (:meth:`LazyFuture.settle_unwatched` says why), and release the gate after that.
        """
        if not self.settle_unwatched(result):
            return False
        gate = self.wait_gate
        if gate is not None:
            try:
                gate.release()
            except RuntimeError:  # released once already (a cancel does): the settler's work still goes on
                pass
        return True

    def cancel(self) -> bool:
        cancelled = super().cancel()
        gate = self.wait_gate
        if cancelled and gate is not None and gate.locked():
            gate.release()
        return cancelled

    def wait_prepared(self, timeout: float | None) -> Any:
        """The result, sleeping on the lock armed by :meth:`prepare_wait` up to ``timeout`` s.

        Raises:
            LanewayTimeout: no result in time.
            Exception: what the command failed with.
        """
        gate = self.wait_gate
        if gate is None:
            return self.get(timeout)
        if self._state not in _DONE:
            if not gate.acquire(True, -1 if timeout is None else max(0.0, timeout)) and self._state not in _DONE:
                raise self._timeout_error(f"no {self._what} within {timeout}s")
        if self._state is _FINISHED and self._exception is None:
            return self._result  # the common case, without get's and result's frames
        return self.get(0)


class Command:
    """One submitted unit of work and its bookkeeping across attempts.

    Fields most commands never change from their defaults are class attributes, not
    ``__slots__``: a submit then stores 14 fields instead of 24 (and an instance
    dict is as fast to read as a slot in CPython 3.11).
    """

    seq = 0  # the lane queue's FIFO order; set when queued
    state = CommandState.QUEUED
    queued = True  # in a queue structure right now (the queue's validity check reads it)
    attempts = 0
    run: Run | None = None
    group: Group | None = None  # member of a parallel group
    batch: Group | None = None  # the queue placeholder of a parallel group
    timers: list[TimerHandle] | None = None  # made by add_timer: most commands never get one

    def __init__(self, id: str, lane: Lane, spec: ToolSpec, params: dict[str, Any], caller: str, level: int,
                 timeout: float | None, retry: RetryPolicy, deadline_s: float | None, preemptible: bool,
                 now: float, durable: bool, named: bool) -> None:
        self.id = id
        self.lane = lane
        self.spec = spec
        self.params = params
        self.caller = caller
        self.level = self.base_level = level
        self.timeout = timeout
        self.retry = retry
        self.deadline_s = deadline_s
        self.preemptible = preemptible
        self.submitted_at = self.enqueued_at = now
        self.future = future = new_future(CommandFuture)  # CommandFuture(id) without its __init__ frame
        future.command_id = id
        self.durable = durable  # its record lives in the manager's store until it ends
        self.named = named  # its tool is registered by name (so a store or a dead letter can name it)

    def __repr__(self) -> str:
        return f"<Command {self.id} {self.spec.name} in {self.lane.name} {self.state.value}>"

    def add_timer(self, timer: TimerHandle) -> None:
        if self.timers is None:
            self.timers = [timer]
        else:
            self.timers.append(timer)

    def cancel_timers(self) -> None:
        if self.timers:
            for t in self.timers:
                t.cancel()
        self.timers = None

    def payload(self, *, with_fn: bool = False) -> dict[str, Any]:
        """What the store (tool by name only) and the dead-letter queue keep to run it again.

        ``with_fn`` adds the function itself for tools not registered by name,
        so a dead letter of a plain callable can still be re-submitted.
        """
        return {
            "fn": self.spec.fn if with_fn and not self.named else None,
            "id": self.id,
            "lane": self.lane.name,
            "tool": self.spec.name,
            "module": self.spec.module,
            "params": self.params,
            "caller": self.caller,
            "priority": self.base_level,
            "timeout": self.timeout,
            "retry": self.retry,
            "deadline_s": self.deadline_s,
            "preemptible": self.preemptible,
            "attempts": self.attempts,
        }


class Run(CancellationToken):
    """One attempt of a command; holds a lane slot and a worker slot until the tool returns.

    It is its own cancellation token (the one its tool sees): one object per
    attempt instead of two. Its fields and the token's start at class-level
    defaults, so a run is made by setting three.
    """

    superseded = False  # its outcome no longer decides the command (timed out, cancelled, preempted)
    requeue = False  # preempted with REQUEUE: queue the command again when this run ends
    task: Any = None  # the asyncio task of an async tool
    ended = False
    #: Lane slots (and workers) its end frees: 1, or 0 in a chain (see ``LaneCore.fill_lane_locked``), whose
    #: runs one thread runs one after another on one slot, which only the chain's last run frees.
    slot = 1

    def __init__(self, cmd: Command, attempt: int, now: float) -> None:
        self.cmd = cmd
        self.attempt = attempt
        self.started_at = now

    def __repr__(self) -> str:
        return f"<Run {self.cmd.id} attempt {self.attempt} {'cancelled: ' + self.reason if self._cancelled else 'active'}>"

    @property
    def token(self) -> CancellationToken:
        """The run's cancellation token: the run itself."""
        return self


class Group:
    """Members of one ``execute_parallel`` call: they run together, up to ``max_concurrent`` at once."""

    __slots__ = ("pending", "max_concurrent", "outstanding")

    def __init__(self, max_concurrent: int) -> None:
        self.pending: collections.deque[Command] = collections.deque()
        self.max_concurrent = max_concurrent
        self.outstanding = 0  # members not yet completed, failed or cancelled; the group holds its lane until 0
