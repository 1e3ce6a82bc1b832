"""The LaneManager: lanes, their configuration, statistics, dead letters, recovery and shutdown."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import weakref
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable

import attrs

from laneway.actors import ActorRef, ChildSpec, OneForOne
from laneway.errors import ConfigError, LaneError, LaneNotFound, LaneShutdown, LanewayError, StoreError
from laneway.lanes._config import DEFAULT_LANES, SESSION_PREFIX, LaneConfig, Priority, RateLimit
from laneway.lanes._lane import Lane
from laneway.lanes._lane_actor import LaneActor
from laneway.lanes._metrics import InMemoryLaneMetrics, LaneMetrics
from laneway.lanes._persist import PendingStore
from laneway.lanes._records import (
    CommandHandle,
    CommandState,
    DrainReport,
    LaneManagerStats,
    LaneStats,
    LaneStatus,
    LaneStatusReport,
    ManagerStatusReport,
)
from laneway.lanes._submit import Submitter
from laneway.lanes._tools import ToolRegistry, default_registry
from laneway.lanes._window import RateLimiter
from laneway.store import SQLiteStore

if TYPE_CHECKING:
    from laneway.actors import ActorSystem
    from laneway.core import CpuRunnerProvider, DeadLetter

log = logging.getLogger(__name__)

_FROM_ORCH: Any = object()


class LaneManager(Submitter):
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
        super().__init__(orch, max_workers, cpu)
        #: The metrics backend the lanes report to.
        self.metrics: LaneMetrics = InMemoryLaneMetrics() if metrics is None else metrics
        configs: dict[str, LaneConfig] = {}
        for c in DEFAULT_LANES if lanes is None else lanes:
            if getattr(c, "name", None) in configs:
                raise ConfigError(f"two lanes are named {c.name!r}")
            configs[getattr(c, "name", "")] = c
        for c in extra_lanes:
            configs[getattr(c, "name", "")] = c  # extra lanes replace same-named ones
        if not configs:
            raise ConfigError("a lane manager needs at least one lane")
        for c in configs.values():
            self._add_lane_locked(c)
        self.tools = tools if tools is not None else ToolRegistry(parent=default_registry)
        if not isinstance(self.tools, ToolRegistry):
            raise ConfigError(f"tools must be a ToolRegistry, got {tools!r}")
        self._anon_specs = weakref.WeakKeyDictionary()
        self._cancel_fn = self.cancel  # one bound method for every handle, not one per submit
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._init_sessions(max_sessions, session_idle_s)
        self._owned_store = None
        if store is _FROM_ORCH:
            store = orch.store
        elif isinstance(store, (str, os.PathLike)):
            store = self._owned_store = SQLiteStore(store)
        self._pending = PendingStore(store, shares_dead_letters=store is orch.store) if store is not None else None
        self._close_report: DrainReport | None = None
        orch.dead_letters.register_resubmitter("lane:", self._resubmit_letter)
        orch.on_shutdown("lanes", self.close)
        # One supervised actor per named lane (see _lane_actor.py for why commands also have a direct path).
        self._actors = orch.spawn_supervisor(
            "lanes", strategy=OneForOne(max_restarts=10, within_s=60), children=[_lane_spec(self, n) for n in configs]
        )
        #: Handles of the commands recovered from the store at start.
        self.recovered: tuple[CommandHandle, ...] = self._recover() if self._pending is not None and recover else ()

    def __repr__(self) -> str:
        pending = sum(lane.pending for lane in list(self._lanes.values()))
        return f"<LaneManager lanes={len(self._lanes)} running={self._running} pending={pending}>"

    def _new_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    # lanes -----------------------------------------------------------------------------

    def _add_lane_locked(self, config: LaneConfig) -> Lane:
        if not isinstance(config, LaneConfig):
            raise ConfigError(f"lanes must be LaneConfig records, got {config!r}")
        if config.name.startswith(SESSION_PREFIX):
            raise ConfigError(f"lane names starting with {SESSION_PREFIX!r} are reserved for session lanes")
        if config.name in self._lanes:
            raise ConfigError(f"a lane named {config.name!r} already exists")
        reserved = sum(lane.config.min_concurrency for lane in self._lanes.values()) + config.min_concurrency
        if reserved > self._max_workers:
            raise ConfigError(f"lanes reserve {reserved} workers in total (min_concurrency) but max_workers is {self._max_workers}")
        now = self._clock.now()
        lane = self._lanes[config.name] = Lane(config, now, self.metrics.recorder(config.name, now))
        self._reserved += config.min_concurrency
        return lane

    def _lane(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is None:
            raise LaneNotFound(f"no lane named {name!r}")
        return lane

    def add_lane(self, config: LaneConfig) -> None:
        """Add a lane while running."""
        with self._lock:
            self._add_lane_locked(config)
        self._actors.start_child(_lane_spec(self, config.name))

    def remove_lane(self, name: str) -> None:
        """Remove an idle lane. Raises LaneError if it has pending or running commands."""
        with self._lock:
            lane = self._lane(name)
            if lane.pending or lane.active or lane.session_id is not None:
                raise LaneError(f"lane {name!r} is busy or a session lane; cannot remove it")
            del self._lanes[name]
            self._reserved -= max(0, lane.config.min_concurrency - lane.active)
            self._touch(lane)
        self._actors.terminate_child(name)
        self._actors.delete_child(name)

    def lane_ref(self, name: str) -> ActorRef:
        """The actor of a named lane, for message-style callers (see :class:`LaneActor`)."""
        self._lane(name)
        return self._actors.child(name)

    def lane_names(self) -> list[str]:
        """Names of the configured lanes (not session lanes), in scheduling order."""
        with self._lock:
            lanes = [x for x in self._lanes.values() if x.session_id is None]
        return [x.name for x in sorted(lanes, key=lambda x: x.config.priority)]

    def lane_config(self, name: str) -> LaneConfig:
        """The lane's current configuration."""
        return self._lane(name).config

    def _reconfigure(self, name: str, **changes: Any) -> None:
        with self._box.locked():
            lane = self._lane(name)
            lane.config = attrs.evolve(lane.config, **changes)
            self._lane_changed_locked(lane)
            self._dispatch_locked()

    def set_max_concurrent(self, lane: str, n: int) -> None:
        """Change a lane's ``max_concurrency`` live; more commands start at once if it grew.

        Running commands are never stopped when it shrinks; new ones wait until
        fewer than ``n`` run.
        """
        config = self.lane_config(lane)
        if isinstance(n, bool) or not isinstance(n, int) or n < max(1, config.min_concurrency):
            raise ConfigError(f"max concurrency of lane {lane!r} must be an int >= {max(1, config.min_concurrency)}, got {n!r}")
        self._reconfigure(lane, max_concurrency=n)

    def set_rate_limit(self, lane: str, limit: RateLimit | None) -> None:
        """Replace a lane's rate limit (None removes it); counting starts afresh."""
        if limit is not None and not isinstance(limit, RateLimit):
            raise ConfigError(f"limit must be a RateLimit or None, got {limit!r}")
        with self._box.locked():
            target = self._lane(lane)
            target.config = attrs.evolve(target.config, rate_limit=limit)
            target.limiter = RateLimiter(limit) if limit is not None else None
            if target.rate_timer is not None:
                target.rate_timer.cancel()
                target.rate_timer = None
            self._lane_changed_locked(target)
            self._dispatch_locked()

    def pause(self, lane: str) -> None:
        """Start nothing more from this lane (it still accepts commands)."""
        self._set_paused(lane, True)

    def resume(self, lane: str) -> None:
        """Undo :meth:`pause`."""
        self._set_paused(lane, False)

    def _set_paused(self, name: str, paused: bool) -> None:
        with self._box.locked():
            lane = self._lane(name)
            lane.paused = paused
            self._touch(lane)
            self._dispatch_locked()

    # commands ------------------------------------------------------------------------------

    def cancel(self, command_id: str, reason: str = "cancelled by caller") -> bool:
        """Cancel a command: a queued one never runs; a running one has its token cancelled.

        Either way its future fails at once with :class:`~laneway.errors.CommandCancelled`.
        A running sync tool keeps its slot until it returns (it should check its token).

        Returns:
            False if the command is unknown or already finished.
        """
        with self._box.locked():
            cmd = self._commands.get(command_id)
            if cmd is None:
                return False
            self._cancel_locked(cmd, reason)
            self._dispatch_locked()
        return True

    def state(self, command_id: str) -> CommandState | None:
        """Where an unfinished command is; None once it finished (or if unknown)."""
        cmd = self._commands.get(command_id)
        return None if cmd is None else cmd.state

    # statistics ------------------------------------------------------------------------------

    def lane_stats(self, lane: str) -> LaneStats:
        """One lane's statistics (session lanes too: ``"session:<id>"``)."""
        with self._lock:
            return self._lane(lane).stats(self._clock.now())

    def statistics(self) -> LaneManagerStats:
        """Every lane's statistics and the shared capacity."""
        with self._lock:
            now = self._clock.now()
            lanes = sorted(self._lanes.values(), key=lambda x: x.config.priority)
            return LaneManagerStats(
                lanes=tuple(x.stats(now) for x in lanes),
                max_workers=self._max_workers,
                running=self._running,
                threads=self._exec.thread_count,
                sessions=len(self._sessions),
                accepting=self._accepting,
            )

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
        with self._lock:
            accepting, closed = self._accepting, self._closed
            if lane is not None:
                return self._lane(lane).status(accepting, closed)
            lanes = sorted(self._lanes.values(), key=lambda x: x.config.priority)
            reports = tuple(x.status(accepting, closed) for x in lanes)
            pending = sum(x.pending for x in lanes)
            running = self._running
        if closed or (not accepting and not pending and not running):
            status = LaneStatus.CLOSED
        elif not accepting:
            status = LaneStatus.DRAINING
        elif pending or running:
            status = LaneStatus.BUSY
        elif all(r.status is LaneStatus.PAUSED for r in reports if r.session_id is None):
            status = LaneStatus.PAUSED
        else:
            status = LaneStatus.IDLE
        return ManagerStatusReport(status, reports, pending, running, self._max_workers, accepting)

    # dead letters ------------------------------------------------------------------------------

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
        return self._submit_record(rec, attempts=0)

    def _submit_record(self, rec: dict[str, Any], *, attempts: int, unbounded: bool = False) -> CommandHandle:
        target = rec.get("fn") or self.tools.resolve(rec["tool"], rec.get("module", ""))
        return self._submit(rec["lane"], target, rec["params"], Priority(rec["priority"]), rec["caller"],
                            rec["timeout"], rec["retry"], rec["deadline_s"], rec["preemptible"], None, 0.0, rec["id"],
                            attempts=attempts, unbounded=unbounded)

    def _recover(self) -> tuple[CommandHandle, ...]:
        assert self._pending is not None
        handles = []
        for key, rec in self._pending.load():
            lane = rec.get("lane", "?") if rec else "?"
            try:
                if rec is None:
                    raise StoreError(f"persisted command {key} is unreadable")
                attempts = rec.get("attempts", 0)
                if attempts >= rec["retry"].max_attempts:
                    raise LaneError(f"interrupted by a crash during its last attempt ({attempts})")
                handles.append(self._submit_record(rec, attempts=attempts, unbounded=True))
            except LanewayError as exc:
                self._orch.dead_letters.put(f"lane:{lane}", f"could not recover persisted command: {exc}",
                                            attempts=(rec or {}).get("attempts", 0), error=exc, work_id=key, payload=rec)
                self._pending.delete(key)
                continue
            if self._events.active:
                self._events.publish("queue.command.recovered", lane, command_id=key, attempts=attempts)
        if handles:
            log.info("recovered %d pending commands from the store", len(handles))
        return tuple(handles)

    # shutdown ------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop accepting commands (submit raises ``LaneShutdown``); queued and running work goes on."""
        with self._lock:
            if not self._accepting:
                return
            self._accepting = False
            pending = len(self._commands) - self._running
            self._space.notify_all()
        self._events.publish("queue.shutdown.started", "lanes", pending=pending, running=self._running)

    def drain(self, timeout: float | None = None) -> DrainReport:
        """Wait until no command is queued or running (up to ``timeout`` s); report what is left."""
        with self._lock:
            self._quiet.wait_for(lambda: not self._commands, timeout)
            queued = tuple(c.id for c in self._commands.values() if c.state is not CommandState.RUNNING)
            running = tuple(c.id for c in self._commands.values() if c.state is CommandState.RUNNING)
        return DrainReport(drained=not queued and not running, queued=queued, running=running)

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
        persisted, lettered = [], []
        with self._box.locked():
            self._closed = True
            for cmd in list(self._commands.values()):
                was = cmd.state
                if was is CommandState.QUEUED:
                    self._unqueue_locked(cmd)
                elif was is CommandState.RETRY_WAIT:
                    cmd.lane.remove_waiting(cmd)
                elif cmd.run is not None and not cmd.run.superseded:
                    cmd.run.superseded = True
                    self._box.add(partial(cmd.run.token.cancel, "lane manager closed"))
                cmd.state = CommandState.CANCELLED
                self._final_locked(cmd)
                where = "left in the store for the next manager" if cmd.durable else "dead-lettered"
                if cmd.durable:
                    persisted.append(cmd.id)
                else:
                    lettered.append(cmd.id)
                    self._box.add(partial(self._orch.dead_letters.put, f"lane:{cmd.lane.name}",
                                        f"lane manager closed while it was {was.value}", attempts=cmd.attempts,
                                        work_id=cmd.id, payload=cmd.payload(with_fn=True)))
                self._box.add(partial(cmd.future.settle, error=LaneShutdown(
                    f"lane manager closed while command {cmd.id} was {was.value}; {where}")))
            for lane in self._lanes.values():
                # The clock is shared: drop this manager's lane timers (command timers went with their commands).
                for timer in (lane.rate_timer, lane.idle_timer):
                    if timer is not None:
                        timer.cancel()
                lane.rate_timer = lane.idle_timer = None
        self._exec.stop(1.0)
        if self._owned_store is not None:
            self._owned_store.close()
        self._actors.stop(timeout=self._orch.shutdown_timeout)
        self._close_report = attrs.evolve(report, persisted=tuple(persisted), dead_lettered=tuple(lettered))
        return self._close_report


def _lane_spec(manager: LaneManager, lane: str) -> ChildSpec:
    return ChildSpec(LaneActor, name=lane, kwargs={"manager": manager, "lane": lane})
