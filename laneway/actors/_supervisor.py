"""Supervisor actors: OTP restart strategies, intensity, and (our addition) restart backoff."""

from __future__ import annotations

import collections
import itertools
import logging
import random
from typing import Any, Iterable

import attrs

from laneway.actors._actor import SHUTDOWN_EXIT, Actor, ActorRef, Exit, ExitKind, _RefCell, handler
from laneway.actors._specs import (
    ChildInfo,
    ChildSpec,
    ChildState,
    RestartType,
    Strategy,
    StrategyKind,
)
from laneway.errors import ActorDead, ActorNotFound, ActorStartError, ConfigError, SupervisorEscalation

log = logging.getLogger(__name__)


# --- messages -----------------------------------------------------------------


@attrs.frozen
class StartChild:
    spec: ChildSpec


@attrs.frozen
class TerminateChild:
    name: str


@attrs.frozen
class RestartChild:
    name: str


@attrs.frozen
class DeleteChild:
    name: str


@attrs.frozen
class WhichChildren:
    pass


@attrs.frozen
class _ChildExited:
    ref: ActorRef
    cell: _RefCell
    exit: Exit


@attrs.frozen
class _RestartDue:
    token: int


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    ref: ActorRef
    state: ChildState = ChildState.STOPPED
    restarts: int = 0
    started_at: float = 0.0
    failures: int = 0  # consecutive failures, for backoff with Strategy.backoff_reset_s


