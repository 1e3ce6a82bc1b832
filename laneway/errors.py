"""Typed exceptions for every failure laneway reports.

Everything raised on purpose derives from :class:`LanewayError`, so callers can
catch the whole family at once, and each concrete failure has its own class so
they can catch exactly one. Errors that are also a standard condition derive
from the matching builtin too (timeouts are ``TimeoutError``, bad input is
``ValueError``, failed lookups are ``LookupError``).

Sections below belong to one subpackage each; add new errors to the section of
the subpackage that raises them.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import Any


class LanewayError(Exception):
    """Root of every error laneway raises on purpose."""


class ConfigError(LanewayError, ValueError):
    """A spec, option or argument is invalid; the message names which and why."""


class LanewayTimeout(LanewayError, TimeoutError):
    """Something did not finish within its time limit."""


class Cancelled(LanewayError):
    """Work was cancelled before it produced a result."""


class SystemShutdown(LanewayError, RuntimeError):
    """The orchestrator (or the component) is shutting down and takes no new work.

    A ``RuntimeError`` too, as :mod:`concurrent.futures` executors raise after ``shutdown()``.
    """


class Terminated(SystemExit):
    """SIGTERM arrived inside ``with Orchestrator(...)``: the block unwinds, the system shuts down, the process exits 0.

    A ``SystemExit`` (not a :class:`LanewayError`) on purpose: an ``except
    Exception`` in user code must not swallow a request to stop. ``signal``
    holds the signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(0)
        self.signal = signum


# --- actors -----------------------------------------------------------------


class ActorError(LanewayError):
    """Base for failures of actors and supervisors."""


class ActorDead(ActorError):
    """The actor is not running (stopped, crashed, or restarting), so it cannot take the message."""


