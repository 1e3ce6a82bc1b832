"""Supervision records: restart types, strategies, backoff and child specs."""

from __future__ import annotations

import enum
from typing import Any, Callable

import attrs

from laneway.core import Backoff
from laneway.errors import ConfigError


class RestartType(enum.Enum):
    """When a supervisor restarts a child that ended (OTP's restart types)."""

    PERMANENT = "permanent"  #: always
    TRANSIENT = "transient"  #: only after a crash, not after a normal stop
    TEMPORARY = "temporary"  #: never, not even when a sibling's failure stopped it


class StrategyKind(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def _positive(_: Any, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_: Any, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Strategy:
    """A restart strategy with its intensity and backoff.

    Our default intensity is 3 restarts within 5 s (OTP's is 1 in 5 s, too
    strict for worker processes that OOM now and then). Restart number
    ``max_restarts + 1`` inside the window trips the supervisor.
    Use :class:`OneForOne`, :class:`OneForAll` or :class:`RestForOne`.

    The ``backoff`` delay grows with the restarts inside the intensity window,
    or, with ``backoff_reset_s``, with the failed child's own consecutive
    failures: a child that ran at least ``backoff_reset_s`` before it failed
    was healthy, so its next restart waits only the first delay again.
    """

    kind: StrategyKind = StrategyKind.ONE_FOR_ONE
    max_restarts: int = attrs.field(default=3, validator=_non_negative)
    within_s: float = attrs.field(default=5.0, validator=_positive)
    backoff: Backoff | None = None
    backoff_reset_s: float | None = attrs.field(default=None)

    @backoff_reset_s.validator
    def _check_reset(self, attribute: attrs.Attribute, value: float | None) -> None:
        if value is not None:
            _non_negative(self, attribute, value)


def OneForOne(max_restarts: int = 3, within_s: float = 5.0, backoff: Backoff | None = None, *,
              backoff_reset_s: float | None = None) -> Strategy:
    """Restart only the child that failed."""
    return Strategy(StrategyKind.ONE_FOR_ONE, max_restarts, within_s, backoff, backoff_reset_s)


def OneForAll(max_restarts: int = 3, within_s: float = 5.0, backoff: Backoff | None = None, *,
              backoff_reset_s: float | None = None) -> Strategy:
    """Stop every other child (reverse start order), then restart all (start order)."""
    return Strategy(StrategyKind.ONE_FOR_ALL, max_restarts, within_s, backoff, backoff_reset_s)


def RestForOne(max_restarts: int = 3, within_s: float = 5.0, backoff: Backoff | None = None, *,
               backoff_reset_s: float | None = None) -> Strategy:
    """Stop the children started after the failed one, then restart it and them."""
    return Strategy(StrategyKind.REST_FOR_ONE, max_restarts, within_s, backoff, backoff_reset_s)


def _restart_type(value: RestartType | str) -> RestartType:
    try:
        return value if isinstance(value, RestartType) else RestartType(value)
    except ValueError:
        raise ConfigError(
            f"restart must be one of {[r.value for r in RestartType]}, got {value!r}"
        ) from None


def _child_name(_: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not value or "/" in value:
        raise ConfigError(f"child name must be a non-empty string without '/', got {value!r}")


@attrs.frozen
class ChildSpec:
    """How a supervisor starts and restarts one child.

    Args:
        factory: an :class:`~laneway.actors.Actor` subclass or callable returning one.
        name: unique among the supervisor's children; the child's full name is
            ``"<supervisor>/<name>"``.
        args, kwargs: passed to ``factory`` on every (re)start.
        restart: ``permanent`` (default), ``transient`` or ``temporary``.
        shutdown_s: how long a stop may take before the child is abandoned and reported.

    Example:
        >>> from laneway.actors import Actor, ChildSpec
        >>> ChildSpec(Actor, name="w1", restart="transient").restart
        <RestartType.TRANSIENT: 'transient'>
    """

    factory: Callable[..., Any]
    name: str = attrs.field(validator=_child_name)
    args: tuple = ()
    kwargs: dict = attrs.field(factory=dict)
    restart: RestartType = attrs.field(default=RestartType.PERMANENT, converter=_restart_type)
    shutdown_s: float = attrs.field(default=5.0, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        if not callable(self.factory):
            raise ConfigError(f"ChildSpec {self.name!r}: factory {self.factory!r} is not callable")


class ChildState(enum.Enum):
    RUNNING = "running"
    RESTARTING = "restarting"  #: waiting out its backoff
    STOPPED = "stopped"  #: ended and not restarted (transient after a normal exit, or terminated)


@attrs.frozen
class ChildInfo:
    """One row of :meth:`SupervisorRef.which_children`."""

    name: str
    state: ChildState
    restart: RestartType
    restarts: int
    ref: Any
