"""The Orchestrator: root of one actor system, owner of its clock, events and subsystems."""

from __future__ import annotations

import atexit
import os
import logging
import threading
import weakref
from typing import Any, Callable, Iterable, TypeVar

import attrs

from laneway.actors._actor import SHUTDOWN_EXIT, Actor, ActorRef, Exit, _Cell
from laneway.actors._clock import Clock, MonotonicClock
from laneway.actors._dead_letters import DeadLetterQueue
from laneway.actors._specs import ChildSpec, Strategy
from laneway.actors._supervisor import Supervisor, SupervisorRef
from laneway.errors import ActorNotFound, ConfigError, NameTaken, SystemShutdown
from laneway.observe._events import EventBus

log = logging.getLogger(__name__)

C = TypeVar("C")

_live: weakref.WeakSet[Orchestrator] = weakref.WeakSet()


@atexit.register
def _shutdown_leftovers() -> None:
    # An orchestrator the program forgot to shut down must still not leave
    # worker processes or threads behind.
    for orch in list(_live):
        try:
            orch.shutdown(timeout=2.0)
        except Exception:
            log.exception("shutdown of %s at exit failed", orch.name)


@attrs.frozen
class ShutdownReport:
    """What :meth:`Orchestrator.shutdown` did.

    Attributes:
        stopped: names of actors that stopped in time, in stop order.
        stuck: names of actors that did not stop in time and were abandoned.
        errors: texts of component shutdown hooks that raised.
    """

    stopped: tuple[str, ...] = ()
    stuck: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.stuck and not self.errors


