"""The Router: the public face of the router actor, its agents' breaker actors and handler runners."""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterable

from laneway.actors import ChildSpec, Future, OneForOne
from laneway.breakers import BreakerActor, BreakerConfig, CircuitBreaker
from laneway.errors import (
    ActorCrashed,
    ActorDead,
    AgentNotFound,
    ConfigError,
    LanewayError,
    LanewayTimeout,
    NoEligibleAgent,
    SystemShutdown,
)
from laneway.core import RetryPolicy
from laneway.lanes import Priority
from laneway.router._actor import (
    Abandon,
    BreakerMoved,
    CancelTask,
    Close,
    GetAgents,
    GetStatistics,
    LiveTasks,
    Register,
    RouterActor,
    Route,
    SubmitNow,
    Unregister,
    tell_quietly,
)
from laneway.router._invoke import Invoker, Runners
from laneway.router._messages import QueueRoom
from laneway.router._records import (
    AgentInfo,
    AgentOptions,
    RoutedWork,
    RouterStatistics,
    RoutingStrategy,
    capability_set,
    coerce_priority,
)
from laneway.router._roles import AlphaRole
from laneway.router._select import AgentSlot
from laneway.router._task import DEAD_LETTER_SOURCE, RoutedTask

if TYPE_CHECKING:
    from laneway.actors import ActorSystem
    from laneway.core import CpuRunnerProvider, DeadLetter, Event

log = logging.getLogger(__name__)

#: Restart intensity of the router actor: a 4th crash within 5 s stops the router for good
#: (its unfinished tasks fail with SystemShutdown) instead of crash-looping.
ROUTER_RESTARTS = OneForOne(max_restarts=3, within_s=5.0)


