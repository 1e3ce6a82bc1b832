"""Lane configuration: priorities, rate limits, preemption, the six default lanes."""

from __future__ import annotations

import enum
from typing import Any, Iterable

import attrs

from laneway.errors import ConfigError, PriorityOutOfRange
from laneway.core import RetryPolicy


class Priority(enum.IntEnum):
    """Priority of a command inside its lane; lower values run first.

    An ``IntEnum`` so levels compare and sort (``Priority.HIGH < Priority.LOW``).
    Deadline boosts move a queued command up one level at a time, never past
    ``CRITICAL``. Wherever a priority is asked for (``submit``, ``@tool``),
    a plain int on this scale (0..4) is accepted too; anything else raises
    :class:`~laneway.errors.PriorityOutOfRange`.
    """

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3
    BACKGROUND = 4


def as_priority(value: Any, what: str = "priority") -> Priority:
    """``value`` as a :class:`Priority`; ints 0..4 are accepted, anything else raises PriorityOutOfRange."""
    if isinstance(value, Priority):
        return value
    if type(value) is int and 0 <= value <= 4:
        return Priority(value)
    raise PriorityOutOfRange(
        f"{what} must be a Priority or an int from 0 (CRITICAL) to 4 (BACKGROUND), got {value!r}")


class PreemptAction(enum.Enum):
    """What happens to a running command that higher-priority work preempts."""

    NEVER = "never"  #: the lane never preempts
    REQUEUE = "requeue"  #: the victim goes back into the queue, keeping its place
    FAIL = "fail"  #: the victim's future fails with :class:`~laneway.errors.Preempted`


class GiveUp(enum.Enum):
    """What :meth:`LaneManager.call` does with the command when its caller stops waiting.

    The caller stops waiting when ``wait_timeout`` passes, or when the task
    awaiting :meth:`LaneManager.call_async` is cancelled. Nobody else holds
    the command's future then, so by default its work is not wanted any more.
    """

    WITHDRAW = "withdraw"  #: a queued command is cancelled (never runs); a running one has its token cancelled
    KEEP = "keep"  #: the command goes on; its result is dropped