class Supervisor(Actor):
    """Starts, watches and restarts child actors by an OTP strategy.

    Spawn one with :meth:`Orchestrator.spawn_supervisor` or nest one as a
    child with :func:`supervisor_spec`; talk to it through its
    :class:`SupervisorRef`.
    """

    # A child that fails to start from start_child is the requester's problem (OTP
    # replies {error, Reason}); the supervisor and its other children carry on.
    reply_errors = Actor.reply_errors + (ActorStartError,)

    def __init__(self, strategy: Strategy | None = None, children: Iterable[ChildSpec] = ()) -> None:
        if strategy is not None and not isinstance(strategy, Strategy):
            raise ConfigError(f"strategy must be a Strategy (OneForOne(), ...), got {strategy!r}")
        self.strategy = strategy or Strategy()
        self._initial = list(children)
        self._children: list[_Child] = []
        self._restart_times: collections.deque[float] = collections.deque()
        self._pending: dict[int, tuple[list[_Child], Any]] = {}
        self._tokens = itertools.count()
        self._rng = random.Random()

    # lifecycle ---------------------------------------------------------------

    def on_start(self) -> None:
        try:
            for spec in self._initial:
                self._add_and_start(spec)
        except Exception:
            self._stop_all()
            raise

    def on_stop(self) -> None:
        for _, timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
        self._stop_all()
        for child in self._children:
            self.orchestrator._unregister(child.ref.name)

    # requests ----------------------------------------------------------------

    @handler(StartChild)
    def _start_child(self, msg: StartChild) -> ActorRef:
        return self._add_and_start(msg.spec).ref

    @handler(TerminateChild)
    def _terminate_child(self, msg: TerminateChild) -> bool:
        child = self._find(msg.name)
        self._stop_child(child)
        if child.spec.restart is RestartType.TEMPORARY:
            self._remove(child)
        return True

    @handler(RestartChild)
    def _restart_child(self, msg: RestartChild) -> ActorRef:
        child = self._find(msg.name)
        if child.state is ChildState.RUNNING:
            raise ConfigError(f"{child.ref.name} is running; terminate it before restarting it")
        self._start(child)
        return child.ref

    @handler(DeleteChild)
    def _delete_child(self, msg: DeleteChild) -> bool:
        child = self._find(msg.name)
        if child.state is ChildState.RUNNING:
            raise ConfigError(f"{child.ref.name} is running; terminate it before deleting it")
        self._remove(child)
        return True

    @handler(WhichChildren)
    def _which_children(self, msg: WhichChildren) -> list[ChildInfo]:
        return [ChildInfo(c.spec.name, c.state, c.spec.restart, c.restarts, c.ref) for c in self._children]

    # failures ----------------------------------------------------------------

    @handler(_ChildExited)
    def _child_exited(self, msg: _ChildExited) -> None:
        child = next((c for c in self._children if c.ref is msg.ref), None)
        # Exits we caused (terminate, sibling restarts) or of an older incarnation are old news.
        if child is None or child.ref._cell is not msg.cell or child.state is not ChildState.RUNNING:
            return
        self._handle_exit(child, msg.exit)

    def _handle_exit(self, child: _Child, exit: Exit) -> None:
        restart = child.spec.restart
        if restart is RestartType.TEMPORARY or (restart is RestartType.TRANSIENT and not exit.abnormal):
            child.state = ChildState.STOPPED
            if restart is RestartType.TEMPORARY:
                self._remove(child)
            return
        now = self.orchestrator.clock.now()
        window = self._restart_times
        while window and window[0] <= now - self.strategy.within_s:
            window.popleft()
        window.append(now)
        if len(window) > self.strategy.max_restarts:
            self._escalate(child, exit)
        group = self._group(child)
        for sibling in reversed(group):
            if sibling is not child and sibling.state is ChildState.RUNNING:
                self._stop_child(sibling)
        for sibling in list(group):
            if sibling.spec.restart is RestartType.TEMPORARY and sibling is not child:
                self._remove(sibling)
                group.remove(sibling)
        for member in group:
            member.state = ChildState.RESTARTING
        backoff = self.strategy.backoff
        attempt = len(window)
        if self.strategy.backoff_reset_s is not None:
            if now - child.started_at >= self.strategy.backoff_reset_s:
                child.failures = 0  # it ran long enough to count as healthy
            child.failures += 1
            attempt = child.failures
        delay = backoff.delay(attempt, self._rng) if backoff is not None else 0.0
        if delay <= 0:
            self._restart_group(group, delay)
            return
        token = next(self._tokens)
        me = self.ref

        def due() -> None:
            try:
                me.tell(_RestartDue(token))
            except ActorDead:
                pass  # the supervisor itself ended; nothing left to restart

        self._pending[token] = (group, self.orchestrator.clock.call_later(delay, due))
        self.orchestrator.events.publish(
            "supervisor.child.backoff", self.name, child=child.spec.name, delay_s=delay
        )

    @handler(_RestartDue)
    def _restart_due(self, msg: _RestartDue) -> None:
        entry = self._pending.pop(msg.token, None)
        if entry is not None:
            self._restart_group(entry[0], None)

    def _restart_group(self, group: list[_Child], delay: float | None) -> None:
        for member in group:
            if member.state is not ChildState.RESTARTING or member not in self._children:
                continue
            try:
                self._start(member)
            except ActorStartError as exc:
                # A failed restart is one more failure, counted against intensity.
                member.state = ChildState.RUNNING
                self._handle_exit(member, Exit(ExitKind.CRASH, exc))
                return
            member.restarts += 1
            self.orchestrator.events.publish(
                "supervisor.child.restarted",
                self.name,
                child=member.spec.name,
                restarts=member.restarts,
                incarnation=member.ref.incarnation,
                delay_s=delay,
            )

    def _escalate(self, child: _Child, exit: Exit) -> None:
        s = self.strategy
        text = (
            f"supervisor {self.name} gave up: more than {s.max_restarts} restarts within {s.within_s}s; "
            f"last failure in {child.ref.name}: {exit.error!r}"
        )
        self.orchestrator.events.publish(
            "supervisor.escalated", self.name, child=child.spec.name, error=repr(exit.error), reason=text
        )
        for _, timer in self._pending.values():
            timer.cancel()
        self._pending.clear()
        self._stop_all()
        raise SupervisorEscalation(text) from exit.error

    def _group(self, child: _Child) -> list[_Child]:
        kind = self.strategy.kind
        if kind is StrategyKind.ONE_FOR_ONE:
            return [child]
        if kind is StrategyKind.ONE_FOR_ALL:
            return list(self._children)
        return self._children[self._children.index(child):]

    # plumbing ----------------------------------------------------------------

    def _add_and_start(self, spec: ChildSpec) -> _Child:
        if not isinstance(spec, ChildSpec):
            raise ConfigError(f"start_child needs a ChildSpec, got {spec!r}")
        if any(c.spec.name == spec.name for c in self._children):
            raise ConfigError(f"supervisor {self.name} already has a child named {spec.name!r}")
        ref_class = getattr(spec.factory, "ref_class", ActorRef)
        # A restarted supervisor starts its children behind the references of
        # its previous incarnation, so refs into a subtree survive its restarts.
        kept = self.ref._child_refs if isinstance(self.ref, SupervisorRef) else {}
        ref = kept.get(spec.name)
        if type(ref) is not ref_class:
            ref = kept[spec.name] = ref_class(f"{self.name}/{spec.name}", self.orchestrator)
        self.orchestrator._register(ref)
        child = _Child(spec, ref)
        try:
            self._start(child)
        except Exception:
            self.orchestrator._unregister(ref.name)
            raise
        self._children.append(child)
        return child

    def _start(self, child: _Child) -> None:
        me = self.ref

        def on_exit(cell: _RefCell, exit: Exit) -> None:
            try:
                me.tell(_ChildExited(child.ref, cell, exit))
            except ActorDead:
                pass  # supervisor gone; it stopped this child on its way out

        spec = child.spec
        child.ref._start(spec.factory, spec.args, spec.kwargs, on_exit, spec.placement, spec.group, spec.ray_options,
                         spec.host)
        child.state = ChildState.RUNNING
        child.started_at = self.orchestrator.clock.now()

    def _stop_child(self, child: _Child) -> bool:
        cell = child.ref._cell
        child.state = ChildState.STOPPED
        if cell is None or cell.exited.is_set():
            return True
        cell.request_stop(SHUTDOWN_EXIT)
        if cell.exited.wait(child.spec.shutdown_s):
            return True
        kill = getattr(cell, "kill", None)
        if kill is not None:  # a process can be ended for sure, unlike a thread (OTP's brutal_kill after the timeout)
            log.error("%s did not stop within %.1fs; killing its process", child.ref.name, child.spec.shutdown_s)
            kill()
            if cell.exited.wait(5.0):
                return True
        log.error("%s did not stop within %.1fs; abandoning it", child.ref.name, child.spec.shutdown_s)
        self.orchestrator.events.publish("actor.stuck", child.ref.name, shutdown_s=child.spec.shutdown_s)
        self.orchestrator._report_stuck(child.ref.name)
        return False

    def _stop_all(self) -> None:
        for child in reversed(self._children):
            if child.state is ChildState.RUNNING:
                self._stop_child(child)
            elif child.state is ChildState.RESTARTING:
                child.state = ChildState.STOPPED

    def _find(self, name: str) -> _Child:
        for child in self._children:
            if child.spec.name == name:
                return child
        raise ActorNotFound(f"supervisor {self.name} has no child named {name!r}")

    def _remove(self, child: _Child) -> None:
        if child in self._children:
            self._children.remove(child)
            self.orchestrator._unregister(child.ref.name)
            if isinstance(self.ref, SupervisorRef):
                self.ref._child_refs.pop(child.spec.name, None)


