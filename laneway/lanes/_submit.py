"""Submitting commands: resolution and checks before anything runs, backpressure, queueing, batches."""

from __future__ import annotations

import asyncio
import time
import weakref
from functools import partial
from collections.abc import Mapping
from typing import Any, Callable, Iterable

from laneway.errors import (
    ConfigError,
    LaneBusy,
    LaneFull,
    LaneNotFound,
    LaneShutdown,
    LanewayTimeout,
    ParallelNotAllowed,
    ToolNotFound,
)
from laneway.lanes._command import Command, Group
from laneway.lanes._config import SESSION_PREFIX, GiveUp, Priority, as_priority
from laneway.lanes._lane import Lane
from laneway.lanes._records import CommandHandle, CommandState
from laneway.core import RetryPolicy
from laneway.lanes._sessions import SessionLanes
from laneway.lanes._tools import ToolRegistry, ToolSpec, make_spec

_UNSET: Any = object()
# An enum call and a name lookup per submitted event cost more than the rest of its fields.
_LEVEL_NAMES = {int(p): p.name.lower() for p in Priority}


class Submitter(SessionLanes):
    """The submit side of the lane manager."""

    tools: ToolRegistry
    _anon_specs: weakref.WeakKeyDictionary[Callable[..., Any], ToolSpec]

    def submit(self, lane: str, target: str | Callable[..., Any] | ToolSpec, params: Mapping[str, Any] | None = None,
               *, priority: Priority | None = None, caller: str = "default", timeout: float | None = _UNSET,
               retry: RetryPolicy | None = None, deadline_s: float | None = None, preemptible: bool | None = None,
               max_wait: float | None = None, block_timeout: float | None = None,
               command_id: str | None = None) -> CommandHandle:
        """Queue a command and return at once with its id, queue position, ETA and future.

        Args:
            lane: a lane name, or ``"session:<id>"`` (the session lane is created on demand).
            target: a registered tool's name, a ``@tool`` function, or any callable
                (plain callables run, but are not persisted in a store).
            params: keyword arguments for the tool, checked against its parameters now.
            priority: level inside the lane (default: the tool's, else NORMAL).
            caller: who submits; callers of a lane are served round-robin.
            timeout: seconds per attempt (default: the tool's, else the lane's; None: no limit).
            retry: retry policy (default: the lane's).
            deadline_s: soft deadline in seconds; the command is promoted one level at
                each of the lane's ``deadline_boosts`` (75/50/25 % of it left).
            preemptible: higher-priority work arriving at a full lane may cancel this
                command's run (default: the tool's ``preemptible``).
            max_wait: refuse at once with ``LaneBusy`` if the estimated wait is longer.
            block_timeout: seconds to wait for room when the lane is full (default: the
                orchestrator's ``ask_timeout``), then ``LaneFull``.
            command_id: your own unique id (default: generated).

        Raises:
            ToolNotFound, ToolParameterError: bad tool or parameters (nothing queued).
            LaneNotFound, LaneFull, LaneBusy, LaneShutdown: the lane cannot take it.

        Example:
            >>> h = orch.lanes.submit("query", "search", {"q": "otp"}, priority=Priority.HIGH)  # doctest: +SKIP
            >>> h.position, h.eta_s, h.result(timeout=10)                                      # doctest: +SKIP
        """
        block = self._orch.ask_timeout if block_timeout is None else block_timeout
        return self._submit(lane, target, params, priority, caller, timeout, retry, deadline_s, preemptible,
                            max_wait, block, command_id)

    def submit_nowait(self, lane: str, target: str | Callable[..., Any] | ToolSpec,
                      params: Mapping[str, Any] | None = None, *, priority: Priority | None = None,
                      caller: str = "default", timeout: float | None = _UNSET, retry: RetryPolicy | None = None,
                      deadline_s: float | None = None, preemptible: bool | None = None,
                      max_wait: float | None = None, command_id: str | None = None) -> CommandHandle:
        """Like :meth:`submit`, but raise ``LaneFull`` at once instead of waiting for room."""
        return self._submit(lane, target, params, priority, caller, timeout, retry, deadline_s, preemptible,
                            max_wait, 0.0, command_id)

    def call(self, lane: str, target: str | Callable[..., Any] | ToolSpec, params: Mapping[str, Any] | None = None,
             *, wait_timeout: float | None = None, on_give_up: GiveUp = GiveUp.WITHDRAW, **options: Any) -> Any:
        """Submit and block for the result (``wait_timeout`` default: the orchestrator's ``ask_timeout``).

        Args:
            on_give_up: what happens to the command if no result comes within
                ``wait_timeout``: :attr:`GiveUp.WITHDRAW` (default) cancels it (a
                queued command never runs, a running one has its token cancelled;
                it counts as cancelled, nothing is dead-lettered and a persisted
                record is deleted); :attr:`GiveUp.KEEP` lets it go on unobserved.
            options: as for :meth:`submit`.

        Raises:
            LanewayTimeout: no result within ``wait_timeout``.
            Exception: what the command failed with.
        """
        if on_give_up is not GiveUp.WITHDRAW and not isinstance(on_give_up, GiveUp):
            raise ConfigError(f"on_give_up must be a GiveUp (WITHDRAW or KEEP), got {on_give_up!r}")
        handle = self.submit(lane, target, params, **options)
        limit = self._orch.ask_timeout if wait_timeout is None else wait_timeout
        try:
            return handle.result(limit)
        except LanewayTimeout:
            if on_give_up is GiveUp.WITHDRAW:
                self._give_up(handle, f"the caller stopped waiting after {limit}s")
            raise

    async def call_async(self, lane: str, target: str | Callable[..., Any] | ToolSpec,
                         params: Mapping[str, Any] | None = None, *, wait_timeout: float | None = None,
                         on_give_up: GiveUp = GiveUp.WITHDRAW, **options: Any) -> Any:
        """``await`` form of :meth:`call`; a full lane raises ``LaneFull`` instead of blocking the loop.

        The caller also gives up when the awaiting task is cancelled; ``on_give_up``
        decides what happens to the command then, as for :meth:`call`.
        """
        if on_give_up is not GiveUp.WITHDRAW and not isinstance(on_give_up, GiveUp):
            raise ConfigError(f"on_give_up must be a GiveUp (WITHDRAW or KEEP), got {on_give_up!r}")
        handle = self.submit_nowait(lane, target, params, **options)
        wrapped = asyncio.wrap_future(handle.future)
        limit = self._orch.ask_timeout if wait_timeout is None else wait_timeout
        try:
            done, _ = await asyncio.wait((wrapped,), timeout=limit)
        except asyncio.CancelledError:
            if on_give_up is GiveUp.WITHDRAW:
                self._abandon(wrapped, handle, "the awaiting task was cancelled")
            raise
        if not done:
            if on_give_up is GiveUp.WITHDRAW:
                self._abandon(wrapped, handle, f"the caller stopped waiting after {limit}s")
            raise LanewayTimeout(f"no result of command {handle.command_id} within {limit}s")
        return wrapped.result()

    def _abandon(self, wrapped: asyncio.Future[Any], handle: CommandHandle, reason: str) -> None:
        # Nobody reads the wrapper's CommandCancelled: retrieve it so asyncio does not log it as lost.
        wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._give_up(handle, reason)

    def _give_up(self, handle: CommandHandle, reason: str) -> None:
        """Withdraw the command its only waiter stopped waiting for (no-op once it ended)."""
        with self._box.locked():
            cmd = self._commands.get(handle.command_id)
            if cmd is None or cmd.future is not handle.future:  # ended (its id may even be reused)
                return
            self._cancel_locked(cmd, f"withdrawn: {reason}")
            self._dispatch_locked()

    # resolution and checks, before anything is queued --------------------------------

    def _resolve(self, target: Any) -> tuple[ToolSpec, bool]:
        """The tool's spec, and whether it is registered by name (so it can be persisted)."""
        if isinstance(target, str):
            return self.tools.get(target), True
        spec = target if isinstance(target, ToolSpec) else getattr(target, "__laneway_tool__", None)
        if isinstance(spec, ToolSpec):
            try:
                return spec, self.tools.get(spec.name).fn is spec.fn
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
    def _check_params(spec: ToolSpec, params: Mapping[str, Any] | None) -> dict[str, Any]:
        if params is None:
            params = {}
        elif type(params) is not dict and not isinstance(params, Mapping):
            raise ConfigError(f"params must be a mapping of parameter names to values, got {type(params).__name__}")
        spec.validate(params)
        return dict(params)

    def _lane_for(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is not None:
            return lane
        if isinstance(name, str) and name.startswith(SESSION_PREFIX) and len(name) > len(SESSION_PREFIX):
            with self._lock:
                return self._session_lane_locked(name[len(SESSION_PREFIX):])
        raise LaneNotFound(f"no lane named {name!r}; lanes are {sorted(n for n in self._lanes if not n.startswith(SESSION_PREFIX))}")

    def _new_command(self, lane: Lane, spec: ToolSpec, params: dict[str, Any], durable: bool,
                     priority: Priority | None = None, caller: str = "default", timeout: float | None = _UNSET,
                     retry: RetryPolicy | None = None, deadline_s: float | None = None,
                     preemptible: bool | None = None, command_id: str | None = None) -> Command:
        # Each check is skipped for the default, so the common submit pays for none of them.
        if priority is None:
            level = spec.priority if spec.priority is not None else Priority.NORMAL
        else:
            level = as_priority(priority)
        if timeout is _UNSET:
            timeout = spec.timeout if spec.timeout is not None else lane.config.timeout_s
        elif timeout is not None and (type(timeout) not in (int, float) or timeout <= 0):
            raise ConfigError(f"timeout must be a number > 0 or None, got {timeout!r}")
        if retry is None:
            retry = lane.config.retry
        elif not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, got {retry!r}")
        if deadline_s is not None and (type(deadline_s) not in (int, float) or deadline_s <= 0):
            raise ConfigError(f"deadline_s must be a number > 0 or None, got {deadline_s!r}")
        if caller != "default" and (type(caller) is not str or not caller):
            raise ConfigError(f"caller must be a non-empty string, got {caller!r}")
        if command_id is None:
            command_id = self._new_id()  # type: ignore[attr-defined]
        elif type(command_id) is not str or not command_id:
            raise ConfigError(f"command_id must be a non-empty string, got {command_id!r}")
        cmd = Command(command_id, lane, spec, params, caller, int(level), timeout, retry, deadline_s,
                      spec.preemptible if preemptible is None else bool(preemptible), self._clock.now(),
                      durable and self._pending is not None)
        cmd.named = durable
        return cmd

    def _announce_submitted(self, cmds: list[Command]) -> None:
        """Persist (before queueing, so a crash cannot lose an accepted command), then publish."""
        saved: list[Command] = []
        try:
            for cmd in cmds if self._pending is not None else ():
                if cmd.durable:
                    self._pending.save(cmd)  # type: ignore[union-attr]
                    saved.append(cmd)
        except BaseException:
            for cmd in saved:
                self._pending.delete(cmd.id)  # type: ignore[union-attr]
            raise
        events = self._events
        if events.active:
            for cmd in cmds:
                events.publish_dict("queue.command.submitted", cmd.lane.name, {
                    "command_id": cmd.id, "caller": cmd.caller, "tool": cmd.spec.name,
                    "priority": _LEVEL_NAMES[cmd.level]})

    def _reject_submitted(self, cmds: list[Command], error: BaseException) -> None:
        for cmd in cmds:
            if cmd.durable:
                self._pending.delete(cmd.id)  # type: ignore[union-attr]
            if self._events.active:
                self._events.publish("queue.command.rejected", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                     error=repr(error))

    # queueing, under the lock -----------------------------------------------------------------

    def _check_accepting_locked(self) -> None:
        if not self._accepting:
            raise LaneShutdown("the lane manager is shutting down and takes no new commands")

    def _attach_lane_locked(self, cmd: Command) -> Lane:
        """The command's lane, re-opened if it was a session lane cleaned up since it was looked up."""
        lane = cmd.lane
        if self._lanes.get(lane.name) is not lane:
            if lane.session_id is None:
                raise LaneNotFound(f"lane {lane.name!r} was removed")
            lane = cmd.lane = self._session_lane_locked(lane.session_id)
        return lane

    def _wait_for_room(self, lane: Lane, deadline: float, block: float) -> None:
        """Wait (with the bare lock: no effects are queued) until the lane has room; LaneFull at ``deadline``."""
        limit = lane.config.max_pending
        with self._lock:
            self._space_waiters += 1
            try:
                while lane.pending >= lane.config.max_pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LaneFull(f"lane {lane.name!r} stayed full ({limit} pending) for {block}s")
                    self._space.wait(left)
                    self._check_accepting_locked()
            finally:
                self._space_waiters -= 1

    def _enqueue_locked(self, cmd: Command, max_wait: float | None) -> tuple[int, float | None]:
        lane = cmd.lane
        if cmd.id in self._commands:
            raise ConfigError(f"command id {cmd.id!r} is already in use")
        if lane.preemptible_runs and lane.active >= lane.cap and self._preempt_locked(cmd):
            position, eta = 0, 0.0
        else:
            position = lane.queue.estimate(cmd.caller, cmd.level) + len(lane.preemptors)
            if lane.group is not None:
                position += len(lane.group.pending)
            eta = lane.eta(position)
            if max_wait is not None and eta is not None and eta > max_wait:
                raise LaneBusy(f"lane {lane.name!r}: estimated wait {eta:.3f}s ({position} ahead) exceeds max_wait {max_wait}s")
            cmd.seq = next(self._seq)
            cmd.queued = True
            lane.queue.push(cmd)
        lane.add_waiting(cmd)
        self._commands[cmd.id] = cmd
        if cmd.deadline_s is not None:
            for fraction in lane.config.deadline_boosts:
                cmd.add_timer(self._clock.call_later(cmd.deadline_s * (1 - fraction), partial(self._boost, cmd)))
        self._lane_changed_locked(lane)
        return position, eta

    def _boost(self, cmd: Command) -> None:
        with self._box.locked():
            if cmd.state is not CommandState.QUEUED or not cmd.queued or cmd.level == 0:
                return
            cmd.lane.queue.promote(cmd, cmd.level - 1)
            self._emit("queue.command.boosted", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                       priority=Priority(cmd.level).name.lower())

    def _submit(self, lane_name: str, target: Any, params: Mapping[str, Any] | None, priority: Priority | None,
                caller: str, timeout: float | None, retry: RetryPolicy | None, deadline_s: float | None,
                preemptible: bool | None, max_wait: float | None, block: float, command_id: str | None,
                attempts: int = 0, unbounded: bool = False) -> CommandHandle:
        # Positional all the way down: keyword packing costs a microsecond per layer on the hot path.
        spec, durable = self._resolve(target)
        checked = self._check_params(spec, params)
        cmd = self._new_command(self._lane_for(lane_name), spec, checked, durable, priority, caller, timeout, retry,
                                deadline_s, preemptible, command_id)
        cmd.attempts = attempts
        if cmd.id in self._commands:
            raise ConfigError(f"command id {cmd.id!r} is already in use")
        if self._pending is not None or self._events.active:
            self._announce_submitted([cmd])
        deadline = None
        try:
            while True:
                with self._box.locked():
                    self._check_accepting_locked()
                    lane = self._attach_lane_locked(cmd)
                    if unbounded or lane.pending < lane.config.max_pending:
                        position, eta = self._enqueue_locked(cmd, max_wait)
                        self._dispatch_locked()
                        break
                    if block <= 0:
                        raise LaneFull(f"lane {lane.name!r} is full ({lane.config.max_pending} pending)")
                if deadline is None:
                    deadline = time.monotonic() + block
                self._wait_for_room(lane, deadline, block)
        except BaseException as exc:
            self._reject_submitted([cmd], exc)
            raise
        return CommandHandle(cmd.id, lane.name, position, eta, cmd.future, cancel_fn=self._cancel_fn)  # type: ignore[attr-defined]

    # parallel batches in a session -------------------------------------------------------------

    def _prepare_call(self, call: Any) -> tuple[ToolSpec, dict[str, Any], bool]:
        target, params = (call[0], call[1] if len(call) > 1 else None) if isinstance(call, (tuple, list)) else (call, None)
        spec, durable = self._resolve(target)
        return spec, self._check_params(spec, params), durable

    def _execute_parallel(self, session_id: str, calls: Iterable[Any], max_concurrent: int, caller: str,
                          priority: Priority | None) -> list[CommandHandle]:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        prepared = [self._prepare_call(c) for c in calls]
        if not prepared:
            return []
        refused = [spec.name for spec, _, _ in prepared if not spec.parallel_allowed]
        if refused:
            raise ParallelNotAllowed(f"not marked parallel_allowed, so none of the batch ran: {', '.join(refused)}")
        lane = self._lane_for(SESSION_PREFIX + session_id)
        members = [self._new_command(lane, spec, params, durable, priority, caller)
                   for spec, params, durable in prepared]
        self._announce_submitted(members)
        try:
            with self._box.locked():
                self._check_accepting_locked()
                lane = self._session_lane_locked(session_id)
                if lane.pending + len(members) > lane.config.max_pending:
                    raise LaneFull(f"lane {lane.name!r} cannot take {len(members)} more commands (max_pending)")
                position = lane.queue.estimate(caller, min(c.level for c in members)) + len(lane.preemptors)
                eta = lane.eta(position)
                group = Group(max_concurrent)
                group.outstanding = len(members)
                for cmd in members:
                    cmd.lane, cmd.group = lane, group
                    lane.add_waiting(cmd)
                    self._commands[cmd.id] = cmd
                    group.pending.append(cmd)
                # One queue entry stands for the whole batch, so it takes the lane like one command.
                placeholder = Command(f"{members[0].id}-batch", lane, members[0].spec, {}, caller,
                                      min(c.level for c in members), None, members[0].retry, None, False,
                                      self._clock.now(), False)
                placeholder.batch = group
                placeholder.seq = next(self._seq)
                lane.queue.push(placeholder)
                self._lane_changed_locked(lane)
                self._dispatch_locked()
        except BaseException as exc:
            self._reject_submitted(members, exc)
            raise
        return [CommandHandle(c.id, lane.name, position, eta, c.future, cancel_fn=self._cancel_fn) for c in members]  # type: ignore[attr-defined]
