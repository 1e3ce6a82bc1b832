"""Capability routing of tasks to α-role agents, each behind a circuit-breaker actor.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="doc") as orch:
    ...     _ = orch.register_agent("upper", AlphaRole.EXECUTOR, {"text"}, 2, str.upper)
    ...     orch.router.run("hi", capabilities={"text"}, timeout=10)
    'HI'
"""

from laneway.router._records import AgentInfo, AgentOptions, RoutedWork, RouterStatistics, RoutingStrategy
from laneway.router._roles import AlphaRole
from laneway.router._router import Router
from laneway.router._select import AgentIndex, AgentSlot, pick

__all__ = [
    "AgentIndex",
    "AgentInfo",
    "AgentOptions",
    "AgentSlot",
    "AlphaRole",
    "RoutedWork",
    "Router",
    "RouterStatistics",
    "RoutingStrategy",
    "pick",
]
