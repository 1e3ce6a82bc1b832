"""Actors on pykka: the user-facing base class, stable references and the cell that hosts them.

A user's :class:`Actor` instance lives inside a private pykka ``ThreadingActor``
(the *cell*), which owns the mailbox and the thread. The cell gives the
semantics pykka lacks: an exception in any handler (tell or ask) or in
``on_start`` crashes the actor and is reported to its parent; every message
still queued when an actor ends fails fast (asks get :class:`ActorDead`,
tells are published as ``actor.dead_letter``) instead of vanishing.

An :class:`ActorRef` outlives restarts: a supervisor swaps a fresh cell in
behind the same reference (as in Akka), so holders never need a new one.
"""

from __future__ import annotations

import enum
import logging
import pickle
import queue
import threading
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar, cast

import attrs
import pykka

from laneway.actors._specs import Placement
from laneway.core import Future
from laneway.errors import ActorCrashed, ActorDead, ActorStartError, ConfigError, UnhandledMessage

if TYPE_CHECKING:
    from laneway.actors._system import ActorSystem

log = logging.getLogger(__name__)

M = TypeVar("M")
F = TypeVar("F", bound=Callable[..., Any])


class ExitKind(enum.Enum):
    """Why an actor ended."""

    NORMAL = "normal"  #: it stopped itself or was asked to stop
    SHUTDOWN = "shutdown"  #: its supervisor or orchestrator stopped it
    CRASH = "crash"  #: a handler or ``on_start`` raised


@attrs.frozen
class Exit:
    """How an actor ended: the kind, and for a crash the exception."""

    kind: ExitKind
    error: BaseException | None = None

    @property
    def abnormal(self) -> bool:
        return self.kind is ExitKind.CRASH


NORMAL_EXIT = Exit(ExitKind.NORMAL)
SHUTDOWN_EXIT = Exit(ExitKind.SHUTDOWN)


def why_dead(exit: Exit | None, *, not_yet: str) -> str:
    """Why an actor no longer takes messages, for errors and dead letters: ``not_yet`` while its exit is unknown."""
    if exit is None:
        return not_yet
    return f"crashed: {exit.error!r}" if exit.error is not None else exit.kind.value


def handler(message_type: type) -> Callable[[F], F]:
    """Mark an :class:`Actor` method as the handler for ``message_type`` (and its subclasses).

    Example:
        >>> @attrs.frozen
        ... class Get: pass
        >>> class Box(Actor):
        ...     @handler(Get)
        ...     def _get(self, msg): return 42
    """

    def mark(fn: F) -> F:
        fn.__laneway_handles__ = message_type  # type: ignore[attr-defined]
        return fn

    return mark


class Actor:
    """Base class for laneway actors.

    Override :meth:`on_start`, :meth:`on_stop`, and either mark methods with
    :func:`handler` or override :meth:`on_receive`. A handler's return value
    is the reply to an ask. Any exception a handler raises crashes the actor:
    the asker gets :class:`~laneway.errors.ActorCrashed` and the actor's
    supervisor decides what happens next ("let it crash").

    Inside the actor, :attr:`ref`, :attr:`name` and :attr:`orchestrator` are
    available from ``on_start`` on.

    Example:
        >>> @attrs.frozen
        ... class Inc:
        ...     by: int = 1
        >>> class Counter(Actor):
        ...     def on_start(self): self.n = 0
        ...     @handler(Inc)
        ...     def _inc(self, msg): self.n += msg.by; return self.n
    """

    #: Exceptions that are the sender's mistake (bad argument, unknown name):
    #: a handler raising one of these replies it to the asker, or publishes a
    #: dead letter for a tell, and the actor keeps running instead of crashing.
    reply_errors: tuple[type[BaseException], ...] = (ConfigError, LookupError, UnhandledMessage)

    _laneway_handlers: dict[type, Callable[..., Any]] = {}
    _cell: _ActorCell

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type, Callable[..., Any]] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                handles = getattr(attr, "__laneway_handles__", None)
                if handles is not None:
                    table[handles] = attr
        cls._laneway_handlers = table

    # --- hooks ------------------------------------------------------------

    def on_start(self) -> None:
        """Runs in the actor's thread before the first message. Raising fails the start."""

    def on_stop(self) -> None:
        """Runs in the actor's thread whenever the actor ends, even after a crash or a failed start."""

    def on_receive(self, message: Any) -> Any:
        """Handles messages no :func:`handler` method claims. The default rejects them."""
        raise UnhandledMessage(f"{self.name} has no handler for {type(message).__qualname__}")

    # --- context ----------------------------------------------------------

    @property
    def ref(self) -> ActorRef:
        """This actor's own reference."""
        return self._cell.lw_ref

    @property
    def name(self) -> str:
        return self._cell.lw_ref.name

    @property
    def orchestrator(self) -> ActorSystem:
        return self._cell.lw_ref.orchestrator

    def stop(self) -> None:
        """Stop this actor after the current message (a normal exit)."""
        self._cell.request_stop(NORMAL_EXIT)

    # --- state ------------------------------------------------------------

    def save_state(self) -> Any:
        """Override to keep state across restarts; the default keeps none (a restart starts fresh, as in OTP).

        When a subclass overrides it, it runs after every handled message and
        its (picklable) return value is saved under the actor's name in the
        system's store (or in memory without one), replacing the previous one.
        The next incarnation gets it in :meth:`load_state`.
        """
        return None

    def load_state(self, state: Any) -> None:
        """Runs after :meth:`on_start` of a restarted actor whose earlier incarnation saved ``state``.

        Example:
            >>> class Tally(Actor):
            ...     def on_start(self): self.n = 0
            ...     def save_state(self): return self.n
            ...     def load_state(self, state): self.n = state
        """

    def _dispatch(self, message: Any) -> Any:
        table = self._laneway_handlers
        fn = table.get(type(message))
        if fn is None:
            for klass in type(message).__mro__[1:]:
                fn = table.get(klass)
                if fn is not None:
                    break
            else:
                return self.on_receive(message)
        return fn(self, message)