class ActorCrashed(ActorError):
    """The actor crashed while handling this ask; ``__cause__`` is the original exception.

    Attributes:
        error: the exception raised by the handler.
    """

    def __init__(self, message: str, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.error = error


class ActorProcessDied(ActorCrashed):
    """The process running the actor died (a signal, OOM, segfault, exit) with the message in flight.

    The message names the pid and how the process ended.

    Attributes:
        pid: the dead process's id.
        reason: a short text such as ``"killed by SIGKILL"``.
    """

    def __init__(self, message: str, pid: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.pid = pid
        self.reason = reason


class ActorStartError(ActorError):
    """``on_start`` raised, so the actor never started; ``__cause__`` is the original exception."""


class ActorNotFound(ActorError, LookupError):
    """No actor is registered under that name."""


class NameTaken(ActorError, ValueError):
    """An actor with that name already exists in this orchestrator."""


class UnhandledMessage(ActorError, TypeError):
    """The actor has no handler for this message type."""


class AskTimeout(ActorError, LanewayTimeout):
    """An ask got no reply within its timeout."""


class SupervisorEscalation(ActorError):
    """A supervisor exceeded its restart intensity, stopped its children and gave up."""


# --- pool -------------------------------------------------------------------


class PoolError(LanewayError):
    """Base for process-pool failures."""


class SerializationError(PoolError, TypeError):
    """A function, argument or result could not be pickled for another process."""


class TaskTimeout(LanewayTimeout):
    """A task ran past its timeout: a pool task (its worker was killed and replaced) or a
    workflow task (its cancellation token was cancelled). One error for both, so one
    ``except TaskTimeout`` covers work wherever it ran."""


class RemoteError(PoolError):
    """A task raised in a worker process.

    The error a pool future raises is, where possible, also an instance of the task's own
    exception type (a subclass of both made on the fly, as Ray does), so
    ``except ZeroDivisionError:`` works around ``future.result()``; its ``__cause__`` is the
    original exception rebuilt in this process.

    Attributes:
        type_name: qualified name of the remote exception's type.
        remote_traceback: the remote traceback as text.
    """

    def __init__(self, message: str, type_name: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n\nRemote traceback:\n{self.remote_traceback}" if self.remote_traceback else base


# WorkerDied, InitializerError and PoolDown are also a BrokenProcessPool, whose module
# (concurrent.futures.process) loads multiprocessing's connections and queues: a few
# milliseconds and most of a MB that every worker process (which raises none of them)
# would pay at start-up, and the pool's parent too until something fails. So they are made
# on first use (PEP 562): the pool's modules name them (errors.PoolDown) only where they raise them.

if TYPE_CHECKING:
    from concurrent.futures.process import BrokenProcessPool

    class WorkerDied(PoolError, BrokenProcessPool):
        pid: int | None
        reason: str

        def __init__(self, message: str, pid: int | None = None, reason: str = "") -> None: ...

    class InitializerError(PoolError, BrokenProcessPool): ...

    class PoolDown(PoolError, SystemShutdown, BrokenProcessPool):
        permanent: bool

        def __init__(self, message: str, permanent: bool = False) -> None: ...


_BROKEN_POOL = ("WorkerDied", "InitializerError", "PoolDown")
_making = threading.Lock()


def _broken_pool_errors() -> dict[str, type]:
    from concurrent.futures.process import BrokenProcessPool

    class WorkerDied(PoolError, BrokenProcessPool):
        """The worker process running the task died; the message names pid and signal.

        Also a :class:`concurrent.futures.process.BrokenProcessPool`, so code written for
        ``ProcessPoolExecutor`` catches it; unlike that pool, laneway's pool stays up (the task
        was retried up to its ``attempts`` first, and the worker is replaced).

        Attributes:
            pid: the dead worker's process id.
            reason: a short text such as ``"killed by SIGKILL"``.
        """

        def __init__(self, message: str, pid: int | None = None, reason: str = "") -> None:
            super().__init__(message)
            self.pid = pid
            self.reason = reason

    class InitializerError(PoolError, BrokenProcessPool):
        """The pool's ``initializer`` raised in a worker, so the pool is down; the message names it.

        ``__cause__`` is the initializer's exception (with ``remote_traceback``), when it could be rebuilt.
        """

    class PoolDown(PoolError, SystemShutdown, BrokenProcessPool):
        """The pool cannot take or run tasks; the message names the cause.

        Raised by ``submit`` and ``wait_ready`` while the pool's worker supervisor, having
        given up, waits out its backoff before the pool root restarts it (``permanent`` is
        False: tasks already queued wait for it), and, once the pool root gave up too, for
        good (``permanent`` is True): then every queued task's future fails with it. Also a
        :class:`SystemShutdown` and a ``BrokenProcessPool``.

        Attributes:
            permanent: True once the pool is down for good.
        """

        def __init__(self, message: str, permanent: bool = False) -> None:
            super().__init__(message)
            self.permanent = permanent

    made = {"WorkerDied": WorkerDied, "InitializerError": InitializerError, "PoolDown": PoolDown}
    for name, cls in made.items():
        cls.__qualname__ = name  # pickled by reference as laneway.errors.<name>
    return made


if not TYPE_CHECKING:  # to mypy the classes are declared above; a module __getattr__ would hide typos

    def __getattr__(name: str) -> Any:
        if name not in _BROKEN_POOL:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        with _making:  # one class per name, whichever thread asks first
            if name not in globals():
                globals().update(_broken_pool_errors())
        return globals()[name]


class PoolFull(PoolError):
    """The pool's queue is at its bound and the submit would block."""


class AuthError(PoolError):
    """A transport refused to start or to accept a peer for lack of valid keys."""


# --- lanes ------------------------------------------------------------------


class LaneError(LanewayError):
    """Base for lane and command failures."""


class LaneNotFound(LaneError, LookupError):
    """No lane has that name."""


class LaneFull(LaneError):
    """The lane's queue is at its bound and the submit would block."""


class LaneBusy(LaneError):
    """The lane's estimated wait exceeds the caller's ``max_wait``."""


class LaneShutdown(LaneError, SystemShutdown):
    """The lane manager is shutting down and takes no new commands."""


class CommandCancelled(LaneError, Cancelled):
    """The command was cancelled (queued or running)."""


class Preempted(CommandCancelled):
    """The command was preempted by higher-priority work."""


class CommandTimeout(LaneError, LanewayTimeout):
    """The command ran past its timeout."""


class PriorityOutOfRange(LaneError, ConfigError):
    """A command or tool priority is neither a ``Priority`` nor an int on its scale (0 CRITICAL .. 4 BACKGROUND)."""


class ToolNotFound(LaneError, LookupError):
    """No tool is registered under that name."""


class ToolParameterError(LaneError, ValueError):
    """A tool was called with missing, unknown or wrongly-typed parameters."""


class ParallelNotAllowed(LaneError):
    """A tool not marked ``parallel_allowed`` was given to a parallel execution."""


# --- router and breakers ----------------------------------------------------


class RouterError(LanewayError):
    """Base for routing failures."""


class AgentNotFound(RouterError, LookupError):
    """No agent is registered under that id."""


class NoCapableAgent(RouterError, LookupError):
    """No registered agent has the capabilities at all, so waiting cannot help."""


class NoEligibleAgent(RouterError, LanewayTimeout):
    """Agents with the capabilities exist but none became eligible before the timeout."""


class CircuitOpen(RouterError):
    """The agent's circuit breaker is open and rejects calls."""


class AgentTimeout(RouterError, LanewayTimeout):
    """The task's deadline passed while an agent was running it."""


class RouterRestarted(RouterError):
    """The router actor crashed while an agent ran the task; its supervisor restarted it.

    The attempt's result was lost with the crashed router's state, so the task
    fails (and is dead-lettered, re-submittable); tasks that had not started
    are routed again by the restarted router instead.
    """


# --- workflow and store -----------------------------------------------------


class WorkflowError(LanewayError):
    """Base for workflow failures."""


class WorkflowValidationError(WorkflowError, ValueError):
    """A workflow definition is invalid (unknown dependency, duplicate id, cycle)."""


class CycleError(WorkflowValidationError):
    """The workflow's dependencies form a cycle.

    Attributes:
        cycle: the task ids along the cycle, first repeated at the end.
    """

    def __init__(self, message: str, cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.cycle = cycle


class WorkflowNotFound(WorkflowError, LookupError):
    """No workflow has that id."""


class WorkflowStateError(WorkflowError):
    """The operation is not allowed in the workflow's current state (e.g. rollback while tasks run)."""


class WorkflowFailed(WorkflowError):
    """A workflow ended failed or cancelled.

    Attributes:
        status: the workflow's final :class:`~laneway.workflow.WorkflowStatus`.
    """

    def __init__(self, message: str, status: object = None) -> None:
        super().__init__(message)
        self.status = status


class HandoffValidationError(WorkflowError, ValueError):
    """A handoff message violates its JSON Schema.

    Attributes:
        violations: one text per violation, each naming the field path.
    """

    def __init__(self, message: str, violations: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations


class StoreError(LanewayError):
    """The persistence store failed or holds no such record."""


class StoreFenced(StoreError):
    """A write was refused because its fencing check failed (the writer lost its lease); nothing was written."""


class VersionNotFound(StoreError, LookupError):
    """The requested version does not exist."""


# -- console -------------------------------------------------------------------------------


class ConsoleError(LanewayError):
    """The web console cannot start or serve as asked (its extra is missing, the address is taken)."""


class ConsoleOperationError(ConsoleError, ValueError):
    """A console operation was unknown or its arguments were wrong; the message names which and what is accepted."""


# --- cluster ----------------------------------------------------------------


class ClusterError(LanewayError):
    """Base of errors from several orchestrator nodes sharing one PostgreSQL store."""


class NodeNameTaken(ClusterError, ValueError):
    """Another live node (its lease not expired) already uses this node name."""


class LeaseLost(ClusterError):
    """This node's lease expired or was taken over (it was paused or cut off); its work was adopted elsewhere."""


class CommandFailed(ClusterError):
    """A cluster command failed on the node that ran it; the message carries that node's error text."""
