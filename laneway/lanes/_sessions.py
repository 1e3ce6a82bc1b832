"""Session lanes: one serial lane per session id, parallel batches, a cap and idle clean-up."""

from __future__ import annotations

import collections
import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from laneway.errors import ConfigError, LaneFull, LaneShutdown
from laneway.lanes._config import DEFAULT_LANES, SESSION_PREFIX, LaneConfig, Priority
from laneway.lanes._lane import Lane
from laneway.lanes._records import CommandHandle, LaneStats
from laneway.lanes._scheduler import Scheduler

if TYPE_CHECKING:
    from laneway.lanes._manager import LaneManager

log = logging.getLogger(__name__)

# Session lanes copy the "session" lane's settings; these when a manager has no such lane.
_DEFAULT_SESSION_BASE = next(c for c in DEFAULT_LANES if c.name == "session")


class SessionLane:
    """A handle on one session's lane (``"session:<id>"``); get it from :meth:`LaneManager.session`.

    Commands of one session never overlap (a serial lane is the per-session
    lock) unless they go through :meth:`execute_parallel` together.

    Example:
        >>> chat = orch.lanes.session("user-42")                               # doctest: +SKIP
        >>> chat.submit("remember", {"fact": "likes tea"}).result(timeout=5)   # doctest: +SKIP
        >>> handles = chat.execute_parallel([("search", {"q": "tea"}), ("weather", {"city": "Oslo"})],
        ...                                 max_concurrent=2)                 # doctest: +SKIP
        >>> [h.result(timeout=30) for h in handles]                            # doctest: +SKIP
    """

    def __init__(self, manager: LaneManager, session_id: str) -> None:
        self.manager = manager
        self.session_id = session_id
        self.lane = SESSION_PREFIX + session_id

    def __repr__(self) -> str:
        return f"<SessionLane {self.session_id}>"

    def submit(self, target: Any, params: Mapping[str, Any] | None = None, **options: Any) -> CommandHandle:
        """Queue a command in this session (options as for :meth:`LaneManager.submit`)."""
        return self.manager.submit(self.lane, target, params, **options)

    def call(self, target: Any, params: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Submit and wait for the result (options as for :meth:`LaneManager.call`)."""
        return self.manager.call(self.lane, target, params, **options)

    def execute_parallel(self, calls: Iterable[Any], *, max_concurrent: int = 4, caller: str = "default",
                         priority: Priority | None = None) -> list[CommandHandle]:
        """Run several ``parallel_allowed`` tools of this session together, up to ``max_concurrent`` at once.

        The batch holds the session's lane like one command: nothing else of
        the session overlaps it. Each call is ``(tool, params)`` or a tool
        alone; every call is checked before any runs.

        Raises:
            ParallelNotAllowed: a tool is not marked ``parallel_allowed`` (names them all).
            ToolParameterError, ToolNotFound: a call is malformed.
        """
        return self.manager._execute_parallel(self.session_id, calls, max_concurrent, caller, priority)

    def statistics(self) -> LaneStats:
        """This session lane's statistics."""
        return self.manager.lane_stats(self.lane)

    def close(self) -> bool:
        """Remove the lane now if idle, else once its work is done; False if it was already gone."""
        return self.manager.close_session(self.session_id)


class SessionLanes(Scheduler):
    """The session-lane part of the lane manager."""

    def _init_sessions(self, max_sessions: int, idle_s: float) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ConfigError(f"max_sessions must be an int >= 1, got {max_sessions!r}")
        if not isinstance(idle_s, (int, float)) or idle_s <= 0:
            raise ConfigError(f"session_idle_s must be > 0, got {idle_s!r}")
        self._sessions: collections.OrderedDict[str, Lane] = collections.OrderedDict()  # least recently used first
        self._max_sessions = max_sessions
        self._session_idle_s = float(idle_s)

    def session(self, session_id: str, *, serial: bool = True) -> SessionLane:
        """The session's lane, created on first use (serial unless ``serial=False``).

        Session lanes take the priority, timeout, retry and limits of the
        ``"session"`` lane; ``serial`` only matters when the lane is created.

        Raises:
            LaneFull: ``max_sessions`` lanes are open and none is idle to clean up.
        """
        if not isinstance(session_id, str) or not session_id:
            raise ConfigError(f"session id must be a non-empty string, got {session_id!r}")
        with self._lock:
            self._session_lane_locked(session_id, serial)
        return SessionLane(self, session_id)  # type: ignore[arg-type]

    def sessions(self) -> list[str]:
        """Ids of the open session lanes, least recently used first."""
        with self._lock:
            return list(self._sessions)

    def close_session(self, session_id: str) -> bool:
        """Remove a session lane now if idle, else as soon as it is; False if there is none."""
        with self._lock:
            lane = self._sessions.get(session_id)
            if lane is None:
                return False
            if self._session_idle(lane):
                self._remove_session_locked(lane)
            else:
                lane.closing = True
            return True

    @staticmethod
    def _session_idle(lane: Lane) -> bool:
        return lane.pending == 0 and lane.active == 0 and lane.group is None

    def _session_lane_locked(self, session_id: str, serial: bool = True) -> Lane:
        lane = self._sessions.get(session_id)
        if lane is not None:
            self._sessions.move_to_end(session_id)
            lane.closing = False
            return lane
        if not self._accepting:
            raise LaneShutdown(f"lane manager is shutting down; cannot open session {session_id!r}")
        if len(self._sessions) >= self._max_sessions:
            victim = next((x for x in self._sessions.values() if self._session_idle(x)), None)
            if victim is None:
                raise LaneFull(f"all {self._max_sessions} session lanes are busy; cannot open session {session_id!r}")
            self._remove_session_locked(victim)
        base = self._lanes["session"].config if "session" in self._lanes else _DEFAULT_SESSION_BASE
        config = LaneConfig(
            SESSION_PREFIX + session_id,
            priority=base.priority,
            max_concurrency=1 if serial else base.max_concurrency,
            max_pending=base.max_pending,
            timeout_s=base.timeout_s,
            retry=base.retry,
            pressure_threshold=base.pressure_threshold,
            preempt=base.preempt,
            preempt_min_runtime_s=base.preempt_min_runtime_s,
            deadline_boosts=base.deadline_boosts,
        )
        now = self._clock.now()
        lane = Lane(config, now, self.metrics.recorder(config.name, now), session_id=session_id)  # type: ignore[attr-defined]
        self._lanes[config.name] = lane
        self._sessions[session_id] = lane
        self._schedule_idle_check_locked(lane, self._session_idle_s)
        return lane

    def _remove_session_locked(self, lane: Lane) -> None:
        del self._lanes[lane.name]
        del self._sessions[lane.session_id]  # type: ignore[arg-type]
        if lane.idle_timer is not None:
            lane.idle_timer.cancel()
            lane.idle_timer = None
        self._touch(lane)

    def _lane_idle_locked(self, lane: Lane) -> None:
        if lane.session_id is None or self._sessions.get(lane.session_id) is not lane or lane.group is not None:
            return
        if lane.closing:
            self._remove_session_locked(lane)
        else:
            self._schedule_idle_check_locked(lane, self._session_idle_s)

    def _schedule_idle_check_locked(self, lane: Lane, delay: float) -> None:
        if lane.idle_timer is None:
            lane.idle_timer = self._clock.call_later(delay, partial(self._idle_check, lane))

    def _idle_check(self, lane: Lane) -> None:
        with self._box.locked():
            lane.idle_timer = None
            if self._sessions.get(lane.session_id) is not lane or not self._session_idle(lane):
                return  # busy again: the next idle transition schedules a new check
            left = (lane.idle_since or 0.0) + self._session_idle_s - self._clock.now()
            if left > 0:
                self._schedule_idle_check_locked(lane, left)
                return
            self._remove_session_locked(lane)
            self._emit("queue.session.closed", lane.name, session_id=lane.session_id, reason="idle")
