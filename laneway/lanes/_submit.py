"""Submitting commands: resolution and checks before anything runs, backpressure, queueing, batches."""

from __future__ import annotations

import time
import weakref
from threading import Lock
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, overload

import attrs

from laneway.core import RetryPolicy
from laneway.errors import (
    ConfigError,
    LaneFull,
    LaneNotFound,
    ParallelNotAllowed,
    ToolNotFound,
)
from laneway.lanes._command import Command, CommandFuture, Group
from laneway.lanes._config import SESSION_PREFIX, Priority, as_priority
from laneway.lanes._records import CommandHandle
from laneway.lanes._tools import ToolRegistry, ToolSpec, make_spec

if TYPE_CHECKING:
    from laneway.lanes._core import LaneCore
    from laneway.lanes._lane import Lane

#: ``SubmitOptions.timeout`` when the caller gave none: the tool's, else the lane's.
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()
# An enum call and a name lookup per submitted event cost more than the rest of its fields.
_LEVEL_NAMES = {int(p): p.name.lower() for p in Priority}
_NORMAL = int(Priority.NORMAL)

_new_tuple = tuple.__new__


def _check_level(_: object, __: attrs.Attribute, value: Any) -> None:
    if value is not None:
        as_priority(value)


def _check_positive(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value is not UNSET and (type(value) not in (int, float) or value <= 0):
        raise ConfigError(f"{attribute.name} must be a number > 0 or None, got {value!r}")


def _check_retry(_: object, __: attrs.Attribute, value: Any) -> None:
    if value is not None and not isinstance(value, RetryPolicy):
        raise ConfigError(f"retry must be a RetryPolicy, got {value!r}")


def _check_id(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (type(value) is not str or not value):
        raise ConfigError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _check_caller(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if value != "default" and (type(value) is not str or not value):
        raise ConfigError(f"caller must be a non-empty string, got {value!r}")


@attrs.frozen
class SubmitOptions:
    """How one command is to be run; checked once, when built (see :meth:`LaneManager.submit` for each)."""

    priority: Priority | int | None = attrs.field(default=None, validator=_check_level)
    caller: str = attrs.field(default="default", validator=_check_caller)
    timeout: float | None = attrs.field(default=UNSET, validator=_check_positive)
    retry: RetryPolicy | None = attrs.field(default=None, validator=_check_retry)
    deadline_s: float | None = attrs.field(default=None, validator=_check_positive)
    preemptible: bool | None = None
    max_wait: float | None = None
    command_id: str | None = attrs.field(default=None, validator=_check_id)


#: Every option left to its default: what most submits use, built once.
DEFAULT_OPTIONS = SubmitOptions()


class Submitter:
    """Turns a submit into a queued command, through the core and the callbacks it is given.

    Args:
        core: the lanes' core (queues, the outbox).
        tools: the registry names resolve in.
        session_lane_locked: ``(session_id)``, under the core's lock: the session's lane, opened if needed.
        new_id: returns a fresh command id.
        cancel_fn: what a handle's ``cancel`` calls, ``(command_id, reason)``.
    """

    def __init__(self, core: LaneCore, tools: ToolRegistry, *, session_lane_locked: Callable[[str], Lane],
                 new_id: Callable[[], str], cancel_fn: Callable[[str, str], bool]) -> None:
        self._core = core
        self._tools = tools
        self._find = tools.find
        self._session_lane_locked = session_lane_locked
        self._new_id = new_id
        self._cancel_fn = cancel_fn
        self._anon_specs: weakref.WeakKeyDictionary[Callable[..., Any], ToolSpec] = weakref.WeakKeyDictionary()

    @overload
    def submit(self, lane_name: str, target: Any, params: Mapping[str, Any] | None, opts: SubmitOptions,
               block: float, *, attempts: int = ..., unbounded: bool = ...,
               watch: Literal[False] = ...) -> CommandHandle: ...

    @overload
    def submit(self, lane_name: str, target: Any, params: Mapping[str, Any] | None, opts: SubmitOptions,
               block: float, *, attempts: int = ..., unbounded: bool = ..., watch: Literal[True]) -> CommandFuture: ...

    def submit(self, lane_name: str, target: Any, params: Mapping[str, Any] | None, opts: SubmitOptions,
               block: float, *, attempts: int = 0, unbounded: bool = False,
               watch: bool = False) -> CommandHandle | CommandFuture:
        """Queue one command; wait up to ``block`` s for room (``unbounded``: never refuse for room).

        ``watch``: the caller blocks on the result next: its future's wait is armed
        (:meth:`CommandFuture.prepare_wait`) before the run can start, and the future
        is returned in place of a handle (nobody else would see the handle).
        """
        core = self._core
        # The common case (a tool by name, a dict of params, a named lane) without the helpers' calls.
        spec = self._find(target) if type(target) is str else None
        if spec is not None:
            named = True
        else:
            spec, named = self.resolve(target)
        if type(params) is dict:
            spec.validate(params)
            checked = params.copy()
        else:
            checked = self.check_params(spec, params)
        lane = core.lanes.get(lane_name)
        if lane is None:
            lane = self.lane_for(lane_name)
        if (watch and not lane.queue.size and lane.active < lane.config.max_concurrency and not spec.is_async
                and not spec.cpu_bound):
            # The caller blocks on this run next, which likely starts at once (read without the lock: a
            # hint): a worker thread comes up meanwhile, and the run is handed to it at launch.
            core.executors.wake_early()
        if opts is DEFAULT_OPTIONS:
            # _new_command's defaults, inline (most submits): the tool's, else the lane's.
            level = spec.priority
            timeout = spec.timeout
            config = lane.config
            cmd = Command(self._new_id(), lane, spec, checked, "default", _NORMAL if level is None else int(level),
                          config.timeout_s if timeout is None else timeout, config.retry, None, spec.preemptible,
                          core.now(), named and core.pending is not None, named)
        else:
            cmd = self._new_command(lane, spec, checked, named, opts)
        durable = cmd.durable
        if attempts:
            cmd.attempts = attempts
        if opts.command_id is not None and cmd.id in core.commands:  # generated ids are unique
            raise ConfigError(f"command id {cmd.id!r} is already in use")
        tell = core.events.active and core.events.wants("queue.command.submitted")
        if durable or tell:
            self._announce_submitted([cmd], tell)
        if watch:
            # CommandFuture.prepare_wait, inline (a frame less per call), and before the command is
            # queued: enqueue_locked may hand the run to an idle thread, and wake it, at once.
            gate = Lock()
            gate.acquire()
            cmd.future.wait_gate = gate
        deadline = None
        box, lock = core.box, core.lock
        try:
            while True:
                # The outbox's bare-lock protocol (see Outbox): two Python frames less than
                # ``with box:``; nothing below enters the outbox itself.
                if not lock.acquire(False):
                    box.acquire_contended()
                try:
                    if not core.accepting:
                        core.check_accepting_locked()
                    lane = cmd.lane
                    if core.lanes.get(lane.name) is not lane:
                        lane = self._attach_lane_locked(cmd)
                    if unbounded or lane.pending < lane.config.max_pending:
                        position, eta = core.enqueue_locked(cmd, opts.max_wait)
                        handle: CommandHandle | CommandFuture
                        if watch:
                            handle = cmd.future
                        else:
                            # CommandHandle(...) without the NamedTuple's __new__ frame (every submit makes one).
                            handle = _new_tuple(CommandHandle, (cmd.id, lane.name, position, eta, cmd.future,
                                                                self._cancel_fn))
                        # in_turn: eligible as enqueue_locked's lane update found it, without asking again.
                        # holding: what would start waits for a thread that dispatches when back.
                        if cmd.queued and lane.in_turn and not core.executors.holding:
                            # Else nothing can start that could not before: only this lane changed,
                            # and it has no free slot or no work (the command started or waits for one).
                            core.dispatch_locked()
                        break
                    if block <= 0:
                        raise LaneFull(f"lane {lane.name!r} is full ({lane.config.max_pending} pending)")
                finally:
                    if box.queued:
                        box.release_and_run()
                    else:
                        lock.release()
                if deadline is None:
                    deadline = time.monotonic() + block
                core.wait_for_room(lane, deadline, block)
        except BaseException as exc:
            self._reject_submitted([cmd], exc)
            raise
        return handle

    # resolution and checks, before anything is queued --------------------------------

    def resolve(self, target: Any) -> tuple[ToolSpec, bool]:
        """The tool's spec, and whether it is registered by name (so it can be persisted)."""
        if isinstance(target, str):
            return self._tools.get(target), True
        spec = target if isinstance(target, ToolSpec) else getattr(target, "__laneway_tool__", None)
        if isinstance(spec, ToolSpec):
            try:
                return spec, self._tools.get(spec.name).fn is spec.fn
            except ToolNotFound:
                return spec, False
        if not callable(target):
            raise ConfigError(f"a command's target must be a tool name or a callable, got {target!r}")
        try:
            spec = self._anon_specs.get(target)
        except TypeError:  # not weak-referenceable
            return make_spec(target), False
        if spec is None:
            spec = self._anon_specs[target] = make_spec(target)
        return spec, False

    @staticmethod
    def check_params(spec: ToolSpec, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if params is None:
            params = {}
        elif type(params) is not dict and not isinstance(params, Mapping):
            raise ConfigError(f"params must be a mapping of parameter names to values, got {type(params).__name__}")
        spec.validate(params)
        return dict(params)

    def lane_for(self, name: str) -> Lane:
        lanes = self._core.lanes
        lane = lanes.get(name)
        if lane is not None:
            return lane
        if isinstance(name, str) and name.startswith(SESSION_PREFIX) and len(name) > len(SESSION_PREFIX):
            with self._core.lock:
                return self._session_lane_locked(name[len(SESSION_PREFIX):])
        raise LaneNotFound(f"no lane named {name!r}; lanes are {sorted(n for n in lanes if not n.startswith(SESSION_PREFIX))}")

    def _new_command(self, lane: Lane, spec: ToolSpec, params: dict[str, Any], named: bool,
                     opts: SubmitOptions) -> Command:
        # The options were checked when built; only the defaults that depend on the tool or lane remain.
        level = opts.priority
        if level is None:
            level = spec.priority if spec.priority is not None else Priority.NORMAL
        timeout = opts.timeout
        if timeout is UNSET:
            timeout = spec.timeout if spec.timeout is not None else lane.config.timeout_s
        retry = opts.retry
        if retry is None:
            retry = lane.config.retry
        preemptible = opts.preemptible
        return Command(self._new_id() if opts.command_id is None else opts.command_id, lane, spec, params,
                       opts.caller, int(level), timeout, retry, opts.deadline_s,
                       spec.preemptible if preemptible is None else bool(preemptible), self._core.now(),
                       named and self._core.pending is not None, named)

    def _announce_submitted(self, cmds: list[Command], tell: bool | None = None) -> None:
        """Persist (before queueing, so a crash cannot lose an accepted command), then publish."""
        pending = self._core.pending
        saved: list[Command] = []
        try:
            for cmd in cmds if pending is not None else ():
                if cmd.durable:
                    pending.save(cmd)  # type: ignore[union-attr]
                    saved.append(cmd)
        except BaseException:
            for cmd in saved:
                pending.delete(cmd.id)  # type: ignore[union-attr]
            raise
        events = self._core.events
        if events.wants("queue.command.submitted") if tell is None else tell:
            for cmd in cmds:
                events.publish_dict("queue.command.submitted", cmd.lane.name, {
                    "command_id": cmd.id, "caller": cmd.caller, "tool": cmd.spec.name,
                    "priority": _LEVEL_NAMES[cmd.level]})

    def _reject_submitted(self, cmds: list[Command], error: BaseException) -> None:
        core = self._core
        for cmd in cmds:
            if cmd.durable:
                core.pending.delete(cmd.id)  # type: ignore[union-attr]
            if core.events.active:
                core.events.publish("queue.command.rejected", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                    error=repr(error))

    def _attach_lane_locked(self, cmd: Command) -> Lane:
        """The command's lane, re-opened if it was a session lane cleaned up since it was looked up."""
        lane = cmd.lane
        if self._core.lanes.get(lane.name) is not lane:
            if lane.session_id is None:
                raise LaneNotFound(f"lane {lane.name!r} was removed")
            lane = cmd.lane = self._session_lane_locked(lane.session_id)
        return lane

    # parallel batches in a session -------------------------------------------------------------

    def _prepare_call(self, call: Any) -> tuple[ToolSpec, dict[str, Any], bool]:
        target, params = (call[0], call[1] if len(call) > 1 else None) if isinstance(call, (tuple, list)) else (call, None)
        spec, named = self.resolve(target)
        return spec, self.check_params(spec, params), named

    def execute_parallel(self, session_id: str, calls: Iterable[Any], max_concurrent: int, caller: str,
                         priority: Priority | None) -> list[CommandHandle]:
        """Queue a batch that holds the session's lane like one command (see :meth:`SessionLane.execute_parallel`)."""
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        opts = SubmitOptions(priority=priority, caller=caller)
        prepared = [self._prepare_call(c) for c in calls]
        if not prepared:
            return []
        refused = [spec.name for spec, _, _ in prepared if not spec.parallel_allowed]
        if refused:
            raise ParallelNotAllowed(f"not marked parallel_allowed, so none of the batch ran: {', '.join(refused)}")
        lane = self.lane_for(SESSION_PREFIX + session_id)
        members = [self._new_command(lane, spec, params, named, opts) for spec, params, named in prepared]
        self._announce_submitted(members)
        core = self._core
        try:
            with core.box:
                core.check_accepting_locked()
                lane = self._session_lane_locked(session_id)
                if lane.pending + len(members) > lane.config.max_pending:
                    raise LaneFull(f"lane {lane.name!r} cannot take {len(members)} more commands (max_pending)")
                position = lane.queue.estimate(caller, min(c.level for c in members)) + len(lane.preemptors)
                eta = lane.eta(position)
                group = Group(max_concurrent)
                group.outstanding = len(members)
                for cmd in members:
                    cmd.lane, cmd.group = lane, group
                    # In the group's own queue, not the lane's: a cancel must not take it out of
                    # the lane's queue counts (which would strand the commands queued after the batch).
                    cmd.queued = False
                    lane.add_waiting(cmd)
                    core.commands[cmd.id] = cmd
                    group.pending.append(cmd)
                # One queue entry stands for the whole batch, so it takes the lane like one command.
                placeholder = Command(f"{members[0].id}-batch", lane, members[0].spec, {}, caller,
                                      min(c.level for c in members), None, members[0].retry, None, False,
                                      core.clock.now(), False, False)
                placeholder.batch = group
                core.push_batch_locked(placeholder)
                core.dispatch_locked()
        except BaseException as exc:
            self._reject_submitted(members, exc)
            raise
        return [CommandHandle(c.id, lane.name, position, eta, c.future, cancel_fn=self._cancel_fn) for c in members]
