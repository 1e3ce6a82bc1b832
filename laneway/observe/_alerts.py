"""Alert thresholds and the state machine that turns readings into alerts.

An alert is a *change*: a subject (a lane, the breakers, the workers) moving
from one :class:`AlertLevel` to another. A reading that stays above its
threshold raises one alert, not one per poll; it resolves (an alert with level
``OK``) when the reading falls back under the warning threshold. The
:class:`~laneway.observe.Monitor` feeds readings in at every poll.
"""

from __future__ import annotations

import enum
import types
from typing import Any, Mapping

import attrs

from laneway.errors import ConfigError


class AlertLevel(enum.IntEnum):
    """How bad it is; levels compare (``WARNING < CRITICAL``)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2


class AlertKind(enum.Enum):
    """What is measured."""

    QUEUE_DEPTH = "queue_depth"  #: commands pending in one lane (or tasks queued in the pool)
    BREAKER_OPENS = "breaker_opens"  #: circuit breakers that opened within the window
    WORKER_RESTARTS = "worker_restarts"  #: supervised restarts (pool workers included) within the window


def _level_bound(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
        raise ConfigError(f"Threshold.{attribute.name} must be None or a number > 0, got {value!r}")


@attrs.frozen
class Threshold:
    """A reading at or above ``warning`` warns, at or above ``critical`` is critical; None disables a level.

    Example:
        >>> Threshold(10, 100).level(50)
        <AlertLevel.WARNING: 1>
    """

    warning: float | None = attrs.field(default=None, validator=_level_bound)
    critical: float | None = attrs.field(default=None, validator=_level_bound)

    def __attrs_post_init__(self) -> None:
        if self.warning is not None and self.critical is not None and self.critical < self.warning:
            raise ConfigError(f"Threshold critical ({self.critical}) must be >= warning ({self.warning})")

    def level(self, value: float) -> AlertLevel:
        """The level a reading is at."""
        if self.critical is not None and value >= self.critical:
            return AlertLevel.CRITICAL
        if self.warning is not None and value >= self.warning:
            return AlertLevel.WARNING
        return AlertLevel.OK

    def bound(self, level: AlertLevel) -> float | None:
        """The threshold of ``level`` (None for OK)."""
        return {AlertLevel.WARNING: self.warning, AlertLevel.CRITICAL: self.critical}.get(level)


def _threshold(value: Any) -> Threshold:
    if isinstance(value, Threshold):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return Threshold(*value)
    raise ConfigError(f"a threshold must be a Threshold or a (warning, critical) pair, got {value!r}")


def _subject_thresholds(value: Any) -> Mapping[str, Threshold]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"AlertThresholds.subjects must be a mapping of subject to threshold, got {value!r}")
    return types.MappingProxyType({str(k): _threshold(v) for k, v in value.items()})


def _positive(_: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"AlertThresholds.{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen
class AlertThresholds:
    """Every threshold the monitor checks.

    Args:
        queue_depth: pending commands per lane (and tasks queued in the pool).
        breaker_opens: breaker opens within ``window_s``, over all agents.
        worker_restarts: supervised restarts within ``window_s``.
        window_s: how far back opens and restarts count.
        subjects: thresholds for one subject instead of its kind's (``{"lane:prompt":
            (5000, None)}``); ``Threshold()`` never alerts, for a queue filled on purpose.

    Example:
        >>> AlertThresholds(queue_depth=(50, 500), window_s=30).queue_depth.critical
        500
        >>> t = AlertThresholds(subjects={"lane:prompt": Threshold()})
        >>> t.for_subject(AlertKind.QUEUE_DEPTH, "lane:prompt").level(10_000).name
        'OK'
    """

    queue_depth: Threshold = attrs.field(default=Threshold(100, 1000), converter=_threshold)
    breaker_opens: Threshold = attrs.field(default=Threshold(1, 5), converter=_threshold)
    worker_restarts: Threshold = attrs.field(default=Threshold(3, 10), converter=_threshold)
    window_s: float = attrs.field(default=60.0, validator=_positive)
    subjects: Mapping[str, Threshold] = attrs.field(factory=dict, converter=_subject_thresholds, hash=False)

    def for_kind(self, kind: AlertKind) -> Threshold:
        """The threshold of every subject of ``kind`` without one of its own."""
        return getattr(self, kind.value)

    def for_subject(self, kind: AlertKind, subject: str) -> Threshold:
        """The threshold that applies to ``subject``."""
        return self.subjects.get(subject) or self.for_kind(kind)


@attrs.frozen
class Alert:
    """A subject moved to a new level (``level == OK`` means it resolved).

    Attributes:
        kind: what was measured.
        subject: which lane (``"lane:prompt"``), ``"pool"``, ``"breakers"`` or ``"workers"``.
        level: the new level.
        previous: the level before.
        value: the reading that caused the change.
        threshold: the bound of the new level (of the previous one when resolved).
        message: one line for humans.
        ts: the orchestrator clock's reading.
    """

    kind: AlertKind
    subject: str
    level: AlertLevel
    previous: AlertLevel
    value: float
    threshold: float | None
    message: str
    ts: float

    @property
    def resolved(self) -> bool:
        return self.level is AlertLevel.OK


class AlertState:
    """Levels per (kind, subject); :meth:`update` returns the alerts a set of readings causes.

    Not thread-safe: the monitor's actor is its only user.

    Example:
        >>> state = AlertState(AlertThresholds(queue_depth=(10, 100)))
        >>> [a.level.name for a in state.update({(AlertKind.QUEUE_DEPTH, "lane:prompt"): 12}, now=0.0)]
        ['WARNING']
        >>> state.update({(AlertKind.QUEUE_DEPTH, "lane:prompt"): 15}, now=1.0)
        []
    """

    def __init__(self, thresholds: AlertThresholds) -> None:
        self.thresholds = thresholds
        self._levels: dict[tuple[AlertKind, str], AlertLevel] = {}
        self._active: dict[tuple[AlertKind, str], Alert] = {}

    def update(self, readings: Mapping[tuple[AlertKind, str], float], now: float) -> list[Alert]:
        """Apply one poll's readings; a subject absent from them reads 0 (its work is gone)."""
        alerts = []
        for key in sorted({*readings, *self._levels}, key=lambda k: (k[0].value, k[1])):
            kind, subject = key
            value = readings.get(key, 0)
            threshold = self.thresholds.for_subject(kind, subject)
            level = threshold.level(value)
            previous = self._levels.get(key, AlertLevel.OK)
            if level is previous:
                continue
            bound = threshold.bound(level if level is not AlertLevel.OK else previous)
            text = _message(kind, subject, level, previous, value, bound)
            alert = Alert(kind, subject, level, previous, value, bound, text, now)
            alerts.append(alert)
            if level is AlertLevel.OK:
                self._levels.pop(key, None)
                self._active.pop(key, None)
            else:
                self._levels[key] = level
                self._active[key] = alert
        return alerts

    def active(self) -> list[Alert]:
        """The alerts not resolved yet, most severe first."""
        return sorted(self._active.values(), key=lambda a: (-a.level, a.kind.value, a.subject))


def _message(
    kind: AlertKind, subject: str, level: AlertLevel, previous: AlertLevel, value: float, bound: float | None
) -> str:
    what = {
        AlertKind.QUEUE_DEPTH: "pending",
        AlertKind.BREAKER_OPENS: "breaker opens in the window",
        AlertKind.WORKER_RESTARTS: "restarts in the window",
    }[kind]
    if level is AlertLevel.OK:
        return f"{subject}: resolved ({previous.name.lower()}), {value:g} {what} is under {bound:g}"
    return f"{subject}: {level.name.lower()}, {value:g} {what} (threshold {bound:g})"
