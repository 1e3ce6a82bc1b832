"""The actor system: actor names, the clock, events, dead letters, the store, shutdown in order.

The :class:`~laneway.Orchestrator` (the composition root, a layer above) is an
ActorSystem that also owns the subsystems; a subsystem is given the ActorSystem
it runs on, never the Orchestrator.
"""

from __future__ import annotations

import atexit
import os
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

import attrs

from laneway.core import Clock, MonotonicClock
from laneway.core import DEFAULT_DEAD_LETTER_CAPACITY, DeadLetterQueue
from laneway.actors._specs import ChildSpec, Placement, Strategy, check_placement
from laneway.errors import ActorNotFound, ActorStartError, ConfigError, NameTaken, SystemShutdown
from laneway.core import EventBus

if TYPE_CHECKING:
    from laneway.actors._actor import Actor, ActorRef, Exit, _RefCell
    from laneway.store import Store
    from laneway.actors._supervisor import SupervisorRef

log = logging.getLogger(__name__)

#: Store namespace of the states actors keep with ``save_state``.
ACTOR_STATE_NAMESPACE = "actor_state"

S = TypeVar("S", bound="ActorSystem")

_live: weakref.WeakSet[ActorSystem] = weakref.WeakSet()


@atexit.register
def _shutdown_leftovers() -> None:
    # An orchestrator the program forgot to shut down must still not leave
    # worker processes or threads behind.
    for orch in list(_live):
        try:
            orch.shutdown(timeout=2.0)
        except Exception:
            log.exception("shutdown of %s at exit failed", orch.name)


def _shutdown_step(errors: list[str], label: str, step: Callable[..., Any], *args: Any) -> None:
    # One failing part must not keep the others running: log it, report it under its label, go on.
    try:
        step(*args)
    except Exception as exc:
        log.exception("shutdown of %s failed", label)
        errors.append(f"{label}: {exc!r}")


