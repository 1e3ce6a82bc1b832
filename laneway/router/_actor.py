"""The router actor: owns the agent index, the waiting queue, retries and deadlines.

All routing state lives in this one actor's thread, so it needs no locks.
Submissions, agent outcomes, breaker transitions, deadline and retry timers
all arrive as messages; every message that can make an agent eligible ends
by offering the waiting tasks to the agents again (no polling).

The actor is supervised. What must survive a crash lives outside it, in
objects its incarnations share: the registered agents (``agents``) and the
submitted tasks (``live``). A restarted incarnation rebuilds its index from
the agents, fails the tasks that were running on an agent (their outcome
died with the crashed state: :class:`~laneway.errors.RouterRestarted`,
dead-lettered) and routes the others again, so no future is left hanging.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable

from laneway.actors import Actor, SupervisorRef, handler
from laneway.breakers import CallOutcome, GuardedCall
from laneway.errors import (
    ActorDead,
    AgentNotFound,
    AgentTimeout,
    Cancelled,
    CircuitOpen,
    ConfigError,
    LanewayError,
    NoCapableAgent,
    NoEligibleAgent,
    RouterError,
    RouterRestarted,
    SystemShutdown,
)
from laneway.core import RetryPolicy
from laneway.router._invoke import AgentCall, Runners
from laneway.router._messages import (
    Abandon,
    BreakerMoved,
    CancelTask,
    Close,
    DeadlineDue,
    Finished,
    GetAgents,
    GetStatistics,
    LiveTasks,
    QueueRoom,
    Register,
    RetryDue,
    Route,
    SubmitNow,
    Unregister,
    tell_quietly,
)
from laneway.router._records import AgentInfo, RouterStatistics, RoutingStrategy
from laneway.router._select import AgentIndex, AgentSlot, pick
from laneway.router._task import RoutedTask, RouteState, WaitQueue

log = logging.getLogger(__name__)


class RouterActor(Actor):
    """Decides which agent runs each task, and what happens when it fails. See :class:`Router`."""

    # Refusals of a submit_nowait are answers to the caller, not crashes.
    reply_errors = Actor.reply_errors + (RouterError, SystemShutdown)

    def __init__(
        self,
        *,
        strategy: RoutingStrategy,
        retry: RetryPolicy,
        runners: Runners,
        breakers: SupervisorRef,
        agents: dict[str, AgentSlot],
        live: LiveTasks,
        room: QueueRoom,
        seed: int | None,
    ) -> None:
        self.strategy = strategy
        self.retry = retry
        self.runners = runners
        self.breakers = breakers
        self.agents = agents  # shared with later incarnations; only the running incarnation changes it
        self.live = live
        self.room = room
        self.rng = random.Random(seed)
        self.index = AgentIndex()
        self.waiting = WaitQueue()
        self.tasks: dict[str, RoutedTask] = {}
        self.closed: LanewayError | None = None
        self.c = dict.fromkeys(("submitted", "completed", "failed", "retries", "rejections", "dead_lettered"), 0)
        # Attempts a crashed incarnation started: their late outcomes are not counted again.
        self.orphans: set[AgentCall] = set()

    def on_start(self) -> None:
        for slot in self.agents.values():
            # Counters of the crashed incarnation may be half-updated: start the live ones afresh.
            slot.in_flight = 0
            slot.down = slot.breaker_ref is None or not slot.breaker_ref.is_alive()
            slot.update_rank()
            self.index.add(slot)
        inherited = self.live.tasks()
        if inherited:
            self._take_over(inherited)

    def _take_over(self, inherited: list[RoutedTask]) -> None:
        """Adopt the tasks of a crashed incarnation: fail those an agent was running, route the rest again."""
        clock = self.orchestrator.clock
        now = clock.now()
        log.warning("router %s restarted with %d unfinished task(s); taking them over", self.name, len(inherited))
        for task in inherited:
            task.cancel_timers()  # a due timer may have been lost with the crashed mailbox: armed again below
            if task.state is RouteState.RUNNING and task.attempt is not None:
                self.orphans.add(task.attempt)
            if not task.handed_over or task.state is RouteState.DONE:
                continue  # a submit_nowait refused by the crash: its caller got the error and retries
            self.tasks[task.id] = task
            if task.state is RouteState.RUNNING:
                error = RouterRestarted(
                    f"router {self.name} crashed while agent "
                    f"{task.attempt.agent_id if task.attempt is not None else '?'} ran task {task.id}; "
                    "the attempt's outcome is lost (the task is dead-lettered and can be re-submitted)"
                )
                self._end(task, error, "the router crashed while an agent ran it", dead_letter=True)
                continue
            if task.timeout is not None:
                if task.deadline is None:  # its Route never reached the crashed incarnation
                    task.deadline = now + task.timeout
                self._arm_deadline(task, task.deadline - now)
            self._reroute(task)

    # requests ---------------------------------------------------------------------

    @handler(Route)
    def _submit(self, msg: Route) -> None:
        task = msg.task
        if task.id in self.tasks or task.state is RouteState.DONE:
            return  # sent while this incarnation started, and taken over from the crashed one already
        self.c["submitted"] += 1
        if self.closed is not None:
            self._settle(task, error=self.closed)
            return
        if not self.index.has_capable(task.capabilities, task.role):
            # Nothing could ever run it: fail at once; the caller learns it from the future.
            self._settle(task, error=NoCapableAgent(self._no_capable_text(task)))
            return
        self._accept(task)
        if not self._route(task):
            self.waiting.push(task)

    @handler(SubmitNow)
    def _submit_now(self, msg: SubmitNow) -> None:
        task = msg.task
        if self.closed is not None:
            raise SystemShutdown(str(self.closed))
        if not self.index.has_capable(task.capabilities, task.role):
            raise NoCapableAgent(self._no_capable_text(task))
        if not self.index.eligible(task.capabilities, task.role):
            raise NoEligibleAgent(f"no agent with {sorted(task.capabilities)}{self._role_text(task)} is eligible now")
        self.c["submitted"] += 1
        self._accept(task)
        self._route(task)
        task.handed_over = True

    def _accept(self, task: RoutedTask) -> None:
        self.tasks[task.id] = task
        if task.timeout is not None:
            task.deadline = self.orchestrator.clock.now() + task.timeout
            self._arm_deadline(task, task.timeout)

    def _arm_deadline(self, task: RoutedTask, delay: float) -> None:
        task.timers.append(self.orchestrator.clock.call_later(max(0.0, delay), self._timer(DeadlineDue(task.id))))

    @handler(Register)
    def _register(self, msg: Register) -> AgentInfo:
        slot = msg.slot
        if slot.agent_id in self.index.slots:
            raise ConfigError(f"agent {slot.agent_id!r} is already registered")
        self.index.add(slot)
        self.agents[slot.agent_id] = slot
        self.orchestrator.events.publish(
            "agent.registered", slot.agent_id, agent_id=slot.agent_id, role=slot.role.name.lower(),
            capabilities=sorted(slot.capabilities),
        )  # fmt: skip
        self._drain()
        return slot.info()

    @handler(Unregister)
    def _unregister(self, msg: Unregister) -> AgentInfo:
        slot = self._slot(msg.agent_id)
        self.index.remove(slot)
        self.agents.pop(slot.agent_id, None)
        self.orchestrator.events.publish("agent.unregistered", slot.agent_id, agent_id=slot.agent_id)
        if slot.in_flight == 0:
            self._stop_breaker(slot)
        for task in list(self.waiting.live()):
            if not self.index.has_capable(task.capabilities, task.role):
                self.waiting.forget(task)
                self._fail(task, NoCapableAgent(self._no_capable_text(task)), "its last capable agent was removed")
        return slot.info()

    @handler(GetAgents)
    def _agents(self, msg: GetAgents) -> Any:
        if msg.agent_id is not None:
            return self._slot(msg.agent_id).info()
        return tuple(slot.info() for slot in self.index.slots.values())

    @handler(GetStatistics)
    def _statistics(self, msg: GetStatistics) -> RouterStatistics:
        states = [t.state for t in self.tasks.values()]
        return RouterStatistics(
            strategy=self.strategy,
            agents=len(self.index),
            waiting=len(self.waiting),
            running=states.count(RouteState.RUNNING),
            retry_pending=states.count(RouteState.RETRY_WAIT),
            **self.c,
        )

    @handler(CancelTask)
    def _cancel(self, msg: CancelTask) -> None:
        task = self.tasks.get(msg.task_id)
        if task is not None:
            self._end(task, Cancelled(f"task {task.id} was cancelled by its caller"), "cancelled by its caller")

    @handler(Close)
    def _close(self, msg: Close) -> int:
        self.closed = msg.error
        for task in list(self.tasks.values()):
            if task.state is not RouteState.RUNNING:
                self._end(task, msg.error, "the router shut down before the task could run", dead_letter=True)
        return len(self.tasks)

    @handler(Abandon)
    def _abandon(self, msg: Abandon) -> int:
        running = list(self.tasks.values())
        for task in running:
            self._end(task, msg.error, "the router shut down while an agent still ran the task", dead_letter=True)
        return len(running)

    # outcomes and timers ------------------------------------------------------------------

    @handler(Finished)
    def _finished(self, msg: Finished) -> None:
        task, slot, attempt, outcome = msg.task, msg.slot, msg.attempt, msg.outcome
        if attempt in self.orphans:  # started before a crash: its task already failed, the count started afresh
            self.orphans.discard(attempt)
            return
        slot.in_flight -= 1
        slot.update_rank()
        if slot.removed and slot.in_flight == 0:
            self._stop_breaker(slot)
        current = task.attempt is attempt and task.state is RouteState.RUNNING
        if not outcome.admitted:
            slot.rejected += 1
            self.c["rejections"] += 1
            self.index.refresh(slot)
            if current:
                task.attempts -= 1  # never ran: not an attempt
                self._reroute(task, avoid=slot)
        else:
            self._account(slot, attempt, outcome.error)
            if current:
                if outcome.error is None:
                    self._succeed(task, outcome.value)
                else:
                    task.tried.add(slot)
                    self._attempt_failed(task, outcome.error)
        self._drain()

    @handler(BreakerMoved)
    def _breaker_moved(self, msg: BreakerMoved) -> None:
        slot = self.index.slots.get(msg.agent_id)
        if slot is not None:
            slot.down = slot.breaker_ref is None or not slot.breaker_ref.is_alive()
            self.index.refresh(slot)
            self._drain()

    @handler(DeadlineDue)
    def _deadline_due(self, msg: DeadlineDue) -> None:
        task = self.tasks.get(msg.task_id)
        if task is None:
            return
        if task.state is RouteState.WAITING:
            error: BaseException = NoEligibleAgent(
                f"no agent with {sorted(task.capabilities)}{self._role_text(task)} became eligible "
                f"within {task.timeout}s (attempts so far: {task.attempts})"
            )
            error.__cause__ = task.last_error
            self._end(task, error, "no eligible agent before its deadline", dead_letter=True)
        elif task.state is RouteState.RETRY_WAIT:
            self._end(task, task.last_error, "its deadline passed while it waited to be retried", dead_letter=True)
        else:
            agent = task.attempt.agent_id if task.attempt is not None else "?"
            error = AgentTimeout(f"task {task.id} did not finish within {task.timeout}s on agent {agent}")
            self._end(task, error, "its deadline passed while an agent ran it", dead_letter=True)

    @handler(RetryDue)
    def _retry_due(self, msg: RetryDue) -> None:
        task = self.tasks.get(msg.task_id)
        if task is not None and task.state is RouteState.RETRY_WAIT:
            self._reroute(task)

    # routing -------------------------------------------------------------------------------

    def _route(self, task: RoutedTask, avoid: AgentSlot | None = None) -> bool:
        """Start ``task`` on an eligible agent now; False if there is none."""
        candidates = self.index.eligible(task.capabilities, task.role)
        if avoid is not None:
            candidates.discard(avoid)
        if not candidates:
            return False
        if task.tried:
            # Failover: prefer agents this task has not failed on yet.
            fresh = candidates - task.tried
            if fresh:
                candidates = fresh
        self._start_on(task, pick(self.strategy, candidates, self.rng))
        return True

    def _reroute(self, task: RoutedTask, avoid: AgentSlot | None = None) -> None:
        if not self.index.has_capable(task.capabilities, task.role):
            self._fail(task, NoCapableAgent(self._no_capable_text(task)), "no agent with its capabilities is left")
        elif not self._route(task, avoid):
            self.waiting.push(task)

    def _start_on(self, task: RoutedTask, slot: AgentSlot) -> None:
        self._give_back_place(task)
        task.attempts += 1
        attempt = AgentCall(task.id, slot.agent_id, task.attempts)
        task.attempt = attempt
        task.state = RouteState.RUNNING
        slot.in_flight += 1
        self.index.note_pick(slot)
        self.index.refresh(slot)
        remaining = None if task.deadline is None else max(0.0, task.deadline - self.orchestrator.clock.now())
        runners, invoker, me = self.runners, slot.invoker, self.ref

        def start(done: Callable[..., None]) -> None:
            runners.start(invoker, task.payload, task.context, attempt, remaining, done)

        def reply(outcome: CallOutcome) -> None:
            tell_quietly(me, Finished(task, slot, attempt, outcome))

        try:
            if slot.breaker_ref is None:
                raise ActorDead(f"agent {slot.agent_id} has no breaker actor")
            slot.breaker_ref.tell(GuardedCall(start, reply))
        except ActorDead:
            # Its breaker actor is down (restarting, or its supervisor gave up): like an open
            # circuit, until a restart of it is reported (see _breaker_moved).
            slot.down = True
            rejected = CallOutcome(False, CircuitOpen(f"breaker of agent {slot.agent_id} is not running"))
            tell_quietly(me, Finished(task, slot, attempt, rejected))

    def _drain(self) -> None:
        self.waiting.drain(self._route)

    # endings -------------------------------------------------------------------------------

    def _account(self, slot: AgentSlot, attempt: AgentCall, error: BaseException | None) -> None:
        slot.observe_latency(attempt.latency_s)
        data = {"agent_id": slot.agent_id, "task_id": attempt.task_id, "attempt": attempt.number, "latency_s": attempt.latency_s}
        if error is None:
            slot.completed += 1
            self.orchestrator.events.publish("agent.task.completed", slot.agent_id, **data)
        else:
            slot.failed += 1
            self.orchestrator.events.publish("agent.task.failed", slot.agent_id, error=repr(error), **data)
        self.index.refresh(slot)

    def _attempt_failed(self, task: RoutedTask, error: BaseException) -> None:
        task.last_error = error
        policy = task.retry
        delay = policy.delay_before(task.attempts, self.rng) if policy.retries(error) else None
        clock = self.orchestrator.clock
        if delay is None or (task.deadline is not None and clock.now() + delay >= task.deadline):
            self._fail(task, error, f"failed {task.attempts} attempt(s); retries {'used up' if delay is None else 'past deadline'}")
            return
        self.c["retries"] += 1
        if delay <= 0:
            self._reroute(task)
            return
        task.state = RouteState.RETRY_WAIT
        task.timers.append(clock.call_later(delay, self._timer(RetryDue(task.id))))

    def _succeed(self, task: RoutedTask, value: Any) -> None:
        self.c["completed"] += 1
        self._finish(task)
        task.future.settle(value)

    def _fail(self, task: RoutedTask, error: BaseException, reason: str, dead_letter: bool = True) -> None:
        self.c["failed"] += 1
        self._finish(task)
        if dead_letter:
            self.c["dead_lettered"] += 1
            task.dead_letter(self.orchestrator.dead_letters, error, reason)
        task.future.settle(error=error)

    def _end(self, task: RoutedTask, error: BaseException | None, reason: str, dead_letter: bool = False) -> None:
        """End a task from outside its run (deadline, cancel, shutdown); a running call is cancelled if it can be."""
        error = error or LanewayError(reason)
        if task.state is RouteState.WAITING:
            self.waiting.forget(task)
        elif task.state is RouteState.RUNNING and task.attempt is not None:
            task.attempt.cancel(error)
        self._fail(task, error, reason, dead_letter=dead_letter)

    def _finish(self, task: RoutedTask) -> None:
        self._give_back_place(task)
        task.state = RouteState.DONE
        task.cancel_timers()
        self.tasks.pop(task.id, None)
        self.live.leave(task)

    def _settle(self, task: RoutedTask, error: BaseException) -> None:
        """Fail a task that was never accepted."""
        self.c["failed"] += 1
        self._give_back_place(task)
        task.state = RouteState.DONE
        self.live.leave(task)
        task.future.settle(error=error)

    def _give_back_place(self, task: RoutedTask) -> None:
        if task.holds_place:
            task.holds_place = False
            self.room.give_back()

    # helpers ----------------------------------------------------------------------------------

    def _timer(self, message: Any) -> Callable[[], None]:
        me = self.ref
        return lambda: tell_quietly(me, message)

    def _slot(self, agent_id: str) -> AgentSlot:
        slot = self.index.slots.get(agent_id)
        if slot is None:
            raise AgentNotFound(f"no agent {agent_id!r} is registered")
        return slot

    def _stop_breaker(self, slot: AgentSlot) -> None:
        try:
            self.breakers.terminate_child(slot.agent_id)
            self.breakers.delete_child(slot.agent_id)
        except LanewayError:
            log.warning("could not stop the breaker actor of agent %s", slot.agent_id, exc_info=True)

    def _role_text(self, task: RoutedTask) -> str:
        return f" in role {task.role.name.lower()}" if task.role is not None else ""

    def _no_capable_text(self, task: RoutedTask) -> str:
        return f"no registered agent has all of {sorted(task.capabilities)}{self._role_text(task)}"