class _RefCell(Protocol):
    """What an :class:`ActorRef` (and its supervisor and system) uses of the cell behind it.

    Met by the thread cell (:class:`_Cell`) and by the parent-side cells of
    process and Ray actors (``ProcessCell``, ``RayCell``), so one ref works with
    every placement.
    """

    exit: Exit | None
    exited: threading.Event
    actor_stopped: threading.Event

    @property
    def lw_ref(self) -> ActorRef: ...

    def deliver(self, message: Any) -> None: ...

    def request_stop(self, exit: Exit) -> None: ...


class _ActorCell(Protocol):
    """What an :class:`Actor` reaches through ``self._cell``: its own ref, and a stop request.

    Met by the thread cell and by the body of a Ray actor. Inside a Ray actor
    or a host process, ``lw_ref`` is a stand-in (``_LocalRef``) with the
    actor's name; the host-process cell sets it only once the actor's spec is
    loaded, so it is optional there and its assignment is not checked.
    """

    @property
    def lw_ref(self) -> ActorRef: ...

    def request_stop(self, exit: Exit) -> None: ...


@attrs.define(slots=True)
class _Ask:
    message: Any
    future: Future[Any]


class _Wake:
    """Wakes an idle cell so it notices a stop request."""


_WAKE = _Wake()