class SupervisorRef(ActorRef):
    """Reference to a :class:`Supervisor`, with its management calls.

    Example:
        >>> sup = orch.spawn_supervisor("workers", strategy=OneForOne())   # doctest: +SKIP
        >>> w1 = sup.start_child(ChildSpec(Worker, name="w1"))             # doctest: +SKIP
    """

    __slots__ = ("_child_refs",)

    def __init__(self, name: str, orchestrator: Any) -> None:
        super().__init__(name, orchestrator)
        # The children's references by child name, kept across this supervisor's restarts.
        self._child_refs: dict[str, ActorRef] = {}

    def start_child(self, spec: ChildSpec, *, timeout: float | None = None) -> ActorRef:
        """Start a child now and supervise it; returns its reference."""
        return self.ask(StartChild(spec), timeout=timeout)

    def terminate_child(self, name: str, *, timeout: float | None = None) -> None:
        """Stop a child for good (until :meth:`restart_child`)."""
        self.ask(TerminateChild(name), timeout=timeout)

    def restart_child(self, name: str, *, timeout: float | None = None) -> ActorRef:
        """Start a terminated child again."""
        return self.ask(RestartChild(name), timeout=timeout)

    def delete_child(self, name: str, *, timeout: float | None = None) -> None:
        """Forget a terminated child's spec."""
        self.ask(DeleteChild(name), timeout=timeout)

    def which_children(self, *, timeout: float | None = None) -> list[ChildInfo]:
        """The children in start order, with state and restart count."""
        return self.ask(WhichChildren(), timeout=timeout)

    def child(self, name: str) -> ActorRef:
        """The reference of the child named ``name``."""
        return self.orchestrator.lookup(f"{self.name}/{name}")


Supervisor.ref_class = SupervisorRef  # type: ignore[attr-defined]


def supervisor_spec(
    name: str,
    strategy: Strategy | None = None,
    children: Iterable[ChildSpec] = (),
    *,
    restart: RestartType | str = RestartType.PERMANENT,
    shutdown_s: float = 30.0,
) -> ChildSpec:
    """A :class:`ChildSpec` for a nested supervisor (a subtree).

    Example:
        >>> from laneway.actors import Actor, ChildSpec, OneForOne, supervisor_spec
        >>> supervisor_spec("inner", OneForOne(), [ChildSpec(Actor, name="a")]).name
        'inner'
    """
    return ChildSpec(
        Supervisor,
        name=name,
        kwargs={"strategy": strategy, "children": list(children)},
        restart=restart,
        shutdown_s=shutdown_s,
    )
