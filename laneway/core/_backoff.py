"""Backoff: exponential, capped, jittered delays, for supervisors' restarts and every retry policy (:mod:`laneway.core._retry`)."""

from __future__ import annotations

import random

import attrs

from laneway.errors import ConfigError


def _positive(_: object, attribute: attrs.Attribute, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{attribute.name} must be > 0, got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Backoff:
    """Exponential, capped, jittered delays: ``initial_s * factor**(n-1)``, at most ``max_s``.

    ``jitter`` spreads each delay uniformly by ±that fraction so restarted
    siblings do not stampede together.

    Example:
        >>> Backoff(initial_s=0.1, factor=2, max_s=1, jitter=0).delay(3)
        0.4
    """

    initial_s: float = attrs.field(default=0.1, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=_positive)
    max_s: float = attrs.field(default=30.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.1, validator=_non_negative)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based)."""
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))
        if self.jitter and base:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(base, self.max_s))
