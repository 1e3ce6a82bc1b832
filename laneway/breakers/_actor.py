"""The breaker actor: wraps one agent; every call to the agent passes through it.

The actor owns the breaker's transitions (outcomes and reset timers arrive as
messages, so they are applied one at a time) and publishes each one as an
``agent.circuit.state`` event. The work itself never runs in the actor's
thread: a call *starts* the work (on a thread pool, an event loop or the
process pool) and the work reports back when it ends. The
:class:`CircuitBreaker` object lives outside the actor, so a supervisor's
restart keeps its state, and readers such as the router's decision path read
its state directly instead of asking.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import attrs

from laneway.actors import Actor, ActorRef, TimerHandle, handler
from laneway.breakers._breaker import CircuitBreaker
from laneway.breakers._config import BreakerState, BreakerStatistics, Transition
from laneway.breakers._states import Permit
from laneway.errors import ActorDead, CircuitOpen, ConfigError

log = logging.getLogger(__name__)

#: What a call's work reports when it ends: ``done(error=None, value=None)``.
Done = Callable[..., None]


@attrs.frozen
class CallOutcome:
    """How a guarded call ended, given to its ``reply``.

    Attributes:
        admitted: False when the circuit rejected the call (then ``error`` is a CircuitOpen).
        error: the work's error, None on success.
        value: what the work reported with its success.
        state: the breaker's state right after the outcome was recorded.
    """

    admitted: bool
    error: BaseException | None = None
    value: Any = None
    state: BreakerState = BreakerState.CLOSED


@attrs.frozen
class GuardedCall:
    """Message to a :class:`BreakerActor`: run some work behind its circuit.

    Attributes:
        start: ``start(done)`` starts the work without blocking and makes sure
            ``done(error=None, value=None)`` is called once when it ends (extra
            calls are ignored). If ``start`` raises, that counts as the failure.
        reply: ``reply(outcome)`` runs in the actor's thread once the outcome
            is known (at once when rejected); it must be quick, e.g. a ``tell``.
    """

    start: Callable[[Done], None]
    reply: Callable[[CallOutcome], None]


@attrs.frozen
class GetBreakerStatistics:
    """Message to a :class:`BreakerActor`: reply with its breaker's :class:`BreakerStatistics`."""


@attrs.frozen
class _Finished:
    permit: Permit
    error: BaseException | None
    value: Any
    reply: Callable[[CallOutcome], None]


@attrs.frozen
class _ResetDue:
    pass


class _DoneOnce:
    """The ``done`` given to a call's work: reports to the actor exactly once, from any thread."""

    __slots__ = ("_ref", "_breaker", "_permit", "_reply", "_lock", "_fired")

    def __init__(self, ref: ActorRef, breaker: CircuitBreaker, permit: Permit, reply: Callable[[CallOutcome], None]) -> None:
        self._ref = ref
        self._breaker = breaker
        self._permit = permit
        self._reply = reply
        self._lock = threading.Lock()
        self._fired = False

    def __call__(self, error: BaseException | None = None, value: Any = None) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
        try:
            self._ref.tell(_Finished(self._permit, error, value, self._reply))
        except ActorDead:
            # The actor is gone (its agent was removed, or it is restarting): the
            # breaker is thread-safe, so record here rather than lose the outcome.
            state = self._breaker.record(self._permit, error)
            _reply(self._reply, CallOutcome(True, error, value, state))


def _reply(reply: Callable[[CallOutcome], None], outcome: CallOutcome) -> None:
    try:
        reply(outcome)
    except Exception:
        log.exception("reply of a guarded call raised")


class BreakerActor(Actor):
    """An actor guarding one agent (or any dependency) with a :class:`CircuitBreaker`.

    Send it :class:`GuardedCall` messages; it rejects them at once while the
    circuit is open (the reply carries a :class:`~laneway.errors.CircuitOpen`),
    otherwise starts the work and records its outcome. Every transition is
    published as ``event_key`` (default ``agent.circuit.state``) with
    ``agent_id``, ``from``, ``to`` (state values such as ``"open"``) and
    ``reset_timeout_s``, and passed to ``on_transition``. When the circuit
    opens, a timer on the orchestrator's clock half-opens it after the reset
    timeout, so waiters learn of it without anybody polling.

    Args:
        breaker: the breaker; it outlives restarts of the actor.
        event_key: key of the transition events.
        on_transition: called with each :class:`Transition` (from any thread; keep it quick).

    Example:
        >>> cb = CircuitBreaker("search", BreakerConfig(), clock=orch.clock)          # doctest: +SKIP
        >>> ref = orch.spawn(BreakerActor, cb, name="breaker.search")                 # doctest: +SKIP
        >>> ref.tell(GuardedCall(start=lambda done: done(value=42), reply=print))     # doctest: +SKIP
    """

    def __init__(
        self,
        breaker: CircuitBreaker,
        *,
        event_key: str = "agent.circuit.state",
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        if not isinstance(breaker, CircuitBreaker):
            raise ConfigError(f"BreakerActor needs a CircuitBreaker, got {breaker!r}")
        self.breaker = breaker
        self.event_key = event_key
        self._on_transition_cb = on_transition
        self._remove_listener: Callable[[], None] | None = None
        self._timer: TimerHandle | None = None

    def on_start(self) -> None:
        self._remove_listener = self.breaker.add_listener(self._on_transition)
        if self.breaker.state is BreakerState.OPEN:  # restarted while open: re-arm the reset timer
            self._arm_reset_timer()

    def on_stop(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
        if self._timer is not None:
            self._timer.cancel()

    @handler(GuardedCall)
    def _call(self, msg: GuardedCall) -> None:
        breaker = self.breaker
        permit = breaker.try_acquire()
        if permit is None:
            _reply(msg.reply, CallOutcome(False, CircuitOpen(breaker._rejection_text()), None, breaker.state))
            return
        done = _DoneOnce(self.ref, breaker, permit, msg.reply)
        try:
            msg.start(done)
        except Exception as exc:
            done(exc)

    @handler(_Finished)
    def _finished(self, msg: _Finished) -> None:
        state = self.breaker.record(msg.permit, msg.error)
        _reply(msg.reply, CallOutcome(True, msg.error, msg.value, state))

    @handler(_ResetDue)
    def _reset_due(self, msg: _ResetDue) -> None:
        self.breaker.tick()

    @handler(GetBreakerStatistics)
    def _statistics(self, msg: GetBreakerStatistics) -> BreakerStatistics:
        return self.breaker.statistics()

    # transitions (may run in any thread that moved the breaker) ------------------------

    def _on_transition(self, t: Transition) -> None:
        data = {"agent_id": t.name, "from": t.from_state.value, "to": t.to_state.value, "reset_timeout_s": t.reset_timeout_s}
        self.orchestrator.events.publish(self.event_key, t.name, **data)
        if t.to_state is BreakerState.OPEN:
            self._arm_reset_timer()
        if self._on_transition_cb is not None:
            try:
                self._on_transition_cb(t)
            except Exception:
                log.exception("on_transition callback of breaker %s raised", t.name)

    def _arm_reset_timer(self) -> None:
        until = self.breaker.open_until
        if until is None:
            return
        clock = self.orchestrator.clock
        ref = self.ref

        def due() -> None:
            try:
                ref.tell(_ResetDue())
            except ActorDead:
                pass  # stopped; whoever uses the breaker next half-opens it lazily

        if self._timer is not None:
            self._timer.cancel()
        self._timer = clock.call_later(until - clock.now(), due)
