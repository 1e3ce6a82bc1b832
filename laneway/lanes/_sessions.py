"""Session lanes: one serial lane per session id, parallel batches, a cap and idle clean-up."""

from __future__ import annotations

import collections
import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from laneway.errors import ConfigError, LaneFull, LaneShutdown
from laneway.lanes._config import DEFAULT_LANES, SESSION_PREFIX, LaneConfig, Priority
from laneway.lanes._lane import Lane
from laneway.lanes._records import CommandHandle, LaneStats

if TYPE_CHECKING:
    from laneway.lanes._core import LaneCore
    from laneway.lanes._manager import LaneManager
    from laneway.lanes._metrics import LaneRecorder

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

    def __init__(self, manager: LaneManager, session_id: str,
                 run_batch: Callable[[str, Iterable[Any], int, str, Priority | None], list[CommandHandle]]) -> None:
        self.manager = manager
        self.session_id = session_id
        self.lane = SESSION_PREFIX + session_id
        self._run_batch = run_batch

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
        return self._run_batch(self.session_id, calls, max_concurrent, caller, priority)

    def statistics(self) -> LaneStats:
        """This session lane's statistics."""
        return self.manager.lane_stats(self.lane)

    def close(self) -> bool:
        """Remove the lane now if idle, else once its work is done; False if it was already gone."""
        return self.manager.close_session(self.session_id)


class Sessions:
    """The session lanes of a manager: opened on first use, least recently used first, removed when idle.

    Args:
        core: the lanes' core (its outbox guards the table too).
        max_sessions: open session lanes at most; idle ones are removed to make room.
        idle_s: a session lane idle this long is removed.
        recorder: ``(lane name, now)``: the metrics recorder of a new lane.
    """

    def __init__(self, core: LaneCore, max_sessions: int, idle_s: float,
                 recorder: Callable[[str, float], LaneRecorder]) -> None:
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ConfigError(f"max_sessions must be an int >= 1, got {max_sessions!r}")
        if not isinstance(idle_s, (int, float)) or idle_s <= 0:
            raise ConfigError(f"session_idle_s must be > 0, got {idle_s!r}")
        self._core = core
        self._recorder = recorder
        self._lanes: collections.OrderedDict[str, Lane] = collections.OrderedDict()  # least recently used first
        self._max = max_sessions
        self._idle_s = float(idle_s)

    def __len__(self) -> int:
        return len(self._lanes)

    def open(self, session_id: str, serial: bool = True) -> None:
        """Open the session's lane if it is not open (``serial`` only matters then)."""
        if not isinstance(session_id, str) or not session_id:
            raise ConfigError(f"session id must be a non-empty string, got {session_id!r}")
        with self._core.lock:
            self.lane_locked(session_id, serial)

    def ids(self) -> list[str]:
        """Ids of the open session lanes, least recently used first."""
        with self._core.lock:
            return list(self._lanes)

    def close(self, session_id: str) -> bool:
        """Remove a session lane now if idle, else as soon as it is; False if there is none."""
        with self._core.lock:
            lane = self._lanes.get(session_id)
            if lane is None:
                return False
            if self._idle(lane):
                self._remove_locked(lane)
            else:
                lane.closing = True
            return True

    @staticmethod
    def _idle(lane: Lane) -> bool:
        return lane.pending == 0 and lane.active == 0 and lane.group is None

    def lane_locked(self, session_id: str, serial: bool = True) -> Lane:
        """The session's lane, opened (or re-opened) if needed; under the core's lock."""
        lane = self._lanes.get(session_id)
        if lane is not None:
            self._lanes.move_to_end(session_id)
            lane.closing = False
            return lane
        core = self._core
        if not core.accepting:
            raise LaneShutdown(f"lane manager is shutting down; cannot open session {session_id!r}")
        if len(self._lanes) >= self._max:
            victim = next((x for x in self._lanes.values() if self._idle(x)), None)
            if victim is None:
                raise LaneFull(f"all {self._max} session lanes are busy; cannot open session {session_id!r}")
            self._remove_locked(victim)
        base = core.lanes["session"].config if "session" in core.lanes else _DEFAULT_SESSION_BASE
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
        now = core.clock.now()
        lane = Lane(config, now, self._recorder(config.name, now), session_id=session_id)
        core.lanes[config.name] = lane
        self._lanes[session_id] = lane
        self._schedule_idle_check_locked(lane, self._idle_s)
        return lane

    def _remove_locked(self, lane: Lane) -> None:
        del self._lanes[lane.session_id]  # type: ignore[arg-type]
        if lane.idle_timer is not None:
            lane.idle_timer.cancel()
            lane.idle_timer = None
        self._core.remove_lane_locked(lane)

    def lane_idle_locked(self, lane: Lane) -> None:
        """The core's hook: a lane ran empty (a session lane closes or starts its idle clock)."""
        if lane.session_id is None or self._lanes.get(lane.session_id) is not lane or lane.group is not None:
            return
        if lane.closing:
            self._remove_locked(lane)
        else:
            self._schedule_idle_check_locked(lane, self._idle_s)

    def _schedule_idle_check_locked(self, lane: Lane, delay: float) -> None:
        if lane.idle_timer is None:
            lane.idle_timer = self._core.clock.call_later(delay, partial(self._idle_check, lane))

    def _idle_check(self, lane: Lane) -> None:
        core = self._core
        with core.box:
            lane.idle_timer = None
            if self._lanes.get(lane.session_id) is not lane or not self._idle(lane):  # type: ignore[arg-type]
                return  # busy again: the next idle transition schedules a new check
            left = (lane.idle_since or 0.0) + self._idle_s - core.clock.now()
            if left > 0:
                self._schedule_idle_check_locked(lane, left)
                return
            self._remove_locked(lane)
            core.emit("queue.session.closed", lane.name, session_id=lane.session_id, reason="idle")