def _positive_or_none(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ConfigError(f"{attribute.name} must be a number > 0 or None, got {value!r}")


def _non_negative_int(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _positive_int(_: object, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _positive_int_or_none(inst: object, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _positive_int(inst, attribute, value)


@attrs.frozen
class RateLimit:
    """How many commands a lane may start per second, minute and hour (any subset).

    Enforced when a command is taken off the queue, so a limited lane keeps
    accepting work and starts it as the windows allow.

    Example:
        >>> RateLimit(per_second=5, per_hour=1000).windows()
        ((1.0, 5), (3600.0, 1000))
    """

    per_second: int | None = attrs.field(default=None, validator=_positive_int_or_none)
    per_minute: int | None = attrs.field(default=None, validator=_positive_int_or_none)
    per_hour: int | None = attrs.field(default=None, validator=_positive_int_or_none)

    def windows(self) -> tuple[tuple[float, int], ...]:
        """The configured (window seconds, limit) pairs, shortest window first."""
        pairs = ((1.0, self.per_second), (60.0, self.per_minute), (3600.0, self.per_hour))
        return tuple((w, n) for w, n in pairs if n is not None)


def _as_fractions(value: Iterable[float]) -> tuple[float, ...]:
    # A typed converter: with the bare ``tuple`` attrs leaves the init parameter's item type unsolved.
    return tuple(value)


def _check_boosts(_: object, attribute: attrs.Attribute, value: tuple[float, ...]) -> None:
    if any(not 0 < f < 1 for f in value) or list(value) != sorted(value, reverse=True):
        raise ConfigError(f"deadline_boosts must be fractions in (0, 1), descending, got {value!r}")


@attrs.frozen
class LaneConfig:
    """One lane: its scheduling priority, concurrency bounds and per-command defaults.

    The scheduler always serves the lane with the lowest ``priority`` number
    that has pending work and a free slot. ``min_concurrency`` slots of the
    manager's shared workers are kept for this lane even when lower-priority
    lanes are busy.

    Attributes:
        name: unique lane name (``"session:<id>"`` is reserved for session lanes).
        priority: 0 is served first.
        max_concurrency: commands of this lane that may run at once.
        min_concurrency: worker slots reserved for this lane.
        max_pending: bound of the queue; ``submit`` blocks or raises ``LaneFull`` past it.
        timeout_s: default per-command timeout (a tool's own ``timeout`` wins).
        retry: default retry policy.
        rate_limit: starts per second/minute/hour, or None.
        pressure_threshold: publish ``queue.lane.pressure`` when pending reaches it, and
            ``queue.lane.idle`` when the lane next runs empty (None, the default: neither).
        preempt: what preemption does to a running preemptible command.
        preempt_min_runtime_s: a command is preemptible only after running this long.
        deadline_boosts: fractions of a command's deadline left at which it is promoted one level.

    Example:
        >>> LaneConfig("embeddings", priority=2, max_concurrency=4, timeout_s=30).max_concurrency
        4
    """

    name: str = attrs.field()
    priority: int = attrs.field(default=5, validator=_non_negative_int)
    max_concurrency: int = attrs.field(default=1, validator=_positive_int)
    min_concurrency: int = attrs.field(default=0, validator=_non_negative_int)
    max_pending: int = attrs.field(default=10_000, validator=_positive_int)
    timeout_s: float | None = attrs.field(default=None, validator=_positive_or_none)
    retry: RetryPolicy = attrs.field(factory=RetryPolicy.none)
    rate_limit: RateLimit | None = None
    pressure_threshold: int | None = attrs.field(default=None, validator=_positive_int_or_none)
    preempt: PreemptAction = PreemptAction.REQUEUE
    preempt_min_runtime_s: float = attrs.field(default=0.0)
    deadline_boosts: tuple[float, ...] = attrs.field(default=(0.75, 0.5, 0.25), converter=_as_fractions,
                                                     validator=_check_boosts)

    @name.validator
    def _check_name(self, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, str) or not value or "/" in value:
            raise ConfigError(f"lane name must be a non-empty string without '/', got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.min_concurrency > self.max_concurrency:
            raise ConfigError(
                f"lane {self.name!r}: min_concurrency {self.min_concurrency} > max_concurrency {self.max_concurrency}"
            )
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigError(f"lane {self.name!r}: retry must be a RetryPolicy, got {self.retry!r}")
        if not isinstance(self.preempt, PreemptAction):
            raise ConfigError(f"lane {self.name!r}: preempt must be a PreemptAction, got {self.preempt!r}")
        if self.preempt_min_runtime_s < 0:
            raise ConfigError(f"lane {self.name!r}: preempt_min_runtime_s must be >= 0")


def merge_lane_configs(lanes: Iterable[LaneConfig], extra_lanes: Iterable[LaneConfig]) -> dict[str, LaneConfig]:
    """Lane configs by name: ``lanes`` (names unique), then ``extra_lanes`` replacing same-named ones."""
    configs: dict[str, LaneConfig] = {}
    for c in lanes:
        if getattr(c, "name", None) in configs:
            raise ConfigError(f"two lanes are named {c.name!r}")
        configs[getattr(c, "name", "")] = c
    for c in extra_lanes:
        configs[getattr(c, "name", "")] = c
    if not configs:
        raise ConfigError("a lane manager needs at least one lane")
    return configs


#: The six lanes every manager starts with unless ``lanes=`` replaces them.
DEFAULT_LANES: tuple[LaneConfig, ...] = (
    LaneConfig("system", priority=0, min_concurrency=1, max_concurrency=5),
    LaneConfig("control", priority=1, min_concurrency=1, max_concurrency=3),
    LaneConfig("query", priority=2, min_concurrency=1, max_concurrency=10),
    LaneConfig("session", priority=3, min_concurrency=1, max_concurrency=5),
    LaneConfig("skill", priority=4, min_concurrency=1, max_concurrency=3),
    LaneConfig("prompt", priority=5, min_concurrency=1, max_concurrency=2),
)

SESSION_PREFIX = "session:"
