"""Retry policies: lanes' retries, the router's failover, workflows; their delays are a :class:`Backoff`'s."""

from __future__ import annotations

import enum
import random

import attrs

from laneway.core._backoff import Backoff
from laneway.errors import ConfigError


class RetryKind(enum.Enum):
    NONE = "none"
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


def _non_negative_int(_: object, attribute: attrs.Attribute, value: int) -> None:
    if not isinstance(value, int) or value < 0:
        raise ConfigError(f"{attribute.name} must be an int >= 0, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How often and how soon failed work is tried again.

    ``max_retries`` counts retries after the first attempt, so a policy with
    ``max_retries=3`` runs the work at most 4 times. Errors whose type is in
    ``no_retry_on`` (business errors, bad input) are not retried at all.

    Example:
        >>> p = RetryPolicy.exponential(3)
        >>> [p.delay_before(n) for n in (1, 2, 3, 4)]
        [0.1, 0.2, 0.4, None]
    """

    kind: RetryKind = RetryKind.NONE
    max_retries: int = attrs.field(default=0, validator=_non_negative_int)
    backoff: Backoff = attrs.field(factory=lambda: Backoff(initial_s=0.0, jitter=0.0))
    no_retry_on: tuple[type[BaseException], ...] = ()

    @classmethod
    def none(cls) -> RetryPolicy:
        """Never retry."""
        return cls(RetryKind.NONE, 0)

    @classmethod
    def fixed(cls, max_retries: int, delay_s: float, *, no_retry_on: tuple[type[BaseException], ...] = ()) -> RetryPolicy:
        """Retry up to ``max_retries`` times, ``delay_s`` apart."""
        return cls(RetryKind.FIXED, max_retries, Backoff(initial_s=delay_s, factor=1.0, max_s=delay_s, jitter=0.0), no_retry_on)

    @classmethod
    def exponential(
        cls,
        max_retries: int = 3,
        *,
        initial_s: float = 0.1,
        factor: float = 2.0,
        max_s: float = 30.0,
        jitter: float = 0.0,
        no_retry_on: tuple[type[BaseException], ...] = (),
    ) -> RetryPolicy:
        """Retry up to ``max_retries`` times after 100 ms, 200 ms, 400 ms, ... capped at 30 s (defaults)."""
        return cls(RetryKind.EXPONENTIAL, max_retries, Backoff(initial_s, factor, max_s, jitter), no_retry_on)

    @property
    def max_attempts(self) -> int:
        return 1 + self.max_retries

    def delay_before(self, retry: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based); None when retries are used up."""
        if self.kind is RetryKind.NONE or retry > self.max_retries or retry < 1:
            return None
        return self.backoff.delay(retry, rng)

    def retries(self, error: BaseException) -> bool:
        """Whether this kind of error is worth retrying at all."""
        return not isinstance(error, self.no_retry_on)
