"""Live changes to named lanes: find, remove, resize, rate-limit, pause."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import attrs

from laneway.errors import ConfigError, LaneError, LaneNotFound
from laneway.lanes._config import RateLimit
from laneway.lanes._window import RateLimiter

if TYPE_CHECKING:
    from laneway.lanes._core import LaneCore
    from laneway.lanes._lane import Lane


def find_lane(core: LaneCore, name: str) -> Lane:
    """The lane named ``name`` (session lanes too); raises LaneNotFound."""
    lane = core.lanes.get(name)
    if lane is None:
        raise LaneNotFound(f"no lane named {name!r}")
    return lane


def remove_idle_lane(core: LaneCore, name: str) -> None:
    """Remove a named lane that has nothing pending or running; raises LaneError otherwise."""
    with core.lock:
        lane = find_lane(core, name)
        if lane.pending or lane.active or lane.session_id is not None:
            raise LaneError(f"lane {name!r} is busy or a session lane; cannot remove it")
        core.remove_lane_locked(lane)


def lane_names(core: LaneCore) -> list[str]:
    """Names of the configured lanes (not session lanes), in scheduling order."""
    with core.lock:
        lanes = [x for x in core.lanes.values() if x.session_id is None]
    return [x.name for x in sorted(lanes, key=lambda x: x.config.priority)]


def _reconfigure(core: LaneCore, name: str, change: Callable[[Lane], None], *, counts: bool = True) -> None:
    with core.box:
        lane = find_lane(core, name)
        change(lane)
        if counts:  # its limits changed: pressure and room too
            core.lane_changed_locked(lane)
        else:
            core.touch(lane)
        core.dispatch_locked()


def set_max_concurrent(core: LaneCore, name: str, n: int) -> None:
    low = max(1, find_lane(core, name).config.min_concurrency)
    if isinstance(n, bool) or not isinstance(n, int) or n < low:
        raise ConfigError(f"max concurrency of lane {name!r} must be an int >= {low}, got {n!r}")

    def change(lane: Lane) -> None:
        lane.config = attrs.evolve(lane.config, max_concurrency=n)

    _reconfigure(core, name, change)


def set_rate_limit(core: LaneCore, name: str, limit: RateLimit | None) -> None:
    if limit is not None and not isinstance(limit, RateLimit):
        raise ConfigError(f"limit must be a RateLimit or None, got {limit!r}")

    def change(lane: Lane) -> None:
        lane.config = attrs.evolve(lane.config, rate_limit=limit)
        lane.limiter = RateLimiter(limit) if limit is not None else None
        if lane.rate_timer is not None:
            lane.rate_timer.cancel()
            lane.rate_timer = None

    _reconfigure(core, name, change)


def set_paused(core: LaneCore, name: str, paused: bool) -> None:
    def change(lane: Lane) -> None:
        lane.paused = paused

    _reconfigure(core, name, change, counts=False)
