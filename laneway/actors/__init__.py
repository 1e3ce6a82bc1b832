"""Actors on pykka, supervisor trees, restart policies and the Orchestrator.

Example:
    >>> import attrs
    >>> from laneway.actors import Actor, Orchestrator, handler
    >>> @attrs.frozen
    ... class Get: pass
    >>> class Answer(Actor):
    ...     @handler(Get)
    ...     def _get(self, msg): return 42
    >>> with Orchestrator(name="doc") as orch:
    ...     orch.spawn(Answer, name="answer").ask(Get(), timeout=1)
    42
"""

from laneway.actors._actor import Actor, ActorRef, Exit, ExitKind, handler
from laneway.actors._dead_letters import DeadLetter, DeadLetterQueue
from laneway.actors._clock import Clock, ManualClock, MonotonicClock, TimerHandle
from laneway.actors._future import Future, resolved
from laneway.actors._orchestrator import Orchestrator, ShutdownReport
from laneway.actors._specs import (
    Backoff,
    ChildInfo,
    ChildSpec,
    ChildState,
    OneForAll,
    OneForOne,
    RestartType,
    RestForOne,
    Strategy,
    StrategyKind,
)
from laneway.actors._threads import DaemonThreads, LoopThread
from laneway.actors._supervisor import Supervisor, SupervisorRef, supervisor_spec

__all__ = [
    "Actor",
    "ActorRef",
    "Backoff",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "Clock",
    "DaemonThreads",
    "DeadLetter",
    "DeadLetterQueue",
    "Exit",
    "ExitKind",
    "Future",
    "LoopThread",
    "ManualClock",
    "MonotonicClock",
    "OneForAll",
    "OneForOne",
    "Orchestrator",
    "RestForOne",
    "RestartType",
    "ShutdownReport",
    "Strategy",
    "StrategyKind",
    "Supervisor",
    "SupervisorRef",
    "TimerHandle",
    "handler",
    "resolved",
    "supervisor_spec",
]
