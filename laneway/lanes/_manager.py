"""The LaneManager: the public face of the lanes, composed of a core, sessions, a submitter and executors."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from functools import partial
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Iterable

import attrs

from laneway.actors import ActorRef, ChildSpec, OneForOne
from laneway.core import RetryPolicy
from laneway.errors import ConfigError, LanewayTimeout
from laneway.lanes import _controls as controls
from laneway.lanes import _lifecycle as lifecycle
from laneway.lanes._config import DEFAULT_LANES, GiveUp, LaneConfig, Priority, RateLimit, merge_lane_configs
from laneway.lanes._core import LaneCore
from laneway.lanes._lane import oldest_waiting
from laneway.lanes._lane_actor import LaneActor
from laneway.lanes._metrics import InMemoryLaneMetrics, LaneMetrics
from laneway.lanes._persist import PendingStore
from laneway.lanes._records import (
    CommandHandle,
    CommandState,
    DrainReport,
    LaneManagerStats,
    LaneStats,
    LaneStatusReport,
    ManagerStatusReport,
)
from laneway.lanes._sessions import SessionLane, Sessions
from laneway.lanes._status import manager_statistics, manager_status
from laneway.lanes._submit import DEFAULT_OPTIONS, UNSET, SubmitOptions, Submitter
from laneway.lanes._tools import ToolRegistry, ToolSpec, default_registry
from laneway.lanes._waiting import await_result, check_give_up, gave_up_on
from laneway.store import SQLiteStore

if TYPE_CHECKING:
    from laneway.actors import ActorSystem
    from laneway.core import CpuRunnerProvider, DeadLetter

log = logging.getLogger(__name__)

_FROM_ORCH: Any = object()
#: submit's options (priority ... block_timeout), each at its default.
_ALL_DEFAULT = (None, "default", UNSET, None, None, None, None, None, None)


class LaneManager:
    """Priority lanes of commands: submit a tool call to a lane, get its result.

    The scheduler always starts the next command from the highest-priority
    lane (lowest ``priority`` number) that has pending work and a free slot;
    within a lane, callers take turns and each caller's commands go by
    :class:`Priority` level, then FIFO. Sync tools run on worker threads,
    ``async def`` tools on one event loop, ``cpu_bound`` tools on the
    orchestrator's process pool. ``orch.lanes`` gives the manager with the six
    default lanes; ``orch.start_lanes(**config)`` configures it first.

    Args:
        orch: the actor system the lanes run on (clock, events, dead letters, store).
        cpu: returns the runner for ``cpu_bound`` tools (the process pool), called
            once, on the first such command; None: ``cpu_bound`` tools fail with
            :class:`~laneway.errors.ConfigError`.
        lanes: lane configs replacing the defaults (system, control, query, session, skill, prompt).
        extra_lanes: lane configs added to (or replacing same-named) ``lanes``.
        store: where pending commands persist: default the orchestrator's store,
            None for none, or a :class:`~laneway.store.Store` or SQLite path.
        tools: the registry tool names resolve in (default: a fresh one falling
            back to ``laneway.lanes.default_registry``, where ``@tool`` registers).
        max_workers: commands running at once across all lanes.
        max_sessions: open session lanes at most; idle ones are cleaned up to make room.
        session_idle_s: a session lane idle this long is removed.
        recover: queue the store's pending commands again at start (default True).
        metrics: where lanes report queue length, completions and latencies (a
            :class:`LaneMetrics`; default a fresh :class:`InMemoryLaneMetrics`).

    Example:
        >>> from laneway import Orchestrator
        >>> from laneway.lanes import ToolRegistry
        >>> with Orchestrator(name="doc") as orch:
        ...     lanes = orch.start_lanes(tools=ToolRegistry())
        ...     _ = lanes.tools.register(lambda a, b: a + b, name="add")
        ...     lanes.submit("query", "add", {"a": 2, "b": 3}).result(timeout=10)
        5
    """

    def __init__(self, orch: ActorSystem, *, cpu: CpuRunnerProvider | None = None, lanes: Iterable[LaneConfig] | None = None,
                 extra_lanes: Iterable[LaneConfig] = (), store: Any = _FROM_ORCH, tools: ToolRegistry | None = None,
                 max_workers: int = 64, max_sessions: int = 1000, session_idle_s: float = 300.0,
                 recover: bool = True, metrics: LaneMetrics | None = None) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"max_workers must be an int >= 1, got {max_workers!r}")
        if metrics is not None and not isinstance(metrics, LaneMetrics):
            raise ConfigError(f"metrics must be a LaneMetrics (recorder(lane) and reset()), got {metrics!r}")
        self._orch = orch
        self._ask_timeout = orch.ask_timeout
        #: The metrics backend the lanes report to.
        self.metrics: LaneMetrics = InMemoryLaneMetrics() if metrics is None else metrics
        self.tools = tools if tools is not None else ToolRegistry(parent=default_registry)
        if not isinstance(self.tools, ToolRegistry):
            raise ConfigError(f"tools must be a ToolRegistry, got {tools!r}")
        configs = merge_lane_configs(DEFAULT_LANES if lanes is None else lanes, extra_lanes)
        self._owned_store = None
        if store is _FROM_ORCH:
            store = orch.store
        elif isinstance(store, (str, os.PathLike)):
            store = self._owned_store = SQLiteStore(store)
        pending = PendingStore(store, shares_dead_letters=store is orch.store) if store is not None else None
        self._core = core = LaneCore(clock=orch.clock, events=orch.events, dead_letters=orch.dead_letters,
                                     max_workers=max_workers, pending=pending, cpu_pool=lifecycle.CpuOnce(cpu, self._order_before_pool))
        for c in configs.values():
            self._add_lane_locked(c)
        self._sessions = Sessions(core, max_sessions, session_idle_s, self.metrics.recorder)
        core.lane_idle_locked = self._sessions.lane_idle_locked
        id_prefix, ids = secrets.token_hex(4), itertools.count(1)
        self._submitter = Submitter(core, self.tools, session_lane_locked=self._sessions.lane_locked,
                                    new_id=partial(next, map(f"{id_prefix}-{{}}".format, ids)), cancel_fn=self.cancel)
        self._close_report: DrainReport | None = None
        orch.dead_letters.register_resubmitter("lane:", self._resubmit_letter)
        orch.on_shutdown("lanes", self.close)
        # One supervised actor per named lane (see _lane_actor.py for why commands also have a direct path).
        self._actors = orch.spawn_supervisor(
            "lanes", strategy=OneForOne(max_restarts=10, within_s=60), children=[_lane_spec(self, n) for n in configs]
        )
        #: Handles of the commands recovered from the store at start.
        self.recovered: tuple[CommandHandle, ...] = (
            lifecycle.recover(pending, self._submit_record, orch.dead_letters, orch.events) if pending is not None and recover else ())

    def __repr__(self) -> str:
        core = self._core
        pending = sum(lane.pending for lane in list(core.lanes.values()))
        return f"<LaneManager lanes={len(core.lanes)} running={core.running} pending={pending}>"

    def _order_before_pool(self) -> None:
        # Shutdown hooks run in reverse order: a pool started after the lanes would stop
        # first and fail their queued cpu-bound commands; drain the lanes before it.
        self._orch.on_shutdown("lanes before pool", self.close)

    # submitting ------------------------------------------------------------------------

    def submit(self, lane: str, target: str | Callable[..., Any] | ToolSpec, params: Mapping[str, Any] | None = None,
               *, priority: Priority | None = None, caller: str = "default", timeout: float | None = UNSET,
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
        if (priority, caller, timeout, retry, deadline_s, preemptible, max_wait, command_id,
                block_timeout) == _ALL_DEFAULT:
            # Every option at its default (most submits): straight to the submitter, one frame less
            # (and one tuple comparison in C instead of nine in Python).
            return self._submitter.submit(lane, target, params, DEFAULT_OPTIONS, self._ask_timeout)
        opts, block = self._options(priority, caller, timeout, retry, deadline_s, preemptible, max_wait, block_timeout,
                                    command_id)
        return self._submitter.submit(lane, target, params, opts, block)

    def _options(self, priority: Priority | None = None, caller: str = "default", timeout: float | None = UNSET,
                 retry: RetryPolicy | None = None, deadline_s: float | None = None, preemptible: bool | None = None,
                 max_wait: float | None = None, block_timeout: float | None = None,
                 command_id: str | None = None) -> tuple[SubmitOptions, float]:
        """:meth:`submit`'s keyword options as the submitter takes them: (options, seconds to wait for room)."""
        if (priority is None and caller == "default" and timeout is UNSET and retry is None and deadline_s is None
                and preemptible is None and max_wait is None and command_id is None):
            opts = DEFAULT_OPTIONS  # built once: most submits take every default
        else:
            opts = SubmitOptions(priority, caller, timeout, retry, deadline_s, preemptible, max_wait, command_id)
        return opts, self._ask_timeout if block_timeout is None else block_timeout

    def submit_nowait(self, lane: str, target: str | Callable[..., Any] | ToolSpec,
                      params: Mapping[str, Any] | None = None, *, priority: Priority | None = None,
                      caller: str = "default", timeout: float | None = UNSET, retry: RetryPolicy | None = None,
                      deadline_s: float | None = None, preemptible: bool | None = None,
                      max_wait: float | None = None, command_id: str | None = None) -> CommandHandle:
        """Like :meth:`submit`, but raise ``LaneFull`` at once instead of waiting for room."""
        opts = SubmitOptions(priority, caller, timeout, retry, deadline_s, preemptible, max_wait, command_id)
        return self._submitter.submit(lane, target, params, opts, 0.0)

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
        if on_give_up is not GiveUp.WITHDRAW:
            check_give_up(on_give_up)
        if options:
            opts, block = self._options(**options)
            future = self._submitter.submit(lane, target, params, opts, block, watch=True)
        else:  # every option at its default: one frame less
            future = self._submitter.submit(lane, target, params, DEFAULT_OPTIONS, self._ask_timeout, watch=True)
        # The submit armed the wait and made no handle (nobody would see it).
        limit = self._ask_timeout if wait_timeout is None else wait_timeout
        try:
            return future.wait_prepared(limit)
        except LanewayTimeout:
            gave_up_on(future.command_id, future, limit, on_give_up, self._core.cancel)
            raise

    async def call_async(self, lane: str, target: str | Callable[..., Any] | ToolSpec,
                         params: Mapping[str, Any] | None = None, *, wait_timeout: float | None = None,
                         on_give_up: GiveUp = GiveUp.WITHDRAW, **options: Any) -> Any:
        """``await`` form of :meth:`call`; a full lane raises ``LaneFull`` instead of blocking the loop.

        The caller also gives up when the awaiting task is cancelled; ``on_give_up``
        decides what happens to the command then, as for :meth:`call`.
        """
        check_give_up(on_give_up)
        handle = self.submit_nowait(lane, target, params, **options)
        return await await_result(handle, self._ask_timeout if wait_timeout is None else wait_timeout, on_give_up,
                                  self._core.cancel)

    # sessions ------------------------------------------------------------------------------

    def session(self, session_id: str, *, serial: bool = True) -> SessionLane:
        """The session's lane, created on first use (serial unless ``serial=False``).

        Session lanes take the priority, timeout, retry and limits of the
        ``"session"`` lane; ``serial`` only matters when the lane is created.

        Raises:
            LaneFull: ``max_sessions`` lanes are open and none is idle to clean up.
        """
        self._sessions.open(session_id, serial)
        return SessionLane(self, session_id, self._submitter.execute_parallel)

    def sessions(self) -> list[str]:
        """Ids of the open session lanes, least recently used first."""
        return self._sessions.ids()

    def close_session(self, session_id: str) -> bool:
        """Remove a session lane now if idle, else as soon as it is; False if there is none."""
        return self._sessions.close(session_id)

    # lanes -----------------------------------------------------------------------------

    def _add_lane_locked(self, config: LaneConfig) -> None:
        now = self._core.clock.now()
        self._core.add_lane_locked(config, lambda: self.metrics.recorder(config.name, now))

    def add_lane(self, config: LaneConfig) -> None:
        """Add a lane while running."""
        with self._core.lock:
            self._add_lane_locked(config)
        self._actors.start_child(_lane_spec(self, config.name))

    def remove_lane(self, name: str) -> None:
        """Remove an idle lane. Raises LaneError if it has pending or running commands."""
        controls.remove_idle_lane(self._core, name)
        self._actors.terminate_child(name)
        self._actors.delete_child(name)

    def lane_ref(self, name: str) -> ActorRef:
        """The actor of a named lane, for message-style callers (see :class:`LaneActor`)."""
        controls.find_lane(self._core, name)
        return self._actors.child(name)

    def lane_names(self) -> list[str]:
        """Names of the configured lanes (not session lanes), in scheduling order."""
        return controls.lane_names(self._core)

    def lane_config(self, name: str) -> LaneConfig:
        """The lane's current configuration."""
        return controls.find_lane(self._core, name).config

    def set_max_concurrent(self, lane: str, n: int) -> None:
        """Change a lane's ``max_concurrency`` live; more commands start at once if it grew.

        Running commands are never stopped when it shrinks; new ones wait until
        fewer than ``n`` run.
        """
        controls.set_max_concurrent(self._core, lane, n)

    def set_rate_limit(self, lane: str, limit: RateLimit | None) -> None:
        """Replace a lane's rate limit (None removes it); counting starts afresh."""
        controls.set_rate_limit(self._core, lane, limit)

    def pause(self, lane: str) -> None:
        """Start nothing more from this lane (it still accepts commands)."""
        controls.set_paused(self._core, lane, True)

    def resume(self, lane: str) -> None:
        """Undo :meth:`pause`."""
        controls.set_paused(self._core, lane, False)

    # commands ------------------------------------------------------------------------------

    def cancel(self, command_id: str, reason: str = "cancelled by caller") -> bool:
        """Cancel a command: a queued one never runs; a running one has its token cancelled.

        Either way its future fails at once with :class:`~laneway.errors.CommandCancelled`.
        A running sync tool keeps its slot until it returns (it should check its token).

        Returns:
            False if the command is unknown or already finished.
        """
        return self._core.cancel(command_id, reason)

    def state(self, command_id: str) -> CommandState | None:
        """Where an unfinished command is; None once it finished (or if unknown)."""
        with self._core.lock:  # a caller may wake with its result while the run's end is still being recorded
            cmd = self._core.commands.get(command_id)
        return None if cmd is None else cmd.state

    # statistics ------------------------------------------------------------------------------

    def lane_stats(self, lane: str) -> LaneStats:
        """One lane's statistics (session lanes too: ``"session:<id>"``)."""
        core = self._core
        with core.lock:
            found = controls.find_lane(core, lane)
            return found.stats(core.clock.now(), oldest_waiting(core.commands.values(), (found,)).get(found))

    def statistics(self) -> LaneManagerStats:
        """Every lane's statistics and the shared capacity."""
        return manager_statistics(self._core, len(self._sessions))

    def status(self, lane: str | None = None) -> ManagerStatusReport | LaneStatusReport:
        """What the manager (no ``lane``) or one lane (session lanes too) is doing now.

        Raises:
            LaneNotFound: no lane has that name.

        Example:
            >>> orch.lanes.status("query").status                  # doctest: +SKIP
            <LaneStatus.IDLE: 'idle'>
            >>> orch.lanes.status().lane("prompt").pending         # doctest: +SKIP
            0
        """
        if lane is not None:
            core = self._core
            with core.lock:
                return controls.find_lane(self._core, lane).status(core.accepting, core.closed)
        return manager_status(self._core)

    # dead letters and recovery ---------------------------------------------------------------

    def dead_letters(self, lane: str | None = None) -> list[DeadLetter]:
        """Dead letters of every lane (or one lane), oldest first."""
        return self._orch.dead_letters.list("lane:" if lane is None else f"lane:{lane}")

    def resubmit(self, letter_id: str) -> CommandHandle:
        """Run a dead-lettered command again (fresh attempts); the letter is removed."""
        return self._orch.dead_letters.resubmit(letter_id)

    def _resubmit_letter(self, letter: DeadLetter) -> CommandHandle:
        rec = letter.payload
        if not isinstance(rec, dict) or "tool" not in rec:
            raise ConfigError(f"dead letter {letter.id} holds no lane command")
        return self._submit_record(rec, 0, False)

    def _submit_record(self, rec: dict[str, Any], attempts: int, unbounded: bool) -> CommandHandle:
        target = rec.get("fn") or self.tools.resolve(rec["tool"], rec.get("module", ""))
        return self._submitter.submit(rec["lane"], target, rec["params"], lifecycle.record_options(rec), 0.0,
                                      attempts=attempts, unbounded=unbounded)

    # shutdown ------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop accepting commands (submit raises ``LaneShutdown``); queued and running work goes on."""
        lifecycle.shutdown(self._core)

    def drain(self, timeout: float | None = None) -> DrainReport:
        """Wait until no command is queued or running (up to ``timeout`` s); report what is left."""
        return lifecycle.drain(self._core, timeout)

    def close(self, timeout: float | None = None) -> DrainReport:
        """Shut down, drain for ``timeout`` s, then end what is left, never silently.

        Unfinished commands' futures fail with ``LaneShutdown``. With a store
        they stay persisted for the next manager on it; without one they go to
        the dead-letter queue. Registered as the orchestrator's shutdown hook.
        """
        if self._close_report is not None:
            return self._close_report
        self.shutdown()
        report = self.drain(self._orch.shutdown_timeout if timeout is None else timeout)
        with self._core.box.locked():
            persisted, lettered = lifecycle.close_locked(self._core)
        self._core.executors.stop(1.0)
        if self._owned_store is not None:
            self._owned_store.close()
        self._actors.stop(timeout=self._orch.shutdown_timeout)
        self._close_report = attrs.evolve(report, persisted=tuple(persisted), dead_lettered=tuple(lettered))
        return self._close_report


def _lane_spec(manager: LaneManager, lane: str) -> ChildSpec:
    return ChildSpec(LaneActor, name=lane, kwargs={"manager": manager, "lane": lane})
