"""laneway: an actor-model runtime for orchestrating AI agents and their tools.

Start with :class:`Orchestrator`; everything else hangs off it.

Layers (each imports only from layers below it; the test suite checks this
with the import-linter contract in pyproject.toml, so there are no import cycles)::

    laneway.cli                          the `laneway` command: demo, bench, worker, keys, serve
    laneway.orchestrator                 the composition root: wires the subsystems together
    laneway.console                      the web console: live views and operations in a browser
    laneway.observe                      metrics, monitor, alerts, dashboard, exporters
    laneway.cluster                      several nodes on one PostgreSQL: leases, failover, fencing
    laneway.workflow                     DAG workflows, versioned state, checkpoints
    laneway.router                       capability routing behind breakers
    laneway.lanes | laneway.pool | laneway.breakers
                                         priority lanes; worker processes; circuit breakers
    laneway.actors                       actors, refs, supervisors, the actor system
    laneway.core | laneway.worker        the kernel: clock and timers, futures, events,
                                         progress, cancellation, backoff/retry, dead
                                         letters, loop threads, the effect outbox;
                                         beside it what runs inside a worker process
                                         (task runner, codec, wire format, keys)
    laneway.store                        durable state: SQLite, PostgreSQL
    laneway.errors                       the exception hierarchy

Siblings on one line do not import each other; a subsystem that needs another
is given it by the orchestrator through a small Protocol (for example lanes
get a :class:`laneway.core.CpuRunner` provider, not the pool). A package is
used from outside only through the names its ``__init__`` exports.

``import laneway`` stays light: :class:`Orchestrator` is imported on first use.

Example:
    >>> from laneway import Orchestrator
    >>> with Orchestrator(name="demo") as orch:
    ...     pass
"""

from __future__ import annotations

import logging

from laneway import errors

TYPE_CHECKING = False  # True to mypy; typing itself costs a worker's start ~3 ms (see laneway.worker)
if TYPE_CHECKING:
    from typing import Any

    from laneway.orchestrator import Orchestrator

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["Orchestrator", "errors"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The Orchestrator pulls in every subsystem (pykka, zmq, rich...): load it on
    # first use, so `import laneway` and worker processes stay light.
    if name == "Orchestrator":
        from laneway.orchestrator import Orchestrator

        return Orchestrator
    raise AttributeError(f"module 'laneway' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, including those loaded on first use (PEP 562)."""
    return sorted(set(globals()) | set(__all__))