class _Cell(pykka.ThreadingActor):
    """Hosts one incarnation of a user actor on a pykka thread."""

    # Cells are never put in pykka's process-global ActorRegistry: names live
    # per orchestrator. Threads are daemons so a stuck actor cannot keep the
    # interpreter alive.

    def __init__(self, ref: ActorRef, instance: Actor, on_exit: Callable[[_RefCell, Exit], None],
                 state: bytes | None = None) -> None:
        super().__init__()
        self.lw_ref = ref
        self.instance = instance
        self.state = state
        self.saves_state = type(instance).save_state is not Actor.save_state
        self._on_exit = on_exit
        self._stop_request: Exit | None = None
        self.exit: Exit | None = None
        self.started = False
        self.settled = threading.Event()  # set once started, or once ended without starting
        self.exited = threading.Event()
        instance._cell = self

    # pykka hooks ----------------------------------------------------------

    def on_start(self) -> None:
        try:
            self.instance.on_start()
            if self.state is not None:
                self.instance.load_state(pickle.loads(self.state))
        except Exception as exc:
            self._crash(exc, "on_start")
            return
        self.started = True
        self.settled.set()
        self.lw_ref.orchestrator.events.publish("actor.started", self.lw_ref.name)

    def on_receive(self, message: Any) -> None:
        if self._stop_request is not None:
            self.actor_stopped.set()
            self._reject(message)
            return
        if message is _WAKE:
            return
        ask = message if type(message) is _Ask else None
        msg = ask.message if ask is not None else message
        try:
            result = self.instance._dispatch(msg)
        except Exception as exc:
            if isinstance(exc, self.instance.reply_errors):
                # Not a crash: the sender made the mistake, the actor is fine.
                if ask is not None:
                    ask.future.settle(error=exc)
                else:
                    self._publish_dead_letter(msg, repr(exc))
                return
            if ask is not None:
                err = ActorCrashed(f"{self.lw_ref.name} crashed handling {type(msg).__qualname__}: {exc!r}", exc)
                err.__cause__ = exc
                ask.future.settle(error=err)
            self._crash(exc, type(msg).__qualname__)
            return
        if self.saves_state:
            self._save_state()
        if ask is not None:
            ask.future.settle(result)

    def _save_state(self) -> None:
        try:
            state = self.instance.save_state()
            self.lw_ref.orchestrator._save_actor_state(self.lw_ref.name, pickle.dumps(state, pickle.HIGHEST_PROTOCOL))
        except Exception:
            log.exception("%s: save_state failed; the previous state stays", self.lw_ref.name)

    def deliver(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            raise ActorDead(f"{self.lw_ref.name} is not running ({self._why_dead()})") from None
        if self.exited.is_set():  # lost the race with teardown: fail it ourselves
            self._drain()

    def _actor_loop_teardown(self) -> None:
        # Overrides pykka's private teardown, which would discard our messages
        # (they travel as plain tells) without a word.
        self._drain()
        super()._actor_loop_teardown()
        try:
            self.instance.on_stop()
        except Exception:
            log.exception("%s: on_stop raised", self.lw_ref.name)
        if self.exit is None:
            self.exit = self._stop_request or NORMAL_EXIT
        self.settled.set()
        self.exited.set()
        # A sender that put a message after the drain above sees exited set
        # and drains itself; this second drain covers the ones that did not.
        self._drain()
        announce_exit(self.lw_ref, self.exit, self.started, lambda exit: self._on_exit(self, exit))

    # internals ------------------------------------------------------------

    def _crash(self, exc: BaseException, where: str) -> None:
        log.warning("%s crashed in %s: %r", self.lw_ref.name, where, exc, exc_info=exc)
        self.exit = Exit(ExitKind.CRASH, exc)
        self.actor_stopped.set()

    def request_stop(self, exit: Exit) -> None:
        if self._stop_request is None:
            self._stop_request = exit
        try:
            self.actor_ref.tell(_WAKE)
        except pykka.ActorDeadError:
            pass

    def _drain(self) -> None:
        # pykka types the inbox as a put/get/empty Protocol; a ThreadingActor's is a queue.Queue.
        inbox = cast("queue.Queue[Any]", self.actor_inbox)
        while True:
            try:
                envelope = inbox.get_nowait()
            except queue.Empty:
                return
            if envelope.reply_to is not None:  # a pykka-level stop ask
                envelope.reply_to.set(None)
            else:
                self._reject(envelope.message)

    def _reject(self, message: Any) -> None:
        if message is _WAKE:
            return
        reason = self._why_dead()
        if type(message) is _Ask:
            message.future.settle(error=ActorDead(f"{self.lw_ref.name} ended ({reason}) before handling the message"))
        else:
            self._publish_dead_letter(message, reason)

    def _why_dead(self) -> str:
        return why_dead(self.exit or self._stop_request, not_yet="stopped")

    def _publish_dead_letter(self, message: Any, reason: str) -> None:
        publish_dead_letter(self.lw_ref, message, reason)


class ActorRef:
    """A stable handle to an actor: tell, ask, stop. Survives the actor's restarts.

    Example:
        >>> ref.tell(Inc(1))                       # doctest: +SKIP
        >>> ref.ask(Get(), timeout=1)              # doctest: +SKIP
        1
        >>> await ref.ask_async(Get())             # doctest: +SKIP
    """

    __slots__ = ("name", "orchestrator", "_cell", "incarnation", "__weakref__")

    def __init__(self, name: str, orchestrator: ActorSystem) -> None:
        self.name = name
        self.orchestrator = orchestrator
        self._cell: _RefCell | None = None
        self.incarnation = 0

    def __repr__(self) -> str:
        return f"<ActorRef {self.name} #{self.incarnation} {'alive' if self.is_alive() else 'dead'}>"

    def is_alive(self) -> bool:
        cell = self._cell
        return cell is not None and not cell.actor_stopped.is_set()

    @property
    def exit(self) -> Exit | None:
        """How the current incarnation ended, or None while it runs."""
        cell = self._cell
        return None if cell is None else cell.exit

    def tell(self, message: Any) -> None:
        """Send ``message`` without waiting for anything.

        Raises:
            ActorDead: the actor is not running (stopped, crashed or restarting).
            SerializationError: the actor runs in another process and ``message`` cannot be pickled.
        """
        cell = self._cell
        if cell is None:
            raise ActorDead(f"{self.name} is not running")
        cell.deliver(message)

    def ask_future(self, message: Any) -> Future[Any]:
        """Send ``message`` and return a future of the reply, without waiting."""
        fut: Future[Any] = Future()
        fut._what = f"reply from {self.name} to {type(message).__qualname__}"
        self.tell(_Ask(message, fut))
        return fut

    def ask(self, message: Any, *, timeout: float | None = None) -> Any:
        """Send ``message`` and block for the reply.

        Args:
            timeout: seconds to wait; None means the orchestrator's ``ask_timeout``.

        Raises:
            AskTimeout: no reply in time.
            ActorCrashed: the handler raised; ``__cause__`` is its exception.
            ActorDead: the actor is not running or ended before replying.
        """
        if timeout is None:
            timeout = self.orchestrator.ask_timeout
        cell = self._cell
        direct = getattr(cell, "ask_direct", None)
        if direct is not None:  # a process actor replies straight to the waiting thread
            return direct(message, timeout)
        return self.ask_future(message).get(timeout)

    async def ask_async(self, message: Any, *, timeout: float | None = None) -> Any:
        """``await`` form of :meth:`ask`; suspends only the calling task."""
        import asyncio

        if timeout is None:
            timeout = self.orchestrator.ask_timeout
        fut = self.ask_future(message)
        wrapped = asyncio.wrap_future(fut)
        done, _ = await asyncio.wait((wrapped,), timeout=timeout)
        if not done:
            wrapped.cancel()
            raise fut._timeout_error(f"no {fut._what} within {timeout}s")
        return wrapped.result()

    def stop(self, *, timeout: float | None = 5.0) -> bool:
        """Stop the actor after its current message; queued messages fail with ActorDead.

        A supervised actor that is ``permanent`` is restarted by its supervisor
        (use the supervisor's ``terminate_child`` to stop it for good).

        Returns:
            True if it ended within ``timeout`` (always True when not waiting).
        """
        cell = self._cell
        if cell is None:
            return True
        cell.request_stop(NORMAL_EXIT)
        if timeout == 0:
            return True
        return cell.exited.wait(timeout)

    # used by supervisors and the orchestrator ------------------------------

    def _start(self, factory: Callable[..., Actor], args: tuple, kwargs: dict, on_exit: Callable[[_RefCell, Exit], None],
               placement: Placement = Placement.THREAD, group: str | None = None,
               ray_options: dict[str, Any] | None = None, host: str | None = None) -> Any:
        """Start a new incarnation synchronously; raise ActorStartError if it fails."""
        saves = not isinstance(factory, type) or getattr(factory, "save_state", None) is not Actor.save_state
        state = self.orchestrator._load_actor_state(self.name) if saves else None
        if placement is Placement.PROCESS:
            return self.orchestrator._process_hosts().start_cell(self, factory, args, kwargs, on_exit, group, state,
                                                                  saves_state=saves)
        if placement is Placement.REMOTE:
            return self.orchestrator._remote_actor_hosts().start_cell(self, factory, args, kwargs, on_exit, host, state)
        if placement is Placement.RAY:
            return self.orchestrator._start_on_ray(self, factory, args, kwargs, on_exit, state, ray_options or {})
        try:
            instance = factory(*args, **kwargs)
        except Exception as exc:
            raise ActorStartError(f"{self.name}: constructing {factory!r} raised {exc!r}") from exc
        if not isinstance(instance, Actor):
            raise ActorStartError(f"{self.name}: {factory!r} returned {type(instance).__name__}, not an Actor")
        cell = _Cell(self, instance, on_exit, state)
        self._cell = cell
        self.incarnation += 1
        threading.Thread(target=cell._actor_loop, name=f"laneway:{self.name}", daemon=True).start()
        cell.settled.wait()
        if not cell.started:
            cell.exited.wait()
            cause = cell.exit.error if cell.exit is not None else None
            raise ActorStartError(f"{self.name} failed to start: {cause!r}") from cause
        return cell


def announce_exit(ref: ActorRef, exit: Exit, started: bool, notify: Callable[[Exit], None]) -> None:
    """An incarnation ended, whatever its placement: publish ``actor.crashed`` / ``actor.stopped``,
    then tell whoever supervises it (a failing notification is logged, never raised into the cell)."""
    events = ref.orchestrator.events
    if exit.kind is ExitKind.CRASH:
        events.publish("actor.crashed", ref.name, error=repr(exit.error), started=started)
    else:
        events.publish("actor.stopped", ref.name, kind=exit.kind.value)
    try:
        notify(exit)
    except Exception:
        log.exception("%s: exit notification failed", ref.name)


def publish_dead_letter(ref: ActorRef, message: Any, reason: str) -> None:
    """A message the actor will never handle (it ended first): published as ``actor.dead_letter``."""
    ref.orchestrator.events.publish("actor.dead_letter", ref.name, message=message, reason=reason)
