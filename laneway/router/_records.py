"""Router records: strategies, per-agent options, introspection snapshots, dead-letter payloads."""

from __future__ import annotations

import enum
from typing import Any, Iterable, Mapping

import attrs

from laneway.breakers import BreakerConfig, BreakerState
from laneway.errors import ConfigError
from laneway.core import RetryPolicy
from laneway.lanes import Priority
from laneway.router._roles import AlphaRole


class RoutingStrategy(enum.Enum):
    """How the router picks among the eligible agents."""

    LEAST_BUSY = "least_busy"  #: lowest in-flight / max_concurrent; ties go to the least recently picked
    ROUND_ROBIN = "round_robin"  #: the least recently picked eligible agent
    RANDOM = "random"  #: at random, in proportion to each agent's ``weight``
    LATENCY_WEIGHTED = "latency_weighted"  #: at random, in proportion to ``weight`` / observed mean latency

    @classmethod
    def coerce(cls, value: Any) -> RoutingStrategy:
        """A member, or its value such as ``"round_robin"``.

        Raises:
            ConfigError: no such strategy.
        """
        if isinstance(value, RoutingStrategy):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"strategy must be one of {[s.value for s in cls]}, got {value!r}") from None


def capability_set(value: Any, what: str) -> frozenset[str]:
    """Capabilities as a frozenset; a single string is one capability.

    Raises:
        ConfigError: not strings, or an empty one.
    """
    items: Iterable[Any] = (value,) if isinstance(value, str) else value
    try:
        caps = frozenset(items)
    except TypeError:
        raise ConfigError(f"{what} must be a string or an iterable of strings, got {value!r}") from None
    bad = [c for c in caps if not isinstance(c, str) or not c]
    if bad:
        raise ConfigError(f"{what} must be non-empty strings, got {sorted(map(repr, bad))}")
    return caps


@attrs.frozen
class AgentOptions:
    """The optional keywords of :meth:`Router.register_agent`.

    Attributes:
        breaker: this agent's breaker thresholds (None: the router's).
        cpu_bound: run the handler on the process pool (``orch.pool``).
        weight: relative share under the RANDOM and LATENCY_WEIGHTED strategies.
    """

    breaker: BreakerConfig
    cpu_bound: bool = False
    weight: float = 1.0

    @classmethod
    def parse(cls, options: Mapping[str, Any], default_breaker: BreakerConfig) -> AgentOptions:
        """Validate ``options``; ``breaker`` may be a BreakerConfig or a mapping of fields to override.

        Raises:
            ConfigError: an unknown option or a bad value.
        """
        known = {"breaker", "cpu_bound", "weight"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown agent options {unknown}; known: {sorted(known)}")
        breaker = options.get("breaker")
        if breaker is None:
            breaker = default_breaker
        elif isinstance(breaker, Mapping):
            breaker = default_breaker.merged(breaker)
        elif not isinstance(breaker, BreakerConfig):
            raise ConfigError(f"breaker must be a BreakerConfig or a mapping of its fields, got {breaker!r}")
        cpu_bound = options.get("cpu_bound", False)
        if not isinstance(cpu_bound, bool):
            raise ConfigError(f"cpu_bound must be a bool, got {cpu_bound!r}")
        weight = options.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0:
            raise ConfigError(f"weight must be a number > 0, got {weight!r}")
        return cls(breaker, cpu_bound, float(weight))


@attrs.frozen
class AgentInfo:
    """A snapshot of one agent, from :meth:`Router.agents`.

    Attributes:
        agent_id: its id.
        role: its α-role.
        capabilities: what it can do.
        max_concurrent: how many tasks it may run at once.
        in_flight: tasks it runs now.
        load: ``in_flight / max_concurrent``.
        completed: tasks it finished successfully.
        failed: tasks that failed on it (each failed attempt counts).
        rejected: tasks its breaker turned away (rerouted, not failed).
        breaker: its circuit breaker's state.
        mean_latency_s: mean run time of its finished tasks, None before the first.
        cpu_bound: whether its handler runs on the process pool.
        weight: its share under weighted strategies.
    """

    agent_id: str
    role: AlphaRole
    capabilities: frozenset[str]
    max_concurrent: int
    in_flight: int
    load: float
    completed: int
    failed: int
    rejected: int
    breaker: BreakerState
    mean_latency_s: float | None
    cpu_bound: bool
    weight: float


@attrs.frozen
class RouterStatistics:
    """A snapshot of the router, from :meth:`Router.statistics`.

    Attributes:
        strategy: the routing strategy.
        agents: agents registered.
        submitted: tasks submitted so far.
        waiting: tasks waiting for an eligible agent.
        running: tasks running on an agent.
        retry_pending: tasks waiting out a retry delay.
        completed: tasks whose future got a result.
        failed: tasks whose future got an error.
        retries: retries started (failovers included).
        rejections: dispatches an open breaker turned away (each one rerouted).
        dead_lettered: tasks put in the dead-letter queue.
    """

    strategy: RoutingStrategy
    agents: int
    submitted: int
    waiting: int
    running: int
    retry_pending: int
    completed: int
    failed: int
    retries: int
    rejections: int
    dead_lettered: int


@attrs.frozen
class RoutedWork:
    """What a router dead letter carries, so :meth:`DeadLetterQueue.resubmit` can route it again.

    Attributes:
        payload: the task's payload.
        capabilities: the capabilities it needs.
        role: the role it asked for, if any.
        context: the workflow context it carried.
        retry: its retry policy (None: the router's).
        priority: its priority.
    """

    payload: Any
    capabilities: tuple[str, ...]
    role: AlphaRole | None = None
    context: Any = None
    retry: RetryPolicy | None = None
    priority: Priority = Priority.NORMAL


def coerce_priority(value: Any) -> Priority:
    """A routed task's priority: a lanes :class:`~laneway.lanes.Priority` or its int (0 CRITICAL .. 4 BACKGROUND).

    None means NORMAL, as in the lanes.

    Raises:
        ConfigError: anything else.
    """
    if value is None:
        return Priority.NORMAL
    if isinstance(value, Priority):
        return value
    if type(value) is int and 0 <= value <= 4:
        return Priority(value)
    raise ConfigError(
        f"priority must be a Priority or an int from 0 (CRITICAL, dispatched first) to 4 (BACKGROUND), got {value!r}"
    )
