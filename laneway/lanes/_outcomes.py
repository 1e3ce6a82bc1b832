"""The end of a run: completion, failure and retry, timeouts, dead letters, launches that failed."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable

from laneway.errors import CommandTimeout, LaneError
from laneway.core import LazyFuture
from laneway.lanes._lane import RUN_EWMA_ALPHA
from laneway.lanes._records import CommandState

if TYPE_CHECKING:
    from laneway.lanes._command import Command, Run
    from laneway.lanes._core import LaneCore
    from laneway.lanes._lane import Lane

log = logging.getLogger(__name__)
settle_many = LazyFuture.settle_many
settle_unarmed = LazyFuture.settle
_RUN_KEEP = 1.0 - RUN_EWMA_ALPHA  # the weight the run-time average keeps at each run


class Outcomes:
    """Records how runs end, inside the core's outbox; the executors call it through callbacks."""

    def __init__(self, core: LaneCore) -> None:
        self._core = core
        # Completed commands' futures (nobody armed a wait) and their values, settled by one
        # _settle_done effect, queued with the first of them (guarded by the core's lock).
        self._done_futures: list[Any] = []
        self._done_values: list[Any] = []

    def _settle_done(self) -> None:
        """The effect that settles what :meth:`end_runs_locked` gathered (the lists are swapped under the lock)."""
        with self._core.lock:
            futures, values = self._done_futures, self._done_values
            self._done_futures, self._done_values = [], []
        settle_many(futures, values)

    def announce_run(self, run: Run) -> None:
        """A run is about to execute (called by the executors, without the lock)."""
        cmd = run.cmd
        core = self._core
        if cmd.durable and core.pending is not None:
            core.pending.record_attempt(cmd)  # the attempt count survives a crash mid-run
        events = core.events
        if events.wants("queue.command.started"):  # publish_dict: publish's frame and keywords spared per run
            events.publish_dict("queue.command.started", cmd.lane.name, {
                "command_id": cmd.id, "caller": cmd.caller, "tool": cmd.spec.name, "attempt": run.attempt,
                "wait_s": run.started_at - cmd.enqueued_at})

    def finish(self, run: Run, ok: bool, value: Any) -> None:
        """A run returned or raised (called from the loop thread, a pool callback or a worker)."""
        core = self._core
        with core.box:
            self.end_run_locked(run, ok, value)
            core.dispatch_locked()

    def launch_failed_locked(self, run: Run, exc: BaseException) -> None:
        """No executor took the run: free the slots it holds and fail the attempt (the lane goes on)."""
        log.error("lanes: could not launch command %s: %r", run.cmd.id, exc)
        error = LaneError(f"command {run.cmd.id} ({run.cmd.spec.name}) could not be launched: {exc!r}")
        error.__cause__ = exc
        self.end_run_locked(run, False, error)

    def launch_failed(self, run: Run, exc: BaseException) -> None:
        """An executor found, after the lock was released, that it cannot run ``run``."""
        core = self._core
        with core.box:
            if not run.ended:
                self.launch_failed_locked(run, exc)
                core.dispatch_locked()

    def end_run_locked(self, run: Run, ok: bool, value: Any) -> None:
        """Record how one run ended (see :meth:`end_runs_locked`)."""
        self.end_runs_locked(((run, ok, value),))

    def end_runs_locked(self, outcomes: Iterable[tuple[Run, bool, Any]]) -> None:
        """Record how runs ended, ``(run, ok, value)`` each.

        One call for a worker thread's whole batch: the loop is here, not around the call, so
        each run costs no frame; a run whose recording fails is logged and the rest still end.

        A plain completion (nobody waits on it, nothing to clean up: no timer, group, victim
        list, store record or drain) takes a short branch that does what is the command's own,
        and leaves what its lane counts to :meth:`_completed_locked`, once for the lane's
        consecutive plain completions (dispatch starts a lane's runs one after another, so a
        batch holds them so) and before any other run is recorded: the general path, and
        whatever reads the lane after this call, finds its counts whole. When someone hears of
        completions, their events go out together, by one effect queued before any other run's.
        """
        core = self._core
        now = core.now()  # one reading for the batch: its runs ended within microseconds of each other
        add = core.box.add
        # Asked once per batch, as the executor asks whether anyone hears of starts.
        tell = core.events.active and core.events.wants("queue.command.completed")
        plain = not core.quiet_waiters
        told: list[tuple[str, dict[str, Any]]] = []  # plain completions' events, not yet queued
        # The lane of the plain completions gathered and not yet counted (None: none), how many, the sum
        # of their start times, and where their latencies go; the batch's settled results (see _settle_done).
        lane_of: Lane | None = None
        count, slots, started = 0, 0, 0.0
        record: Callable[[float], Any]
        commands: dict[str, Command]
        futures: list[Any]
        values: list[Any]
        for run, ok, value in outcomes:
            try:
                cmd = run.cmd
                future = cmd.future
                gate = future.wait_gate
                if (gate is None and plain and ok and not run.superseded and not cmd.timers and cmd.group is None
                        and not cmd.preemptible and not cmd.durable):
                    run.ended = True
                    cmd.state = CommandState.COMPLETED
                    lane = cmd.lane
                    if lane is not lane_of:
                        if lane_of is not None:
                            self._completed_locked(lane_of, count, slots, started, now)
                        else:  # the first plain completion since the batch began or since another run
                            commands, futures, values = core.commands, self._done_futures, self._done_values
                            if not futures:  # settled by one effect, as in the general path
                                add(self._settle_done)
                        lane_of, count, slots, started = lane, 0, 0, 0.0
                        memory = lane.memory  # the in-memory recorder's window takes each latency without a call
                        record = memory.latencies.record if memory is not None else partial(self._report, lane, now)
                    count += 1
                    slots += run.slot
                    started += run.started_at
                    latency = now - cmd.submitted_at
                    record(latency)
                    futures.append(future)
                    values.append(value)
                    del commands[cmd.id]  # final_locked's common case, without its frame
                    if tell:
                        told.append((lane.name, {
                            "command_id": cmd.id, "caller": cmd.caller, "tool": cmd.spec.name, "latency_s": latency,
                            "run_s": now - run.started_at, "attempts": cmd.attempts}))
                    continue
                if lane_of is not None:
                    self._completed_locked(lane_of, count, slots, started, now)
                    lane_of = None
                if told:  # ahead of this run's events
                    add(partial(self._publish_completed, told))
                    told = []
                run.ended = True
                if gate is not None and ok and not run.superseded and not (cmd.durable and core.pending is not None):
                    # A caller sleeps on this completed run (LaneManager.call): its future is set and the
                    # caller woken first, so it comes up (tens of µs from an idle CPU) while this thread
                    # records the run; what else the caller reads of it, it reads under the lock, after.
                    if future.settle_and_wake(value):
                        gate = None  # woken: the completion below leaves it alone
                lane = cmd.lane
                if cmd.preemptible:
                    del lane.runs[run]
                self._ended_locked(lane, 1, run.slot, run.started_at, now)
                superseded = run.superseded
                if superseded:
                    if not (run.requeue and cmd.state is CommandState.RUNNING):
                        core.lane_changed_locked(lane)
                        continue
                    if not ok:
                        cmd.attempts -= 1  # a preempted attempt does not count against the retry policy
                        lane.add_waiting(cmd)
                        core.requeue_locked(cmd, keep_seq=True)
                        core.lane_changed_locked(lane)
                        continue
                    # Preempted to be queued again, but it finished anyway (ignoring its token): it completed.
                elif not ok:
                    self._fail_attempt_locked(cmd, value)
                    core.lane_changed_locked(lane)
                    continue
                # The command completed (inline here rather than in a method of its own: a frame less per command).
                cmd.state = CommandState.COMPLETED
                lane.completed += 1
                latency = now - cmd.submitted_at
                memory = lane.memory
                if memory is not None:  # its completed(), without the call
                    memory.latencies.record(latency)
                    memory.throughput.record(now)
                else:
                    self._report(lane, now, latency)
                if cmd.durable and core.pending is not None:
                    add(partial(core.pending.delete, cmd.id))
                    add(partial(future.settle, value))  # after the delete
                elif future.wait_gate is None:
                    # Settled with the other results of this critical section (and of any that follow before
                    # the effect runs) in one effect: one lock for all of them, no frame per future.
                    futures = self._done_futures
                    if not futures:
                        add(self._settle_done)
                    futures.append(future)
                    self._done_values.append(value)
                elif gate is not None:
                    # A caller armed a wait and was not woken above: a superseded run that completed
                    # anyway (not tried above), or someone else waits on the future too (tried above, and
                    # it would say so again). Nothing settled it before: a run whose command was
                    # cancelled or timed out is superseded and does not complete.
                    if not (superseded and future.settle_and_wake(value)):
                        # Settled by the base class's settle (CommandFuture's override would add a
                        # frame), after the lock, then the gate.
                        add(partial(settle_unarmed, future, value))
                        add(gate.release)
                if tell:
                    core.emit("queue.command.completed", lane.name, command_id=cmd.id, caller=cmd.caller,
                              tool=cmd.spec.name, latency_s=latency, run_s=now - run.started_at, attempts=cmd.attempts)
                if cmd.timers or cmd.group is not None or core.quiet_waiters:
                    core.final_locked(cmd)  # after its effects are queued (see final_locked)
                else:
                    del core.commands[cmd.id]  # final_locked's common case, without its frame
                if superseded:
                    core.lane_changed_locked(lane)
                else:
                    core.run_ended_locked(lane, now)  # pending did not change: no queue length or pressure update
            except Exception:  # the other runs of the batch still end
                log.exception("lanes: recording the end of command %s failed", run.cmd.id)
        if lane_of is not None:
            self._completed_locked(lane_of, count, slots, started, now)
        if told:
            add(partial(self._publish_completed, told))

    def _publish_completed(self, told: list[tuple[str, dict[str, Any]]]) -> None:
        """The effect that publishes plain completions' events, ``(lane, data)`` each, in order."""
        publish = self._core.events.publish_dict
        for source, data in told:
            publish("queue.command.completed", source, data)

    def _completed_locked(self, lane: Lane, count: int, slots: int, started: float, now: float) -> None:
        """``count`` plain runs of ``lane`` completed at ``now`` (see :meth:`end_runs_locked`), freeing ``slots``,
        ``started`` the sum of their start times: what the lane counts of them, once for all (their latencies
        are recorded)."""
        try:
            self._ended_locked(lane, count, slots, started, now)
            lane.completed += count
            memory = lane.memory
            if memory is not None:
                memory.throughput.record(now, count)
            core = self._core
            core.refill_locked(lane)  # the slots these runs free go to the lane's next commands, if nobody comes first
            core.run_ended_locked(lane, now)  # reports what the refill took
        except Exception:
            log.exception("lanes: recording the end of %d command(s) of lane %r failed", count, lane.name)

    def _ended_locked(self, lane: Lane, count: int, slots: int, started: float, now: float) -> None:
        """``count`` runs of ``lane`` ended at ``now``, ``started`` the sum of their start times, however
        they ended: the ``slots`` lane and worker slots they held are free (:attr:`Run.slot`), and the
        run-time average behind ETAs moves."""
        core = self._core
        lane.active -= slots
        below = lane.config.min_concurrency - lane.active
        if below > 0:  # a worker slot is kept for the lane again for each slot freed below its minimum
            core.reserved += below if below < slots else slots
        core.running -= slots
        # A hint: ``count`` updates by the runs' mean time, which is what one update per run gives when
        # they took the same time, and close when they did not.
        took = now - started / count
        prev = lane.run_ewma
        lane.run_ewma = took if prev is None else prev + (
            RUN_EWMA_ALPHA if count == 1 else 1.0 - _RUN_KEEP ** count) * (took - prev)

    def _report(self, lane: Lane, now: float, latency: float) -> None:
        """A plain completion, to a lane's recorder of another type than the in-memory one."""
        try:
            lane.recorder.completed(latency, now)
        except Exception:  # a metrics hook must not break a transition half-way
            log.exception("lanes: the metrics recorder of lane %r raised", lane.name)

    def _fail_attempt_locked(self, cmd: Command, error: BaseException) -> None:
        core = self._core
        lane = cmd.lane
        policy = cmd.retry
        if cmd.attempts < policy.max_attempts and policy.retries(error) and not core.closed:
            delay = policy.delay_before(cmd.attempts) or 0.0
            lane.retried += 1
            cmd.state = CommandState.RETRY_WAIT
            lane.add_waiting(cmd)
            cmd.enqueued_at = core.now()
            core.emit("queue.command.retry", lane.name, command_id=cmd.id, caller=cmd.caller,
                      attempt=cmd.attempts, delay_s=delay, error=repr(error))
            if delay > 0:
                cmd.add_timer(core.clock.call_later(delay, partial(self._retry_due, cmd, True)))
            else:
                # Queued again once this critical section's effects ran, not now: the retry's event
                # (queued above) then goes out before the next attempt can start and announce itself.
                core.box.add(partial(self._retry_due, cmd))
            return
        cmd.state = CommandState.FAILED
        lane.failed += 1
        lane.dead_lettered += 1
        reason = f"{cmd.spec.name} failed after {cmd.attempts} attempt(s): {error!r}"
        core.box.add(partial(self._dead_letter, cmd, reason, error))
        core.final_locked(cmd)  # after its effects are queued (see final_locked)

    def _dead_letter(self, cmd: Command, reason: str, error: BaseException) -> None:
        """Outside the lock: letter first, then events, then the caller sees the error."""
        core = self._core
        source = f"lane:{cmd.lane.name}"
        try:
            if cmd.durable and core.pending is not None:
                letter = core.pending.move_to_dead_letters(core.dead_letters, cmd, source, reason, error)
            else:
                letter = core.dead_letters.put(source, reason, attempts=cmd.attempts, error=error,
                                               work_id=cmd.id, payload=cmd.payload(with_fn=True))
            letter_id = letter.id
        except Exception:
            log.exception("could not dead-letter command %s", cmd.id)
            letter_id = ""
        if core.events.active:
            core.events.publish("queue.command.failed", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                tool=cmd.spec.name, error=repr(error), attempts=cmd.attempts)
            core.events.publish("queue.command.dead_lettered", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                letter_id=letter_id, reason=reason)
        cmd.future.settle(error=error)

    def _retry_due(self, cmd: Command, timer: bool = False) -> None:
        """Queue a command waiting for its retry again (``timer``: its retry timer fired)."""
        core = self._core
        with core.box:
            if cmd.state is CommandState.RETRY_WAIT:  # else cancelled (or the manager closed) meanwhile
                if timer:
                    cmd.timers = None  # the retry timer fired; nothing left to cancel
                core.requeue_locked(cmd)
                core.dispatch_locked()

    def on_timeout(self, run: Run) -> None:
        core = self._core
        with core.box:
            if run.ended or run.superseded:
                return
            run.superseded = True
            cmd = run.cmd
            cmd.lane.timed_out += 1
            core.box.add(partial(run.token.cancel, f"timed out after {cmd.timeout}s"))
            core.emit("queue.command.timeout", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                      timeout_s=cmd.timeout, attempt=run.attempt)
            error = CommandTimeout(
                f"command {cmd.id} ({cmd.spec.name}) in lane {cmd.lane.name!r} ran past its {cmd.timeout}s timeout"
                f" (attempt {run.attempt})"
            )
            self._fail_attempt_locked(cmd, error)
            core.lane_changed_locked(cmd.lane)
            core.dispatch_locked()
