"""A plain function behind a supervised actor, so it can run in a process of its own (agents use this)."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable

import attrs

from laneway.actors._actor import Actor, ActorRef, handler
from laneway.actors._specs import ChildSpec, OneForOne, Placement
from laneway.errors import ConfigError

if TYPE_CHECKING:
    from laneway.actors._supervisor import SupervisorRef
    from laneway.actors._system import ActorSystem


@attrs.frozen
class Call:
    """Call the actor's function with ``payload``."""

    payload: Any


class FunctionActor(Actor):
    """Runs ``fn(payload)`` for each :class:`Call`, one at a time; what ``fn`` raises goes back to the caller.

    An exception of ``fn`` is the call's failure, not the actor's: it is
    replied and the actor keeps running. Only the death of its process
    crashes it (and its supervisor restarts it).
    """

    reply_errors = (Exception,)

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    @handler(Call)
    def _call(self, msg: Call) -> Any:
        result = self.fn(msg.payload)
        if inspect.isawaitable(result):
            import asyncio

            async def wait() -> Any:
                return await result

            return asyncio.run(wait())
        return result


class FunctionRef:
    """A callable ``ref(payload)`` that asks the function's actor and returns its result.

    Attributes:
        supervisor: the supervisor that restarts the actor; :meth:`stop` stops both.
    """

    def __init__(self, supervisor: SupervisorRef, actor: ActorRef, timeout: float | None) -> None:
        self.supervisor = supervisor
        self.actor = actor
        self.timeout = timeout

    def __call__(self, payload: Any) -> Any:
        return self.actor.ask(Call(payload), timeout=self.timeout)

    def stop(self, timeout: float = 5.0) -> bool:
        return self.supervisor.stop(timeout=timeout)


def function_actor(
    system: ActorSystem,
    fn: Callable[[Any], Any],
    *,
    name: str,
    placement: Placement | str = Placement.PROCESS,
    group: str | None = None,
    timeout: float | None = None,
    max_restarts: int = 10,
    within_s: float = 60.0,
) -> FunctionRef:
    """Start ``fn`` behind a supervised :class:`FunctionActor` and return a callable that calls it there.

    The supervisor (``name``) restarts the actor, in a new process for
    ``placement="process"``, if its process dies; a call in flight then
    raises :class:`~laneway.errors.ActorProcessDied`.

    Args:
        fn: a picklable callable taking one payload (sync, or async run with ``asyncio.run``).
        name: the supervisor's name; the actor is ``"<name>/fn"``.
        timeout: seconds each call waits (None: the system's ``ask_timeout``).

    Example:
        >>> call = function_actor(system, len, name="len", placement="thread")   # doctest: +SKIP
        >>> call("abc")                                                          # doctest: +SKIP
        3
    """
    if not callable(fn):
        raise ConfigError(f"fn must be callable, got {fn!r}")
    spec = ChildSpec(FunctionActor, name="fn", args=(fn,), placement=placement, group=group)
    sup = system.spawn_supervisor(name, strategy=OneForOne(max_restarts=max_restarts, within_s=within_s), children=[spec])
    return FunctionRef(sup, sup.child("fn"), timeout)
