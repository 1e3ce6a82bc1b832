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


class Placement(enum.Enum):
    """Where an actor runs. Strings (``"thread"``, ``"process"``, ``"ray"``) are accepted wherever a Placement is.

    The :class:`~laneway.actors.ActorRef` API is the same for every placement.
    """

    THREAD = "thread"  #: a thread of this process (the default): cheapest, shares the GIL and the process's fate
    PROCESS = "process"  #: a host process of its own (or its group's): its own GIL; its death is a crash
    RAY = "ray"  #: a Ray actor (needs Ray)
    #: a process on a remote actor host (``laneway worker --actors``, see ``accept_actor_hosts``): its death is a crash
    REMOTE = "remote"

    @classmethod
    def coerce(cls, value: Placement | str) -> Placement:
        """``value`` as a Placement.

        Raises:
            ConfigError: anything but a Placement or one of its values.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"placement must be one of {[p.value for p in cls]}, got {value!r}") from None


def _group(_: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"group must be a non-empty string or None, got {value!r}")


def _host(_: Any, attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"host must be a non-empty host name or None, got {value!r}")


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


def _placement(value: Placement | str) -> Placement:
    # attrs' mypy plugin takes only plain functions as converters, not a classmethod.
    return Placement.coerce(value)


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
        shutdown_s: how long a stop may take before the child is abandoned and reported
            (a process-placed child is killed).
        placement: where the child runs (:class:`Placement` or its value); every
            restart starts it there again (for ``process``, in a new process).
        group: for ``process`` placement, the name of a host process shared by
            every actor of the system with the same group; None gives the actor
            a process of its own.
        ray_options: for ``ray`` placement, options for the Ray actor
            (``num_cpus``, ``resources``, ``scheduling_strategy`` to pin a node...).
        host: for ``remote`` placement, the name of the remote actor hosts it may
            run on (``laneway worker --actors --name NAME``); None: any of them.
            A restart goes to a connected host of that name.

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
    placement: Placement = attrs.field(default=Placement.THREAD, converter=_placement)
    group: str | None = attrs.field(default=None, validator=_group)
    ray_options: dict | None = None
    host: str | None = attrs.field(default=None, validator=_host)

    def __attrs_post_init__(self) -> None:
        if not callable(self.factory):
            raise ConfigError(f"ChildSpec {self.name!r}: factory {self.factory!r} is not callable")
        check_placement(self.placement, self.group, self.factory, self.ray_options, self.host)


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


def check_placement(placement: Placement, group: str | None, factory: Any, ray_options: Any = None,
                    host: str | None = None) -> None:
    """Raise ConfigError for a combination that cannot run (a group without process placement, a supervisor elsewhere)."""
    if host is not None and placement is not Placement.REMOTE:
        raise ConfigError(f"host={host!r} needs placement='remote', got placement={placement.value!r}")
    _host(None, None, host)  # type: ignore[arg-type]  # the same check as ChildSpec's
    if ray_options is not None and placement is not Placement.RAY:
        raise ConfigError(f"ray_options need placement='ray', got placement={placement.value!r}")
    if ray_options is not None and not isinstance(ray_options, dict):
        raise ConfigError(f"ray_options must be a dict of Ray actor options, got {ray_options!r}")
    if group is not None and placement is not Placement.PROCESS:
        raise ConfigError(f"group={group!r} needs placement='process', got placement={placement.value!r}")
    if placement is not Placement.THREAD and getattr(factory, "ref_class", None) is not None:
        raise ConfigError(f"{factory!r} has its own reference type (a supervisor?) and runs only with placement='thread'")