class Orchestrator:
    """The root of a laneway actor system.

    Owns the actor names, the event stream (:attr:`events`), the clock
    (:attr:`clock`) and the subsystems built on top (pool, lanes, router,
    workflows), which start lazily on first use. Use it as a context manager
    so everything stops, in reverse start order, when the block ends.

    Args:
        name: the system's name, used in logs and events.
        clock: time source for backoff, breakers, retries; a
            :class:`~laneway.actors.ManualClock` in tests.
        ask_timeout: default seconds an ``ask`` waits for its reply.
        shutdown_timeout: default seconds each top-level actor gets to stop.
        store: where durable state goes (lanes' pending commands, dead letters,
            workflows): a :class:`~laneway.store.Store`, a path for a SQLite
            file, or a ``postgresql://`` URL (needs ``laneway[postgres]``).
            None keeps everything in memory. A store given by path or URL is
            closed at shutdown.

    Example:
        >>> with Orchestrator(name="demo") as orch:
        ...     ref = orch.spawn(Counter, name="counter")      # doctest: +SKIP
        ...     ref.ask(Get(), timeout=1)                      # doctest: +SKIP
    """

    def __init__(
        self,
        name: str = "laneway",
        *,
        clock: Clock | None = None,
        ask_timeout: float = 30.0,
        shutdown_timeout: float = 10.0,
        store: Any = None,
    ) -> None:
        if ask_timeout <= 0 or shutdown_timeout <= 0:
            raise ConfigError("ask_timeout and shutdown_timeout must be > 0")
        self.name = name
        self.clock: Clock = clock or MonotonicClock()
        self.ask_timeout = ask_timeout
        self.shutdown_timeout = shutdown_timeout
        self.events = EventBus(self.clock.now)
        self._owns_store = isinstance(store, (str, os.PathLike))
        self.store = _open_store(store)
        self.dead_letters = DeadLetterQueue(self.store, self.events)
        self._lock = threading.RLock()
        self._creating = threading.RLock()
        self._names: dict[str, ActorRef] = {}
        self._top: list[tuple[ActorRef, float]] = []
        self._components: dict[str, Any] = {}
        self._hooks: list[tuple[str, Callable[[float], Any]]] = []
        self._stuck: list[str] = []
        self._closed = False
        self._report: ShutdownReport | None = None
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Orchestrator {self.name} {'shut down' if self._closed else 'running'}>"

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # actors ------------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[..., Actor],
        *args: Any,
        name: str,
        shutdown_timeout: float | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start a top-level actor and wait until its ``on_start`` finished.

        A top-level actor is not restarted when it crashes (the crash is
        published as ``actor.crashed``); put actors that must come back under
        a supervisor.

        Args:
            factory: an Actor subclass or a callable returning an Actor.
            *args, **kwargs: passed to ``factory``.
            name: unique name in this orchestrator.
            shutdown_timeout: seconds this actor gets to stop at shutdown.

        Raises:
            NameTaken: the name is in use.
            ActorStartError: construction or ``on_start`` raised.
            SystemShutdown: the orchestrator is shut down.
        """
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"actor name must be a non-empty string without '/', got {name!r}")
        ref_class = getattr(factory, "ref_class", ActorRef)
        ref = ref_class(name, self)
        with self._lock:
            if self._closed:
                raise SystemShutdown(f"orchestrator {self.name} is shut down; cannot spawn {name!r}")
            self._register(ref)
        try:
            ref._start(factory, args, kwargs, self._top_exit)
        except Exception:
            self._unregister(name)
            raise
        with self._lock:
            self._top.append((ref, self.shutdown_timeout if shutdown_timeout is None else shutdown_timeout))
        return ref

    def spawn_supervisor(
        self,
        name: str,
        *,
        strategy: Strategy | None = None,
        children: Iterable[ChildSpec] = (),
        shutdown_timeout: float | None = None,
    ) -> SupervisorRef:
        """Start a top-level supervisor with its initial children (started in order).

        Example:
            >>> sup = orch.spawn_supervisor("workers", strategy=OneForOne(max_restarts=3, within_s=5))  # doctest: +SKIP
        """
        return self.spawn(  # type: ignore[return-value]
            Supervisor, name=name, strategy=strategy, children=list(children), shutdown_timeout=shutdown_timeout
        )

    def lookup(self, name: str) -> ActorRef:
        """The actor registered under ``name`` (children are ``"parent/child"``).

        Raises:
            ActorNotFound: no such name.
        """
        try:
            return self._names[name]
        except KeyError:
            raise ActorNotFound(f"no actor named {name!r} in orchestrator {self.name}") from None

    def actor_names(self) -> list[str]:
        """Every registered name, sorted."""
        with self._lock:
            return sorted(self._names)

    def _register(self, ref: ActorRef) -> None:
        with self._lock:
            if ref.name in self._names:
                raise NameTaken(f"an actor named {ref.name!r} already exists in orchestrator {self.name}")
            self._names[ref.name] = ref

    def _unregister(self, name: str) -> None:
        with self._lock:
            self._names.pop(name, None)

    def _top_exit(self, cell: _Cell, exit: Exit) -> None:
        """Top-level actors have no supervisor: their end is only reported (as events, by the cell)."""

    def _report_stuck(self, name: str) -> None:
        with self._lock:
            self._stuck.append(name)

    # subsystems ----------------------------------------------------------------

    def component(self, key: str, factory: Callable[[Orchestrator], C]) -> C:
        """The subsystem stored under ``key``, created by ``factory(self)`` on first use.

        Subsystems (pool, lanes, router) use this so that importing laneway
        starts nothing and each system gets its own instances.
        """
        found = self._components.get(key)
        if found is not None:
            return found
        # A factory spawns actors, whose start registers names under self._lock
        # from other threads; so creation is serialised by its own lock.
        with self._creating:
            found = self._components.get(key)
            if found is None:
                if self._closed:
                    raise SystemShutdown(f"orchestrator {self.name} is shut down; cannot start {key}")
                found = factory(self)
                with self._lock:
                    self._components[key] = found
            return found

    def started_component(self, key: str) -> Any:
        """The subsystem stored under ``key`` if something started it, else None; never starts one.

        Lets observers (metrics, monitor, dashboard) report on a subsystem
        without starting it as a side effect.
        """
        with self._lock:
            return self._components.get(key)

    def on_shutdown(self, label: str, hook: Callable[[float], Any]) -> None:
        """Run ``hook(timeout_s)`` at shutdown, before actors stop; hooks run in reverse order of registration."""
        with self._lock:
            self._hooks.append((label, hook))

    def _start_component(self, key: str, factory: Callable[[Orchestrator], C]) -> C:
        with self._creating:
            if key in self._components:
                raise ConfigError(f"{key} is already started in orchestrator {self.name}; configure it before first use")
            return self.component(key, factory)

    # Subsystem accessors. Each subsystem's constructor takes (orchestrator, **config)
    # and registers its own shutdown hook; imports are lazy so `import laneway`
    # starts nothing and never imports optional extras.

    def start_pool(self, **config: Any) -> Any:
        """Start the process pool with options (see :class:`laneway.pool.Pool`); call before first use of :attr:`pool`."""
        from laneway.pool import Pool

        return self._start_component("pool", lambda o: Pool(o, **config))

    @property
    def pool(self) -> Any:
        """The process pool (started with defaults on first use)."""
        from laneway.pool import Pool

        return self.component("pool", Pool)

    def start_lanes(self, **config: Any) -> Any:
        """Start the lane manager with options (see :class:`laneway.lanes.LaneManager`)."""
        from laneway.lanes import LaneManager

        return self._start_component("lanes", lambda o: LaneManager(o, **config))

    @property
    def lanes(self) -> Any:
        """The lane manager (default lanes on first use)."""
        from laneway.lanes import LaneManager

        return self.component("lanes", LaneManager)

    def start_router(self, **config: Any) -> Any:
        """Start the router with options (see :class:`laneway.router.Router`)."""
        from laneway.router import Router

        return self._start_component("router", lambda o: Router(o, **config))

    @property
    def router(self) -> Any:
        """The capability router (started on first use)."""
        from laneway.router import Router

        return self.component("router", Router)

    def register_agent(self, agent_id: str, role: Any, capabilities: Iterable[str], max_concurrent: int, handler: Callable[..., Any], **options: Any) -> Any:
        """Register an agent with the router; see :meth:`laneway.router.Router.register_agent`."""
        return self.router.register_agent(agent_id, role, capabilities, max_concurrent, handler, **options)

    @property
    def workflows(self) -> Any:
        """The workflow engine (started on first use)."""
        from laneway.workflow import WorkflowEngine

        return self.component("workflows", WorkflowEngine)

    @property
    def metrics(self) -> Any:
        """The metrics registry (started on first use)."""
        from laneway.observe import Metrics

        return self.component("metrics", Metrics)

    # shutdown ------------------------------------------------------------------

    def shutdown(self, timeout: float | None = None) -> ShutdownReport:
        """Stop everything: subsystem hooks, then top-level actors in reverse start order.

        Never hangs: an actor that does not stop within its timeout is
        abandoned (its thread is a daemon), published as ``actor.stuck`` and
        listed in the report. Calling it again returns the first report.

        Args:
            timeout: seconds each hook and each top-level actor gets; default ``shutdown_timeout``.
        """
        with self._lock:
            if self._report is not None:
                return self._report
            if self._closed:
                return ShutdownReport()
            self._closed = True
            hooks = list(reversed(self._hooks))
            top = list(reversed(self._top))
        per_step = self.shutdown_timeout if timeout is None else timeout
        self.events.publish("system.shutdown.started", self.name)
        errors: list[str] = []
        for label, hook in hooks:
            try:
                hook(per_step)
            except Exception as exc:
                log.exception("shutdown hook %s raised", label)
                errors.append(f"{label}: {exc!r}")
        stopped: list[str] = []
        for ref, own_timeout in top:
            cell = ref._cell
            if cell is None or cell.exited.is_set():
                continue
            cell.request_stop(SHUTDOWN_EXIT)
            if cell.exited.wait(min(own_timeout, per_step) if timeout is not None else own_timeout):
                stopped.append(ref.name)
            else:
                log.error("%s did not stop in time; abandoning it", ref.name)
                self.events.publish("actor.stuck", ref.name)
                self._report_stuck(ref.name)
        self.clock.close()
        if self.store is not None and self._owns_store:
            self.store.close()
        with self._lock:
            self._report = ShutdownReport(tuple(stopped), tuple(dict.fromkeys(self._stuck)), tuple(errors))
            self._names.clear()
        _live.discard(self)
        self.events.publish("system.shutdown.completed", self.name, stuck=self._report.stuck)
        return self._report

    @property
    def is_shut_down(self) -> bool:
        return self._closed


def _open_store(store: Any) -> Any:
    from laneway.store import open_store  # the store package owns what a store spec may be

    return open_store(store)
