"""Circuit breakers: a thread-safe, clock-driven breaker and the actor that wraps an agent with one.

Closed -> open after N consecutive failures (or a failure ratio over a
window); open rejects at once with :class:`~laneway.errors.CircuitOpen`;
after the reset timeout exactly one probe goes through (half-open); M
successful probes close it, a failed probe reopens it with the reset timeout
backed off exponentially. Each transition of a :class:`BreakerActor` is
published as ``agent.circuit.state`` with ``agent_id``, ``from`` and ``to``.

Example:
    >>> from laneway.actors import ManualClock
    >>> clock = ManualClock()
    >>> cb = CircuitBreaker("tool", BreakerConfig(failure_threshold=1, reset_timeout_s=10), clock=clock)
    >>> permit = cb.acquire()
    >>> cb.record(permit, RuntimeError("down"))
    <BreakerState.OPEN: 'open'>
    >>> cb.try_acquire() is None
    True
    >>> clock.advance(10); cb.tick()
    <BreakerState.HALF_OPEN: 'half_open'>
"""

from laneway.breakers._actor import BreakerActor, CallOutcome, GetBreakerStatistics, GuardedCall
from laneway.breakers._breaker import CircuitBreaker
from laneway.breakers._config import BreakerConfig, BreakerState, BreakerStatistics, Transition
from laneway.breakers._states import Permit

__all__ = [
    "BreakerActor",
    "BreakerConfig",
    "BreakerState",
    "BreakerStatistics",
    "CallOutcome",
    "CircuitBreaker",
    "GetBreakerStatistics",
    "GuardedCall",
    "Permit",
    "Transition",
]