@attrs.frozen
class ShutdownReport:
    """What :meth:`ActorSystem.shutdown` did.

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


class ActorSystem:
    """The root of a laneway actor system: names, clock, events, dead letters, store.

    Owns the actor names, the event stream (:attr:`events`), the clock
    (:attr:`clock`), the dead-letter queue and the store. Use it as a context
    manager so every actor stops, in reverse start order, when the block ends.
    Programs use :class:`~laneway.Orchestrator`, which adds the subsystems.

    Args:
        name: the system's name, used in logs and events.
        clock: time source for backoff, breakers, retries; a
            :class:`~laneway.core.ManualClock` in tests.
        ask_timeout: default seconds an ``ask`` waits for its reply.
        shutdown_timeout: default seconds each top-level actor gets to stop.
        store: where durable state goes (lanes' pending commands, dead letters,
            workflows): a :class:`~laneway.store.Store`, a path for a SQLite
            file, or a ``postgresql://`` URL (needs ``laneway[postgres]``).
            None keeps everything in memory. A store given by path or URL is
            closed at shutdown.
        dead_letter_capacity: most letters :attr:`dead_letters` keeps (default
            10,000); a full queue evicts its oldest letter (``dead_letter.evicted``).

    Example:
        >>> import attrs
        >>> from laneway.actors import Actor, ActorSystem, handler
        >>> @attrs.frozen
        ... class Get: pass
        >>> class Answer(Actor):
        ...     @handler(Get)
        ...     def _get(self, msg): return 42
        >>> with ActorSystem(name="doc") as system:
        ...     system.spawn(Answer, name="answer").ask(Get(), timeout=1)
        42
    """

    def __init__(
        self,
        name: str = "laneway",
        *,
        clock: Clock | None = None,
        ask_timeout: float = 30.0,
        shutdown_timeout: float = 10.0,
        store: Any = None,
        dead_letter_capacity: int = DEFAULT_DEAD_LETTER_CAPACITY,
    ) -> None:
        if ask_timeout <= 0 or shutdown_timeout <= 0:
            raise ConfigError("ask_timeout and shutdown_timeout must be > 0")
        self.name = name
        self.clock: Clock = clock or MonotonicClock()
        self.ask_timeout = ask_timeout
        self.shutdown_timeout = shutdown_timeout
        self.events = EventBus(self.clock.now)
        self._owns_store = isinstance(store, (str, os.PathLike))
        self.store: Store | None = None
        if store is not None:  # in memory, no store module loads: a program that only runs a pool never needs one
            from laneway.store import open_store

            self.store = open_store(store)
        self.dead_letters = DeadLetterQueue(self.store, self.events, capacity=dead_letter_capacity)
        self._lock = threading.RLock()
        self._names: dict[str, ActorRef] = {}
        self._top: list[tuple[ActorRef, float]] = []
        self._hooks: list[tuple[str, Callable[[float], Any]]] = []
        self._stuck: list[str] = []
        self._closed = False
        self._report: ShutdownReport | None = None
        self._hosts: Any = None
        self._remote: Any = None
        self._owns_ray = False
        self._states: dict[str, bytes] = {}
        _live.add(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {'shut down' if self._closed else 'running'}>"

    def __enter__(self: S) -> S:
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
        placement: Placement | str = Placement.THREAD,
        group: str | None = None,
        ray_options: dict[str, Any] | None = None,
        host: str | None = None,
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
            placement: where it runs: ``"thread"`` (default), ``"process"`` (a
                host process; ``factory``, arguments, messages and replies must
                pickle), ``"remote"`` (a remote actor host, see
                :meth:`accept_actor_hosts`) or ``"ray"``; see :class:`~laneway.actors.Placement`.
            group: with ``placement="process"``, share the host process of this
                group with its other actors (None: a process of its own).
            ray_options: with ``placement="ray"``, options of the Ray actor
                (``num_cpus``, ``resources``, ``scheduling_strategy``...).
            host: with ``placement="remote"``, run on a remote actor host of this
                name (None: the least busy connected host).

        ``placement``, ``group``, ``ray_options`` and ``host`` are the system's keywords, so they never reach ``factory``.

        Raises:
            ConfigError: a bad name, placement or group.
            NameTaken: the name is in use.
            ActorStartError: construction or ``on_start`` raised.
            SystemShutdown: the orchestrator is shut down.
        """
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"actor name must be a non-empty string without '/', got {name!r}")
        # Actors (and pykka under them) load with the first one spawned, not with the system: a
        # pool's worker interpreters are launched before it spawns anything (see Orchestrator.start_pool).
        from laneway.actors._actor import ActorRef

        placement = Placement.coerce(placement)
        check_placement(placement, group, factory, ray_options, host)
        ref_class = getattr(factory, "ref_class", ActorRef)
        ref = ref_class(name, self)
        with self._lock:
            if self._closed:
                raise SystemShutdown(f"orchestrator {self.name} is shut down; cannot spawn {name!r}")
            self._register(ref)
        try:
            ref._start(factory, args, kwargs, self._top_exit, placement, group, ray_options, host)
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
        from laneway.actors._supervisor import Supervisor

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

    def _top_exit(self, cell: _RefCell, exit: Exit) -> None:
        """Top-level actors have no supervisor: their end is only reported (as events, by the cell)."""

    def _process_hosts(self) -> Any:
        """The host processes of process-placed actors (started on first use)."""
        with self._lock:
            if self._hosts is None:
                if self._closed:
                    raise SystemShutdown(f"orchestrator {self.name} is shut down; cannot start a process actor")
                from laneway.actors._proc_hosts import ProcessHosts

                self._hosts = ProcessHosts(self.name)
            return self._hosts

    def accept_actor_hosts(self, listen: str, *, keys: Any = None, heartbeat_s: float = 0.5,
                           heartbeat_timeout_s: float = 5.0, host_wait_s: float = 10.0) -> Any:
        """Open an endpoint that remote actor hosts join, for actors spawned with ``placement="remote"``.

        A host joins with ``laneway worker --actors --connect ENDPOINT --keys DIR
        --name NAME`` and runs the actors placed on it (``host=NAME``, or any host)
        as a local host process would. Keys are the pool's (``laneway keys DIR``):
        hosts without an authorized key are refused by the CurveZMQ handshake.

        Args:
            listen: ``tcp://ADDRESS:PORT`` (port 0 picks one; see ``.endpoint``).
            keys: the key directory; required unless ``listen`` is a loopback address.
            heartbeat_s: seconds between pings to the hosts.
            heartbeat_timeout_s: a host silent this long is gone: its actors crashed.
            host_wait_s: how long a start or restart waits for a suitable host to be
                connected before it fails with ActorStartError.

        Returns:
            The :class:`~laneway.actors.RemoteActorHosts`: ``endpoint``, ``hosts()``, ``wait_hosts()``.

        Raises:
            AuthError: ``listen`` reaches beyond loopback and no keys were given, or the keys are missing.
            ConfigError: a bad endpoint or timing, or the system already accepts actor hosts.

        Example:
            >>> hosts = orch.accept_actor_hosts("tcp://0.0.0.0:5556", keys="~/lw-keys")    # doctest: +SKIP
            >>> ref = orch.spawn(Index, name="index", placement="remote", host="gpu-1")  # doctest: +SKIP
        """
        from laneway.actors._proc_remote import RemoteActorHosts

        with self._lock:
            if self._closed:
                raise SystemShutdown(f"orchestrator {self.name} is shut down")
            if self._remote is not None:
                raise ConfigError(f"orchestrator {self.name} already accepts actor hosts at {self._remote.endpoint}")
            self._remote = RemoteActorHosts(self, listen, keys, heartbeat_s=heartbeat_s,
                                            heartbeat_timeout_s=heartbeat_timeout_s, host_wait_s=host_wait_s)
            return self._remote

    def _remote_actor_hosts(self) -> Any:
        remote = self._remote
        if remote is None:
            raise ActorStartError(f"placement='remote' needs remote actor hosts: call "
                                  f"orch.accept_actor_hosts(listen, keys=...) on {self.name} first")
        return remote

    def _start_on_ray(self, ref: ActorRef, factory: Any, args: tuple, kwargs: dict, on_exit: Callable[..., None],
                      state: bytes | None, options: dict[str, Any]) -> Any:
        """Start one incarnation of ``ref``'s actor as a Ray actor (joining Ray first if needed)."""
        from laneway.actors._ray_cell import RayCell, ensure_ray

        with self._lock:
            if self._closed:
                raise SystemShutdown(f"orchestrator {self.name} is shut down; cannot start a Ray actor")
            if not self._owns_ray and ensure_ray():
                self._owns_ray = True
        cell = RayCell(ref, on_exit)
        ref._cell = cell
        ref.incarnation += 1
        cell.start(factory, args, kwargs, state, options)
        self.events.publish("actor.started", ref.name, pid=cell.pid)
        return cell

    def _save_actor_state(self, name: str, state: bytes) -> None:
        """Keep what an actor's ``save_state`` returned (pickled), in the store when there is one."""
        if self.store is not None:
            self.store.put(ACTOR_STATE_NAMESPACE, name, state)
        else:
            self._states[name] = state

    def _load_actor_state(self, name: str) -> bytes | None:
        if self.store is not None:
            return self.store.get(ACTOR_STATE_NAMESPACE, name)
        return self._states.get(name)

    def _report_stuck(self, name: str) -> None:
        with self._lock:
            self._stuck.append(name)

    def on_shutdown(self, label: str, hook: Callable[[float], Any]) -> None:
        """Run ``hook(timeout_s)`` at shutdown, before actors stop; hooks run in reverse order of registration."""
        with self._lock:
            self._hooks.append((label, hook))

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
            _shutdown_step(errors, label, hook, per_step)
        stopped: list[str] = []
        if top:
            from laneway.actors._actor import SHUTDOWN_EXIT
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
        if self._hosts is not None:
            _shutdown_step(errors, "actor hosts", self._hosts.close, per_step)
        if self._remote is not None:
            _shutdown_step(errors, "remote actor hosts", self._remote.close, per_step)
        if self._owns_ray:  # our share of the Ray connection laneway opened; the program's own stays
            from laneway.core import release_ray

            _shutdown_step(errors, "ray", release_ray)
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