def _timeout(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{what} must be None or a number of seconds > 0, got {value!r}")
    return float(value)


def _block_timeout(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"block_timeout must be None or a number of seconds >= 0, got {value!r}")
    return float(value)


class Router:
    """Sends each task to an eligible agent that has the capabilities it needs.

    Agents register with a role, capabilities, a concurrency limit and a
    handler; each gets a :class:`~laneway.breakers.BreakerActor` (supervised,
    one per agent) that every call to it passes through. A task is routed,
    by ``strategy``, among the agents that have all its capabilities (and its
    role, if it names one), are under ``max_concurrent`` and whose breaker
    admits calls. With no eligible agent it waits in the router until one
    becomes eligible (capacity frees, a breaker half-opens, an agent
    registers) or its timeout passes (:class:`~laneway.errors.NoEligibleAgent`);
    when no registered agent has the capabilities at all it fails at once
    (:class:`~laneway.errors.NoCapableAgent`). Waiting tasks are dispatched
    by priority (the lanes' :class:`~laneway.lanes.Priority`), then oldest
    first. At most ``max_pending`` tasks may be submitted and not yet started:
    past it ``submit`` blocks for room, then raises
    :class:`~laneway.errors.LaneFull` (the lanes' backpressure error). A failed attempt is retried on
    another eligible agent per the task's retry policy; work that fails every
    attempt fails its future with the last error and goes to
    ``orch.dead_letters`` (source ``"router"``, re-submittable).

    Handlers are tool-style functions: ``handler(payload)``, or
    ``handler(payload, ctx=...)`` when they declare ``ctx`` (the workflow
    context). Sync handlers run on up to ``threads`` threads, async ones on
    one event loop, ``cpu_bound=True`` ones on ``orch.pool``.

    Events: ``agent.registered``, ``agent.unregistered``,
    ``agent.task.started`` / ``completed`` / ``failed`` (``agent_id``,
    ``task_id``, ``attempt``, ``latency_s``), ``agent.circuit.state``
    (``agent_id``, ``from``, ``to``), and ``dead_letter.added``.

    The router actor is supervised (``<name>.supervisor``, at most 3 restarts
    in 5 s): after an unexpected crash it restarts with its agents, routes the
    tasks that had not started again and fails the ones an agent was running
    with :class:`~laneway.errors.RouterRestarted` (dead-lettered); no future
    is left hanging. If it keeps crashing the supervisor gives up and the
    unfinished tasks fail with :class:`~laneway.errors.SystemShutdown`.

    Use it as ``orch.router`` (or ``orch.start_router(**config)`` to configure it).

    Args:
        orch: the orchestrator.
        strategy: a :class:`RoutingStrategy` or its value; least-busy by default.
        breaker: default breaker thresholds for agents (each may override them).
        retry: default retry policy of tasks: by default two immediate
            failovers (3 attempts in all), on other agents where possible.
        default_timeout: seconds a task may take from submit to result when
            ``submit`` gives none; None waits as long as it takes.
        threads: most threads running sync handlers at once.
        max_pending: most tasks submitted and not yet started on an agent
            (default 10,000); retries waiting again do not count.
        seed: seeds the random strategies (for reproducible tests).
        name: names the router's supervisors: ``<name>.supervisor`` (of its actor,
            ``<name>.supervisor/actor``) and ``<name>.breakers``.

    Example:
        >>> with Orchestrator() as orch:                                                   # doctest: +SKIP
        ...     orch.register_agent("summarizer", AlphaRole.COMPRESSOR, {"summarize"}, 4, summarize)
        ...     orch.register_agent("checker", "validator", {"check"}, 2, check, breaker={"failure_threshold": 3})
        ...     orch.router.run("long text", capabilities={"summarize"}, timeout=30)
    """

    def __init__(
        self,
        orch: ActorSystem,
        *,
        cpu: CpuRunnerProvider | None = None,
        strategy: RoutingStrategy | str = RoutingStrategy.LEAST_BUSY,
        breaker: BreakerConfig | None = None,
        retry: RetryPolicy | None = None,
        default_timeout: float | None = None,
        threads: int = 32,
        max_pending: int = 10_000,
        seed: int | None = None,
        name: str = "router",
    ) -> None:
        if breaker is not None and not isinstance(breaker, BreakerConfig):
            raise ConfigError(f"breaker must be a BreakerConfig, got {breaker!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, got {retry!r}")
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"threads must be an int >= 1, got {threads!r}")
        if not isinstance(max_pending, int) or isinstance(max_pending, bool) or max_pending < 1:
            raise ConfigError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self.name = name
        self.strategy = RoutingStrategy.coerce(strategy)
        self.breaker_config = breaker or BreakerConfig()
        self.retry = retry if retry is not None else RetryPolicy.fixed(2, 0.0)
        self.default_timeout = _timeout(default_timeout, "default_timeout")
        self._orch = orch
        self._lock = threading.Lock()
        self._closed = False
        self._breakers_by_id: dict[str, CircuitBreaker] = {}
        # Written only by the router actor; outlives its incarnations (a restart rebuilds from it).
        self._agents: dict[str, AgentSlot] = {}
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:8]
        self._live = LiveTasks()
        self._room = QueueRoom(max_pending)
        self._runners = Runners(orch, cpu=cpu, threads=threads, name=name)
        self._breakers = orch.spawn_supervisor(f"{name}.breakers", strategy=OneForOne(max_restarts=20, within_s=5))
        self._supervisor = orch.spawn_supervisor(f"{name}.supervisor", strategy=ROUTER_RESTARTS)
        self._ref = self._supervisor.start_child(
            ChildSpec(
                RouterActor, name="actor",
                kwargs={
                    "strategy": self.strategy, "retry": self.retry, "runners": self._runners, "breakers": self._breakers,
                    "agents": self._agents, "live": self._live, "room": self._room, "seed": seed,
                },
            )
        )  # fmt: skip
        self._stop_listening = orch.events.add_listener(self._on_child_restarted, "supervisor.child.restarted")
        self._stop_listening_escalated = orch.events.add_listener(self._on_escalated, "supervisor.escalated")
        orch.dead_letters.register_resubmitter(DEAD_LETTER_SOURCE, self._resubmit)
        orch.on_shutdown(f"router {name}", self.close)

    def __repr__(self) -> str:
        return f"<Router {self.name} {self.strategy.value} {len(self._breakers_by_id)} agents>"

    # agents -----------------------------------------------------------------------------

    def register_agent(
        self,
        agent_id: str,
        role: AlphaRole | str | int,
        capabilities: Iterable[str] | str,
        max_concurrent: int,
        handler: Callable[..., Any],
        **options: Any,
    ) -> AgentInfo:
        """Add an agent (behind its own breaker actor) and return its snapshot.

        Args:
            agent_id: unique id, a non-empty string without ``/``.
            role: an :class:`AlphaRole`, its number, ``"α3"`` or its name.
            capabilities: what it can do (a single string is one capability).
            max_concurrent: most tasks it runs at once (>= 1).
            handler: ``handler(payload)`` or ``handler(payload, ctx=...)``, sync or async.
            **options: ``breaker`` (a BreakerConfig, or a dict of fields overriding
                the router's), ``cpu_bound`` (run on ``orch.pool``), ``weight``
                (share under weighted strategies).

        Raises:
            ConfigError: a bad argument or option, or the id is taken.
            SystemShutdown: the router is shut down.

        Example:
            >>> router.register_agent("fetch-1", "observer", ["http"], 8, fetch, breaker={"failure_threshold": 2})  # doctest: +SKIP
        """
        if not isinstance(agent_id, str) or not agent_id or "/" in agent_id:
            raise ConfigError(f"agent_id must be a non-empty string without '/', got {agent_id!r}")
        role = AlphaRole.coerce(role)
        caps = capability_set(capabilities, "capabilities")
        if not isinstance(max_concurrent, int) or isinstance(max_concurrent, bool) or max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        opts = AgentOptions.parse(options, self.breaker_config)
        invoker = Invoker(handler, cpu_bound=opts.cpu_bound)
        breaker = CircuitBreaker(agent_id, opts.breaker, clock=self._orch.clock)
        ref = self._ref
        with self._lock:  # one registration at a time, so the id check and the spawn agree
            self._check_open()
            if agent_id in self._breakers_by_id:
                raise ConfigError(f"agent {agent_id!r} is already registered with router {self.name}")
            breaker_ref = self._breakers.start_child(
                ChildSpec(
                    BreakerActor, name=agent_id, args=(breaker,),
                    kwargs={"on_transition": lambda t: tell_quietly(ref, BreakerMoved(agent_id))},
                )
            )  # fmt: skip
            slot = AgentSlot(
                agent_id, role, caps, max_concurrent, weight=opts.weight, seq=len(self._breakers_by_id),
                invoker=invoker, breaker=breaker, breaker_ref=breaker_ref,
            )  # fmt: skip
            try:
                info = self._ref.ask(Register(slot))
            except BaseException:
                # Leave nothing behind: a kept breaker child would refuse this id for good.
                self._remove_breaker_child(agent_id)
                raise
            self._breakers_by_id[agent_id] = breaker
        return info

    def _remove_breaker_child(self, agent_id: str) -> None:
        try:
            self._breakers.terminate_child(agent_id)
            self._breakers.delete_child(agent_id)
        except Exception:
            log.warning("router %s: could not remove the breaker actor of agent %s", self.name, agent_id, exc_info=True)

    def unregister_agent(self, agent_id: str) -> AgentInfo:
        """Remove an agent: it gets no new tasks; tasks it runs finish; then its breaker actor stops.

        Tasks waiting for capabilities that no remaining agent has fail with
        NoCapableAgent (and are dead-lettered).

        Raises:
            AgentNotFound: no such agent.
        """
        with self._lock:
            info = self._ref.ask(Unregister(agent_id))
            self._breakers_by_id.pop(agent_id, None)
        return info

    def agents(self) -> tuple[AgentInfo, ...]:
        """A snapshot of every agent, in registration order."""
        return self._ref.ask(GetAgents())

    def agent(self, agent_id: str) -> AgentInfo:
        """A snapshot of one agent.

        Raises:
            AgentNotFound: no such agent.
        """
        return self._ref.ask(GetAgents(agent_id))

    def breaker(self, agent_id: str) -> CircuitBreaker:
        """The agent's circuit breaker, for inspection or an operator's ``trip()`` / ``reset()``.

        Raises:
            AgentNotFound: no such agent.
        """
        try:
            return self._breakers_by_id[agent_id]
        except KeyError:
            raise AgentNotFound(f"no agent {agent_id!r} is registered with router {self.name}") from None

    def statistics(self) -> RouterStatistics:
        """A snapshot of the router's counters."""
        return self._ref.ask(GetStatistics())

    # work --------------------------------------------------------------------------------

    def submit(
        self,
        payload: Any,
        *,
        capabilities: Iterable[str] | str = (),
        role: AlphaRole | str | int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        context: Any = None,
        priority: Priority | int | None = None,
        block_timeout: float | None = None,
    ) -> Future[Any]:
        """Route a task; returns with a future of the handler's result (at once unless the router is full).

        Args:
            payload: what the handler gets.
            capabilities: what the agent must have (all of them).
            role: only agents in this role, if given.
            timeout: seconds from now to the result, waiting included; past it
                the future fails with NoEligibleAgent (never ran) or
                AgentTimeout (was running). None: the router's ``default_timeout``.
            retry: retry/failover policy (None: the router's).
            context: passed as ``ctx=`` to handlers that declare ``ctx``.
            priority: a :class:`~laneway.lanes.Priority` or its int, 0 (CRITICAL)
                to 4 (BACKGROUND); None is NORMAL. When agents are saturated, waiting tasks are
                dispatched most urgent first, then oldest first.
            block_timeout: seconds to wait for room when ``max_pending`` tasks
                are already waiting to start (default: the orchestrator's
                ``ask_timeout``), then ``LaneFull``; 0 raises at once.

        The future fails with NoCapableAgent at once if no agent has the
        capabilities; with the last handler error once retries are used up.
        Cancelling the future withdraws the task (a running thread handler
        still finishes, its result unused). ``await`` the future in asyncio.

        Raises:
            ConfigError: a bad argument.
            LaneFull: the router stayed full for ``block_timeout`` seconds.
            SystemShutdown: the router is shut down.

        Example:
            >>> router.submit(doc, capabilities={"summarize"}, priority=Priority.HIGH).get(30)  # doctest: +SKIP
        """
        block = self._orch.ask_timeout if block_timeout is None else _block_timeout(block_timeout)
        task = self._new_task(payload, capabilities, role, timeout, retry, context, priority)
        task.handed_over = True
        self._room.take(block, self.name)
        task.holds_place = True
        try:
            self._live.enter(task)
        except SystemShutdown:
            self._room.give_back()
            raise
        try:
            self._ref.tell(Route(task))
        except ActorDead:
            # Restarting after a crash: the next incarnation takes the task over from the live
            # tasks. If it never comes (close, or its supervisor gave up), those fail the task.
            log.debug("router %s is restarting; task %s waits for it", self.name, task.id)
        return task.future

    def submit_nowait(
        self,
        payload: Any,
        *,
        capabilities: Iterable[str] | str = (),
        role: AlphaRole | str | int | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        context: Any = None,
        priority: Priority | int | None = None,
    ) -> Future[Any]:
        """Like :meth:`submit`, but the task never waits in the router: it starts on an
        eligible agent now, or the call raises (the caller, e.g. a lane, keeps it queued).
        So it never waits for room either, and ``priority`` only matters to its retries.

        Retries after a failure may still wait for an agent, within ``timeout``.

        Raises:
            NoEligibleAgent: agents with the capabilities exist, none is eligible now.
            NoCapableAgent: no agent has the capabilities.
            ConfigError, SystemShutdown: as :meth:`submit`.
        """
        task = self._new_task(payload, capabilities, role, timeout, retry, context, priority)
        self._live.enter(task)
        try:
            self._ref.ask(SubmitNow(task))
        except (ActorDead, ActorCrashed) as exc:
            self._live.leave(task)
            self._check_open()
            # The router actor is restarting (or crashed on this very call): no agent can start it now.
            raise NoEligibleAgent(f"router {self.name} is restarting after a crash; no agent can start the task now") from exc
        except BaseException:
            self._live.leave(task)
            raise
        return task.future

    def _new_task(
        self, payload: Any, capabilities: Any, role: Any, timeout: Any, retry: Any, context: Any, priority: Any
    ) -> RoutedTask:
        caps = capability_set(capabilities, "capabilities")
        level = coerce_priority(priority)
        role = None if role is None else AlphaRole.coerce(role)
        timeout = self.default_timeout if timeout is None else _timeout(timeout, "timeout")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, got {retry!r}")
        self._check_open()
        seq = next(self._ids)
        task_id = f"task-{self._id_prefix}-{seq}"
        future: Future[Any] = Future()
        future._what = f"result of task {task_id}"
        future._timeout_error = LanewayTimeout
        ref = self._ref

        def withdraw_if_cancelled(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled():
                tell_quietly(ref, CancelTask(task_id))

        future.add_done_callback(withdraw_if_cancelled)
        return RoutedTask(
            task_id, payload, caps, role, context, retry or self.retry, future, timeout=timeout, seq=seq, priority=level
        )

    def run(self, payload: Any, **kwargs: Any) -> Any:
        """:meth:`submit` and wait for the result (bounded by the task's timeout, if any).

        Raises:
            NoCapableAgent, NoEligibleAgent, AgentTimeout, or the handler's last error;
            LaneFull when the router stays full (see :meth:`submit`).
        """
        return self.submit(payload, **kwargs).get(None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted task has ended; False if some had not within ``timeout`` seconds."""
        return self._live.wait_zero(timeout)

    # lifecycle ---------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop: fail the tasks not yet running (dead-lettered, re-submittable), give running
        ones ``timeout`` seconds to finish, then stop the actors. Runs at orchestrator shutdown."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._room.close()
        timeout = self._orch.shutdown_timeout if timeout is None else timeout
        self._stop_listening()
        self._stop_listening_escalated()
        error = SystemShutdown(f"router {self.name} shut down")
        try:
            running = self._ref.ask(Close(error), timeout=timeout)
            if running and not self.wait_idle(timeout):
                self._ref.ask(Abandon(error), timeout=timeout)
        except (ActorDead, LanewayTimeout):
            log.exception("router %s did not close cleanly", self.name)
        if not self._runners.close(timeout):
            log.error("router %s: some handlers were still running at shutdown; abandoned", self.name)
        self._supervisor.stop(timeout=timeout)
        self._breakers.stop(timeout=timeout)
        # Tasks the actor never saw (sent while it restarted, or after it was stopped).
        self._fail_leftovers(error, "the router shut down before it could route the task")

    def _check_open(self) -> None:
        if self._closed:
            raise SystemShutdown(f"router {self.name} is shut down")

    def _on_escalated(self, event: Event) -> None:
        if event.source != self._supervisor.name:
            return
        log.error("router %s stopped for good: %s", self.name, event.data.get("reason"))
        self._room.close()
        error = SystemShutdown(f"router {self.name} stopped: its actor crashed too often ({event.data.get('reason')})")
        self._fail_leftovers(error, "the router's actor crashed too often")

    def _fail_leftovers(self, error: LanewayError, reason: str) -> None:
        """Fail every task still counted live; the router actor is gone for good."""
        for task in self._live.shut(str(error)):
            if task.future.settle(error=error) and task.handed_over:
                task.dead_letter(self._orch.dead_letters, error, reason)
            self._live.leave(task)

    def _on_child_restarted(self, event: Event) -> None:
        if event.source == self._breakers.name:
            tell_quietly(self._ref, BreakerMoved(event.data["child"]))

    def _resubmit(self, letter: DeadLetter) -> Future[Any]:
        work = letter.payload
        if not isinstance(work, RoutedWork):
            raise ConfigError(f"dead letter {letter.id} carries no routable work")
        return self.submit(
            work.payload, capabilities=work.capabilities, role=work.role, context=work.context, retry=work.retry,
            priority=getattr(work, "priority", Priority.NORMAL),  # letters stored before priorities had none
        )  # fmt: skip
