"""The Orchestrator: the composition root, an actor system plus the subsystems wired together.

This is the one module that knows every subsystem. Each subsystem is given
the :class:`~laneway.actors.ActorSystem` it runs on and, where it needs
another subsystem, a provider typed by a small Protocol (lanes and the router
get a :class:`~laneway.core.CpuRunner` provider, workflows a router provider),
so no subsystem looks another one up.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

from laneway.actors import ActorSystem, Placement
from laneway.errors import ConfigError, SystemShutdown, Terminated

if TYPE_CHECKING:
    # Each subsystem is imported when it is first built (below): a program that starts only
    # a pool loads actors, core, pool and worker, not lanes, workflows, observe or the cluster.
    from laneway.actors import FunctionRef
    from laneway.cluster import ClusterNode
    from laneway.console import Console
    from laneway.lanes import LaneManager
    from laneway.observe import Metrics
    from laneway.pool import Pool
    from laneway.router import Router
    from laneway.store import Store
    from laneway.workflow import WorkflowEngine
    from laneway.worker import Spawner

T = TypeVar("T")


class Orchestrator(ActorSystem):
    """The root of a laneway system: actors plus pool, lanes, router, workflows and metrics.

    Subsystems start lazily on first use (``orch.pool``, ``orch.lanes``, ...) or
    configured, before first use, with ``orch.start_pool(**config)`` and the like.
    Use it as a context manager so everything stops, in reverse start order,
    when the block ends.

    Inside ``with Orchestrator(...)`` on the main thread, SIGTERM stops the
    program gracefully: the block unwinds with :class:`~laneway.errors.Terminated`
    (a ``SystemExit(0)``), intake stops, lanes drain for ``shutdown_timeout``
    seconds, durable commands still pending stay in the store, worker processes
    stop, and the process exits 0. A second SIGTERM during that ends the process
    at once. A handler the program installed itself is left alone.

    Args:
        name: the system's name, used in logs and events.
        handle_signals: install the SIGTERM handler while the ``with`` block runs
            (default True; False leaves signals to the program).
        node: this orchestrator's node name in the cluster of every node on the
            same PostgreSQL ``store`` (see :mod:`laneway.cluster`); it joins on
            first use of :attr:`cluster`. Lanes then keep no pending commands of
            their own in the store: durable work goes through ``orch.cluster``.
        **options: the :class:`~laneway.actors.ActorSystem` options (clock,
            ask_timeout, shutdown_timeout, store, dead-letter capacity).

    Example:
        >>> from laneway import Orchestrator
        >>> from laneway.lanes import ToolRegistry
        >>> with Orchestrator(name="doc") as orch:
        ...     lanes = orch.start_lanes(tools=ToolRegistry())
        ...     _ = lanes.tools.register(lambda a, b: a + b, name="add")
        ...     lanes.call("query", "add", {"a": 2, "b": 3})
        5
    """

    def __init__(self, name: str = "laneway", *, handle_signals: bool = True, node: str | None = None,
                 **options: Any) -> None:
        super().__init__(name, **options)
        if node is not None and not _on_postgres(self.store):
            self.shutdown()
            raise ConfigError(f"node={node!r} needs a PostgreSQL store shared by the nodes "
                              f"(store='postgresql://...'), got store={options.get('store')!r}")
        self._node = node
        self._cluster: ClusterNode | None = None
        self._handle_signals = handle_signals
        self._previous_sigterm: Any = None
        # Building a subsystem spawns actors, whose start takes the system's name lock
        # from other threads; so creation is serialised by a lock of its own.
        self._creating = threading.RLock()
        self._pool: Pool | None = None
        self._lanes: LaneManager | None = None
        self._router: Router | None = None
        self._workflows: WorkflowEngine | None = None
        self._metrics: Metrics | None = None
        self._console: Console | None = None
        self._agent_processes: dict[str, FunctionRef] = {}

    def __enter__(self) -> Orchestrator:
        if (
            self._handle_signals
            and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.shutdown()
        finally:
            if self._previous_sigterm is not None:
                if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                    signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # The default action again: a second SIGTERM while we shut down ends the process at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._previous_sigterm = None
        self.events.publish("system.signal", self.name, signal=signal.Signals(signum).name)
        raise Terminated(signum)

    def _build(self, attr: str, what: str, factory: Callable[[], T], *, configured: bool) -> T:
        found = getattr(self, attr)
        if found is not None and not configured:
            return found
        with self._creating:
            found = getattr(self, attr)
            if found is not None:
                if configured:
                    raise ConfigError(f"{what} is already started in orchestrator {self.name}; "
                                      f"call start_{what}(...) before the first use of orch.{what}")
                return found
            if self.is_shut_down:
                raise SystemShutdown(f"orchestrator {self.name} is shut down; cannot start {what}")
            built = factory()
            setattr(self, attr, built)
            return built

    # the process pool ----------------------------------------------------------

    def start_pool(self, **config: Any) -> Pool:
        """Start the process pool with options (see :class:`laneway.pool.Pool`); call before first use of :attr:`pool`."""
        return self._build("_pool", "pool", lambda: self._new_pool(config), configured=True)

    @property
    def pool(self) -> Pool:
        """The process pool (started with defaults on first use)."""
        return self._build("_pool", "pool", lambda: self._new_pool({}), configured=False)

    def started_pool(self) -> Pool | None:
        """The pool if something started it; never starts it."""
        return self._pool

    # lanes ---------------------------------------------------------------------

    def start_lanes(self, **config: Any) -> LaneManager:
        """Start the lane manager with options (see :class:`laneway.lanes.LaneManager`)."""
        config.setdefault("cpu", self._cpu_runner)
        if self._node is not None:
            config.setdefault("store", None)  # the cluster's tables own durable commands
        return self._build("_lanes", "lanes", lambda: self._new_lanes(config), configured=True)

    @property
    def lanes(self) -> LaneManager:
        """The lane manager (default lanes on first use)."""
        return self._build("_lanes", "lanes", lambda: self._new_lanes({"cpu": self._cpu_runner, **self._lane_store()}),
                           configured=False)

    def _lane_store(self) -> dict[str, Any]:
        return {} if self._node is None else {"store": None}

    def started_lanes(self) -> LaneManager | None:
        """The lane manager if something started it; never starts it."""
        return self._lanes

    # router and agents -------------------------------------------------------------

    def start_router(self, **config: Any) -> Router:
        """Start the router with options (see :class:`laneway.router.Router`)."""
        config.setdefault("cpu", self._cpu_runner)
        return self._build("_router", "router", lambda: self._new_router(config), configured=True)

    @property
    def router(self) -> Router:
        """The capability router (started on first use)."""
        return self._build("_router", "router", lambda: self._new_router({"cpu": self._cpu_runner}), configured=False)

    def started_router(self) -> Router | None:
        """The router if something started it; never starts it."""
        return self._router

    def register_agent(self, agent_id: str, role: Any, capabilities: Iterable[str], max_concurrent: int,
                       handler: Callable[..., Any], *, placement: Placement | str = Placement.THREAD,
                       group: str | None = None, **options: Any) -> Any:
        """Register an agent with the router; see :meth:`laneway.router.Router.register_agent`.

        With ``placement="process"`` the handler runs in a process of its own
        (or of its ``group``), behind a supervised actor named
        ``"agent.<agent_id>"``: the router and the agent's breaker see an
        ordinary sync handler, a dead process is restarted and the call in
        flight fails with :class:`~laneway.errors.ActorProcessDied` (a failure
        the breaker counts). The handler must pickle and takes the payload only
        (no ``ctx``); it runs one call at a time. Unregistering the agent stops
        the process.

        Example:
            >>> orch.register_agent("parse-1", "executor", ["parse"], 1, parse, placement="process")  # doctest: +SKIP
        """
        placement = Placement.coerce(placement)
        if placement is Placement.THREAD:
            if group is not None:
                raise ConfigError(f"group={group!r} needs placement='process'")
            return self.router.register_agent(agent_id, role, capabilities, max_concurrent, handler, **options)
        if options.get("cpu_bound"):
            raise ConfigError("cpu_bound agents run on the pool; placement='process' gives the agent its own process")
        if not isinstance(agent_id, str) or not agent_id or "/" in agent_id:
            raise ConfigError(f"agent_id must be a non-empty string without '/', got {agent_id!r}")
        from laneway.actors import function_actor

        router = self.router
        call = function_actor(self, handler, name=f"agent.{agent_id}", placement=placement, group=group)
        try:
            info = router.register_agent(agent_id, role, capabilities, max_concurrent, call, **options)
        except BaseException:
            call.stop()
            raise
        self._agent_processes[agent_id] = call
        return info

    def unregister_agent(self, agent_id: str) -> Any:
        """Remove an agent from the router (and stop its process, if it has one); see :meth:`laneway.router.Router.unregister_agent`."""
        info = self.router.unregister_agent(agent_id)
        call = self._agent_processes.pop(agent_id, None)
        if call is not None:
            call.stop()
        return info

    # workflows and metrics -----------------------------------------------------------

    def start_workflows(self, **config: Any) -> WorkflowEngine:
        """Start the workflow engine with options (see :class:`laneway.workflow.WorkflowEngine`)."""
        config.setdefault("router", self._routing)
        return self._build("_workflows", "workflows", lambda: self._new_workflows(config), configured=True)

    @property
    def workflows(self) -> WorkflowEngine:
        """The workflow engine (started on first use)."""
        return self._build("_workflows", "workflows", lambda: self._new_workflows({"router": self._routing}),
                           configured=False)

    def started_workflows(self) -> WorkflowEngine | None:
        """The workflow engine if something started it; never starts it."""
        return self._workflows

    @property
    def metrics(self) -> Metrics:
        """The metrics registry (started on first use)."""
        def build() -> Metrics:
            from laneway.observe import Metrics

            return Metrics(self)

        return self._build("_metrics", "metrics", build, configured=False)

    def started_metrics(self) -> Metrics | None:
        """The metrics registry if something started it; never starts it."""
        return self._metrics

    @property
    def console(self) -> Console:
        """The web console (built on first use, not serving until ``orch.console.start(port=...)``).

        Its server stack is the ``laneway[console]`` extra, imported only when it
        starts; see :class:`laneway.console.Console`.
        """

        def build() -> Console:
            # Imported here: the orchestrator (and `import laneway`) must not load the console.
            from laneway.console import Console

            return Console(self)

        return self._build("_console", "console", build, configured=False)

    # the cluster ------------------------------------------------------------------------

    def start_cluster(self, **config: Any) -> ClusterNode:
        """Join the cluster with options (see :class:`laneway.cluster.ClusterNode`: lease_s, poll_s, ...)."""
        return self._build("_cluster", "cluster", lambda: self._make_cluster(config), configured=True)

    @property
    def cluster(self) -> ClusterNode:
        """This node of the cluster (joins on first use; needs ``node=`` and a PostgreSQL store)."""
        return self._build("_cluster", "cluster", lambda: self._make_cluster({}), configured=False)

    def started_cluster(self) -> ClusterNode | None:
        """The cluster node if it joined; never joins."""
        return self._cluster

    def _make_cluster(self, config: dict[str, Any]) -> ClusterNode:
        from laneway.cluster import ClusterNode

        if self._node is None:
            raise ConfigError(f"orchestrator {self.name} is not a cluster node: "
                              "pass node='NAME' and store='postgresql://...'")
        node = ClusterNode(self.store.dsn, self._node, lanes=lambda: self.lanes,  # type: ignore[union-attr]
                           engine=self._cluster_engine, **config)
        self.on_shutdown("cluster", node.close)
        return node

    def _cluster_engine(self, store: Store) -> WorkflowEngine:
        return self._new_workflows({"store": store, "router": self._routing})

    # building subsystems (each imported on first use) ------------------------------------

    def _new_pool(self, config: dict[str, Any]) -> Pool:
        spawner = self._launch_workers_ahead(config)
        try:
            from laneway.pool import Pool

            return Pool(self, **config)
        except BaseException:
            if spawner is not None:
                spawner.close()  # idempotent: the pool's backend may have closed it already
            raise

    def _launch_workers_ahead(self, config: dict[str, Any]) -> Spawner | None:
        """For the ZeroMQ backend's first local workers, start their interpreters now; the pool adopts them.

        A worker's interpreter takes longer to start than the pool takes to load its modules
        and build its supervisor tree, so the two overlap: the pool's ``Populate`` gives each
        interpreter its worker id when its actor starts (``Spawner.spawn``), and supervision
        is as before. Interpreters the pool does not use exit when it closes.
        """
        if config.get("backend", "zmq") != "zmq" or "spawner" in config:
            return None
        count = _first_workers(config)
        if count < 1:
            return None
        from laneway.worker import SPAWN_ENTRY_MODULE, Spawner

        spawner = Spawner(f"{self.name}/pool")
        spawner.launch_ahead(count, _worker_entry, preload=(SPAWN_ENTRY_MODULE,))
        config["spawner"] = spawner
        return spawner

    def _new_lanes(self, config: dict[str, Any]) -> LaneManager:
        from laneway.lanes import LaneManager

        return LaneManager(self, **config)

    def _new_router(self, config: dict[str, Any]) -> Router:
        from laneway.router import Router

        return Router(self, **config)

    def _new_workflows(self, config: dict[str, Any]) -> WorkflowEngine:
        from laneway.workflow import WorkflowEngine

        return WorkflowEngine(self, **config)

    # providers handed to subsystems ---------------------------------------------------

    def _cpu_runner(self) -> Pool:
        return self.pool

    def _routing(self) -> Router:
        return self.router


def _on_postgres(store: Store | None) -> bool:
    # The PostgreSQL store's module loads only for a program that names a node: most never do.
    from laneway.store import PostgresStore

    return isinstance(store, PostgresStore)


def _worker_entry() -> Callable[..., Any]:
    # Called on the spawner's thread once the interpreters run: the worker's modules (ZeroMQ)
    # load here while they start up, rather than before.
    from laneway.worker import spawn_entry

    return spawn_entry


def _first_workers(config: dict[str, Any]) -> int:
    """How many local workers a pool with this configuration starts first (its ``min_workers``); 0 if unsure.

    The pool validates the options; a value it will refuse launches nothing here.
    """
    workers, lo, hi = config.get("workers"), config.get("min_workers"), config.get("max_workers")
    if lo is None:
        lo = 1 if workers is None else workers
    if hi is None:
        hi = workers
    if type(lo) is not int or (hi is not None and type(hi) is not int):
        return 0
    return max(0, min(lo, lo if hi is None else hi, os.cpu_count() or 1))
