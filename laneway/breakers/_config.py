"""Breaker records: the state enum, the configuration, transitions and statistics."""

from __future__ import annotations

import enum
import logging
from typing import Any, Callable, Mapping

import attrs

from laneway.errors import ConfigError

log = logging.getLogger(__name__)

class BreakerState(enum.Enum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"  #: calls go through; failures are counted
    OPEN = "open"  #: calls are rejected at once until the reset timeout elapses
    HALF_OPEN = "half_open"  #: one probe call at a time decides whether to close or reopen


def _int_at_least(low: int) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(_: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"BreakerConfig.{attribute.name} must be an int >= {low}, got {value!r}")

    return check


def _positive(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"BreakerConfig.{attribute.name} must be a number > 0, got {value!r}")


def _ratio(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
        raise ConfigError(f"BreakerConfig.{attribute.name} must be None or in (0, 1], got {value!r}")


def _exclude(value: Any) -> tuple:
    items = value if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    for item in items:
        is_type = isinstance(item, type) and issubclass(item, BaseException)
        if not is_type and not callable(item):
            raise ConfigError(
                f"BreakerConfig.exclude takes exception types or predicates on an exception, got {item!r}"
            )
    return tuple(items)


@attrs.frozen
class BreakerConfig:
    """When a breaker opens, how long it stays open, and what closes it.

    The breaker opens after ``failure_threshold`` consecutive failures, or,
    when ``failure_ratio`` is set, as soon as that share of the last
    ``window_size`` calls failed (counted once ``min_calls`` calls are in the
    window). While open it rejects calls; after ``reset_timeout_s`` it lets
    one probe through (half-open). ``success_threshold`` successful probes in
    a row close it; a failed probe reopens it for the reset timeout times
    ``backoff_factor`` per consecutive reopen, at most ``max_reset_timeout_s``.

    Errors matching ``exclude`` (exception types, or predicates returning
    True) are the caller's business, not a sign of a sick agent: they count
    as successes, as in pybreaker.

    Example:
        >>> cfg = BreakerConfig(failure_threshold=3, reset_timeout_s=10, exclude=(KeyError,))
        >>> [cfg.reset_timeout_after(n) for n in (0, 1, 2)]
        [10.0, 20.0, 40.0]
    """

    failure_threshold: int = attrs.field(default=5, validator=_int_at_least(1))
    success_threshold: int = attrs.field(default=1, validator=_int_at_least(1))
    reset_timeout_s: float = attrs.field(default=30.0, validator=_positive)
    backoff_factor: float = attrs.field(default=2.0, validator=_positive)
    max_reset_timeout_s: float = attrs.field(default=600.0, validator=_positive)
    exclude: tuple = attrs.field(default=(), converter=_exclude)
    failure_ratio: float | None = attrs.field(default=None, validator=_ratio)
    window_size: int = attrs.field(default=20, validator=_int_at_least(1))
    min_calls: int = attrs.field(default=10, validator=_int_at_least(1))

    def __attrs_post_init__(self) -> None:
        if self.backoff_factor < 1:
            raise ConfigError(f"BreakerConfig.backoff_factor must be >= 1, got {self.backoff_factor!r}")
        if self.max_reset_timeout_s < self.reset_timeout_s:
            raise ConfigError(
                f"BreakerConfig.max_reset_timeout_s ({self.max_reset_timeout_s}) is below "
                f"reset_timeout_s ({self.reset_timeout_s})"
            )
        if self.min_calls > self.window_size:
            raise ConfigError(
                f"BreakerConfig.min_calls ({self.min_calls}) exceeds window_size ({self.window_size})"
            )

    def excludes(self, error: BaseException) -> bool:
        """Whether ``error`` is excluded (does not count as a failure)."""
        for item in self.exclude:
            if isinstance(item, type):
                if isinstance(error, item):
                    return True
            else:
                try:
                    if item(error):
                        return True
                except Exception:
                    log.exception("breaker exclude predicate %r raised; treating the error as a failure", item)
        return False

    def reset_timeout_after(self, reopens: int) -> float:
        """Seconds the breaker stays open after ``reopens`` consecutive failed probes."""
        return min(self.max_reset_timeout_s, self.reset_timeout_s * self.backoff_factor**reopens)

    def merged(self, overrides: Mapping[str, Any]) -> BreakerConfig:
        """A copy with some fields replaced (per-agent overrides of a global config).

        Raises:
            ConfigError: a key is not a field of BreakerConfig, or a value is invalid.
        """
        known = {a.name for a in attrs.fields(BreakerConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown BreakerConfig fields {unknown}; known: {sorted(known)}")
        return attrs.evolve(self, **overrides)


@attrs.frozen
class Transition:
    """One change of a breaker's state, as given to listeners.

    Attributes:
        name: the breaker's name (the agent id for agent breakers).
        from_state: the state it left.
        to_state: the state it entered.
        at: clock time of the change.
        reset_timeout_s: for a move to OPEN, how long it stays open.
    """

    name: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    reset_timeout_s: float | None = None


@attrs.frozen
class BreakerStatistics:
    """A snapshot of one breaker.

    Attributes:
        name: the breaker's name.
        state: its state now.
        consecutive_failures: failures in a row while closed.
        window_calls: calls in the failure-ratio window.
        window_failures: failures among them.
        calls: calls admitted so far.
        successes: admitted calls that succeeded (excluded errors included).
        failures: admitted calls that failed.
        rejections: calls refused because the circuit was open (or a probe was out).
        opened: how many times it opened.
        reopens: consecutive failed probes (drives the reset-timeout backoff).
        reset_timeout_s: the reset timeout the next (or current) open period uses.
        open_until: clock time the current open period ends, None unless open.
    """

    name: str
    state: BreakerState
    consecutive_failures: int
    window_calls: int
    window_failures: int
    calls: int
    successes: int
    failures: int
    rejections: int
    opened: int
    reopens: int
    reset_timeout_s: float
    open_until: float | None
