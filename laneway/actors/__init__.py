"""Actors on pykka, supervisor trees, restart policies and the actor system they live in.

Example:
    >>> import attrs
    >>> from laneway.actors import Actor, ActorSystem, handler
    >>> @attrs.frozen
    ... class Get: pass
    >>> class Answer(Actor):
    ...     @handler(Get)
    ...     def _get(self, msg): return 42
    >>> with ActorSystem(name="doc") as orch:
    ...     orch.spawn(Answer, name="answer").ask(Get(), timeout=1)
    42
"""

from typing import TYPE_CHECKING, Any

from laneway.core import DeadLetter, DeadLetterQueue
from laneway.core import Clock, ManualClock, MonotonicClock, TimerHandle
from laneway.core import Future, resolved
from laneway.actors._system import ActorSystem, ShutdownReport
from laneway.actors._specs import (
    Backoff,
    ChildInfo,
    ChildSpec,
    ChildState,
    OneForAll,
    OneForOne,
    Placement,
    RestartType,
    RestForOne,
    Strategy,
    StrategyKind,
)

if TYPE_CHECKING:
    from laneway.actors._actor import Actor, ActorRef, Exit, ExitKind, handler
    from laneway.actors._supervisor import Supervisor, SupervisorRef, supervisor_spec
    from laneway.actors._function_actor import FunctionActor, FunctionRef, function_actor
    from laneway.core import DaemonThreads, LoopThread
    from laneway.actors._proc_remote import ActorHostInfo, RemoteActorHosts
    from laneway.actors._remote_host import ActorHostConfig, run_actor_host

def __getattr__(name: str) -> Any:
    # Actors, supervisors (and pykka under them) load with the first of their names used, or the
    # first actor spawned: an Orchestrator is built, and its pool's worker interpreters launched,
    # before it needs them (see Orchestrator.start_pool). Function actors and the loop threads
    # load on first use too, as do the kernel's names they come from (see laneway.core), and
    # remote actor hosting, which pulls in ZeroMQ.
    module: Any
    if name in ("Actor", "ActorRef", "Exit", "ExitKind", "handler"):
        from laneway.actors import _actor as module
    elif name in ("Supervisor", "SupervisorRef", "supervisor_spec"):
        from laneway.actors import _supervisor as module
    elif name in ("FunctionActor", "FunctionRef", "function_actor"):
        from laneway.actors import _function_actor as module
    elif name in ("DaemonThreads", "LoopThread"):
        import laneway.core as module
    elif name in ("ActorHostInfo", "RemoteActorHosts"):
        from laneway.actors import _proc_remote as module
    elif name in ("ActorHostConfig", "run_actor_host"):
        from laneway.actors import _remote_host as module
    else:
        raise AttributeError(f"module 'laneway.actors' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


__all__ = [
    "Actor",
    "ActorHostConfig",
    "ActorHostInfo",
    "ActorRef",
    "ActorSystem",
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
    "FunctionActor",
    "FunctionRef",
    "Future",
    "LoopThread",
    "ManualClock",
    "MonotonicClock",
    "OneForAll",
    "OneForOne",
    "Placement",
    "RemoteActorHosts",
    "RestForOne",
    "RestartType",
    "ShutdownReport",
    "Strategy",
    "StrategyKind",
    "Supervisor",
    "SupervisorRef",
    "TimerHandle",
    "function_actor",
    "handler",
    "resolved",
    "run_actor_host",
    "supervisor_spec",
]


def __dir__() -> list[str]:
    """The module's names, including those loaded on first use (PEP 562)."""
    return sorted(set(globals()) | set(__all__))
