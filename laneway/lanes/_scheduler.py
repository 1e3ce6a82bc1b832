"""The lanes' dispatcher: one lock, buckets of eligible lanes by priority, runs, retries and timeouts.

Every method ending in ``_locked`` runs under the outbox's lock and never
calls user code: it queues what must happen afterwards (settle a future,
publish an event, write the store, start a thread) on the :class:`Outbox`,
which runs it once the outermost holder leaves, whether its block returned
or raised, so a transition that fails half-way never strands a future.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from laneway.errors import CommandCancelled, CommandTimeout, ConfigError, LaneError, Preempted
from laneway.lanes._command import Command, Run
from laneway.lanes._config import PreemptAction
from laneway.lanes._executors import Executors
from laneway.lanes._lane import Lane
from laneway.lanes._records import CommandState
from laneway.core import Outbox

if TYPE_CHECKING:
    from laneway.actors import ActorSystem
    from laneway.core import CpuRunner, CpuRunnerProvider
    from laneway.lanes._persist import PendingStore

log = logging.getLogger(__name__)


class Scheduler:
    """State and transitions shared by all lanes; :class:`~laneway.lanes.LaneManager` adds the public API."""

    def __init__(self, orch: ActorSystem, max_workers: int, cpu: CpuRunnerProvider | None = None) -> None:
        self._orch = orch
        self._cpu = cpu
        self._clock = orch.clock
        self._events = orch.events
        self._box = Outbox("lanes")
        self._lock = self._box.lock  # waits (room, drained, idle workers) use it without the outbox
        self._space = threading.Condition(self._lock)  # a full lane got room
        self._quiet = threading.Condition(self._lock)  # no command left
        self._space_waiters = 0
        self._lanes: dict[str, Lane] = {}
        self._buckets: dict[int, dict[Lane, None]] = {}  # eligible lanes by priority, round-robin order
        self._prios: list[int] = []
        self._commands: dict[str, Command] = {}  # every command not yet completed, failed or cancelled
        self._running = 0
        self._reserved = 0  # worker slots kept free for lanes below their min_concurrency
        self._max_workers = max_workers
        self._seq = itertools.count(1)
        self._accepting = True
        self._closed = False
        self._pending: PendingStore | None = None
        self._cpu_runner: CpuRunner | None = None
        self._exec = Executors(self._box, end_run_locked=self._end_run_locked, dispatch_locked=self._dispatch_locked,
                               finish=self._finish, launch_failed=self._launch_failed, announce=self._announce_run,
                               pool=self._cpu_pool)

    # helpers -------------------------------------------------------------------

    def _emit(self, key: str, source: str, **data: Any) -> None:
        if self._events.active:
            # The dict handed over as is: a keyword partial would copy it twice more.
            self._box.add(partial(self._events.publish_dict, key, source, data))

    def _touch(self, lane: Lane) -> None:
        """Put the lane in (or take it out of) its priority bucket after any change."""
        prio = lane.config.priority
        bucket = self._buckets.get(prio)
        if lane.eligible():
            if bucket is None:
                bucket = self._buckets[prio] = {}
                bisect.insort(self._prios, prio)
            if lane not in bucket:
                bucket[lane] = None
        elif bucket is not None and lane in bucket:
            del bucket[lane]

    def _lane_changed_locked(self, lane: Lane) -> None:
        """Eligibility, pressure and idle transitions after pending or active changed."""
        self._touch(lane)
        try:
            lane.recorder.queue_length(lane.pending)
        except Exception:  # a metrics hook must not break a transition half-way
            log.exception("lanes: the metrics recorder of lane %r raised", lane.name)
        threshold = lane.config.pressure_threshold
        if threshold is not None:
            if lane.pending >= threshold and not lane.pressure:
                lane.pressure = lane.relief_due = True
                self._emit("queue.lane.pressure", lane.name, pending=lane.pending, threshold=threshold)
            elif lane.pending < threshold:
                lane.pressure = False
        if lane.busy and lane.pending == 0 and lane.active == 0:
            lane.busy = False
            lane.idle_since = self._clock.now()
            if lane.relief_due:  # idle answers a pressure event; without one nobody is waiting for it
                lane.relief_due = False
                self._emit("queue.lane.idle", lane.name)
            self._lane_idle_locked(lane)
        if self._space_waiters and lane.pending < lane.config.max_pending:
            self._space.notify_all()

    def _lane_idle_locked(self, lane: Lane) -> None:
        """Hook for session lanes (clean-up timers); plain lanes do nothing."""

    def _announce_run(self, run: Run) -> None:
        """A run is about to execute (called by the executors, without the lock)."""
        cmd = run.cmd
        if cmd.durable and self._pending is not None:
            self._pending.record_attempt(cmd)  # the attempt count survives a crash mid-run
        if self._events.active:
            self._events.publish("queue.command.started", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                 tool=cmd.spec.name, attempt=run.attempt, wait_s=run.started_at - cmd.enqueued_at)

    def _cpu_pool(self) -> CpuRunner:
        """The runner for cpu_bound tools (the process pool), started on first use (the executors ask for it)."""
        runner = self._cpu_runner
        if runner is not None:
            return runner
        if self._cpu is None:
            raise ConfigError("this lane manager was given no process pool (cpu=...), so it cannot run "
                              "cpu_bound tools; use orch.lanes, or pass cpu=lambda: pool")
        runner = self._cpu()
        with self._lock:
            hook = self._cpu_runner is None
            self._cpu_runner = runner
        if hook:
            # Shutdown hooks run in reverse order: a pool started after the lanes would stop
            # first and fail their queued cpu-bound commands; drain the lanes before it.
            self._orch.on_shutdown("lanes before pool", self.close)  # type: ignore[attr-defined]
        return runner

    # dispatch ------------------------------------------------------------------

    def _dispatch_locked(self) -> None:
        """Start commands while workers are free: always from the best eligible lane."""
        if self._closed:
            return
        while self._running < self._max_workers:
            lane = self._pick_lane_locked()
            if lane is None:
                return
            cmd = lane.take()
            if cmd is not None:
                self._start_locked(cmd)
            self._touch(lane)

    def _pick_lane_locked(self) -> Lane | None:
        spare = self._max_workers - self._running - 1
        for prio in self._prios:
            bucket = self._buckets[prio]
            for lane in bucket:
                if spare < self._reserved and lane.active >= lane.config.min_concurrency:
                    continue  # the last free workers are kept for lanes below their minimum
                if lane.limiter is not None:
                    wait = lane.limiter.wait_s(self._clock.now())
                    if wait > 0:
                        self._hold_for_rate_locked(lane, wait)
                        return self._pick_lane_locked()
                del bucket[lane]
                bucket[lane] = None  # equal priorities take turns
                return lane
        return None

    def _hold_for_rate_locked(self, lane: Lane, wait: float) -> None:
        lane.rate_timer = self._clock.call_later(wait, partial(self._rate_release, lane))
        self._touch(lane)

    def _rate_release(self, lane: Lane) -> None:
        with self._box.locked():
            lane.rate_timer = None
            self._touch(lane)
            self._dispatch_locked()

    def _start_locked(self, cmd: Command) -> None:
        lane = cmd.lane
        lane.remove_waiting(cmd)
        if cmd.timers:
            cmd.cancel_timers()  # deadline boosts are moot once it runs
        cmd.state = CommandState.RUNNING
        cmd.attempts += 1
        now = self._clock.now()
        run = cmd.run = Run(cmd, cmd.attempts, now)
        lane.active += 1
        if lane.active <= lane.config.min_concurrency:
            self._reserved -= 1
        lane.runs[run] = None
        if cmd.preemptible:
            lane.preemptible_runs += 1
        self._running += 1
        if lane.limiter is not None:
            lane.limiter.record(now)
        if cmd.timeout is not None:
            cmd.add_timer(self._clock.call_later(cmd.timeout, partial(self._on_timeout, run)))
        if self._space_waiters:
            self._space.notify_all()
        try:
            self._exec.launch_locked(run)
        except Exception as exc:
            self._launch_failed_locked(run, exc)

    def _launch_failed_locked(self, run: Run, exc: BaseException) -> None:
        """No executor took the run: free the slots it holds and fail the attempt (the lane goes on)."""
        log.error("lanes: could not launch command %s: %r", run.cmd.id, exc)
        error = LaneError(f"command {run.cmd.id} ({run.cmd.spec.name}) could not be launched: {exc!r}")
        error.__cause__ = exc
        self._end_run_locked(run, False, error)

    def _launch_failed(self, run: Run, exc: BaseException) -> None:
        """An executor found after the lock was released that it cannot run ``run``."""
        with self._box.locked():
            if not run.ended:
                self._launch_failed_locked(run, exc)
                self._dispatch_locked()

    # the end of a run ----------------------------------------------------------

    def _finish(self, run: Run, ok: bool, value: Any) -> None:
        """A run returned or raised (called from the loop thread, a pool callback or a worker)."""
        with self._box.locked():
            self._end_run_locked(run, ok, value)
            self._dispatch_locked()

    def _end_run_locked(self, run: Run, ok: bool, value: Any) -> None:
        run.ended = True
        cmd = run.cmd
        lane = cmd.lane
        now = self._clock.now()
        lane.active -= 1
        if lane.active < lane.config.min_concurrency:
            self._reserved += 1
        del lane.runs[run]
        if cmd.preemptible:
            lane.preemptible_runs -= 1
        self._running -= 1
        lane.note_run_time(now - run.started_at)
        if run.superseded:
            if run.requeue and cmd.state is CommandState.RUNNING:
                if ok:  # it finished anyway (ignoring its token): no reason to run it again
                    self._complete_locked(cmd, run, value, now)
                else:
                    cmd.attempts -= 1  # a preempted attempt does not count against the retry policy
                    lane.add_waiting(cmd)
                    self._requeue_locked(cmd, keep_seq=True)
        elif ok:
            self._complete_locked(cmd, run, value, now)
        else:
            self._fail_attempt_locked(cmd, value)
        self._lane_changed_locked(lane)

    def _final_locked(self, cmd: Command) -> None:
        """The command reached a final state: forget it, release its group, wake drainers."""
        if cmd.timers:
            cmd.cancel_timers()
        del self._commands[cmd.id]
        group = cmd.group
        if group is not None:
            group.outstanding -= 1
            if group.outstanding == 0 and cmd.lane.group is group:
                cmd.lane.group = None
        if not self._commands:
            self._quiet.notify_all()

    def _complete_locked(self, cmd: Command, run: Run, value: Any, now: float) -> None:
        cmd.state = CommandState.COMPLETED
        lane = cmd.lane
        lane.completed += 1
        latency = now - cmd.submitted_at
        try:
            lane.recorder.completed(latency, now)
        except Exception:
            log.exception("lanes: the metrics recorder of lane %r raised", lane.name)
        self._final_locked(cmd)
        if cmd.durable and self._pending is not None:
            self._box.add(partial(self._pending.delete, cmd.id))
        self._box.add(partial(cmd.future.settle, value))
        self._emit("queue.command.completed", lane.name, command_id=cmd.id, caller=cmd.caller,
                   tool=cmd.spec.name, latency_s=latency, run_s=now - run.started_at, attempts=cmd.attempts)

    def _fail_attempt_locked(self, cmd: Command, error: BaseException) -> None:
        lane = cmd.lane
        policy = cmd.retry
        if cmd.attempts < policy.max_attempts and policy.retries(error) and not self._closed:
            delay = policy.delay_before(cmd.attempts) or 0.0
            lane.retried += 1
            cmd.state = CommandState.RETRY_WAIT
            lane.add_waiting(cmd)
            cmd.enqueued_at = self._clock.now()
            self._emit("queue.command.retry", lane.name, command_id=cmd.id, caller=cmd.caller,
                       attempt=cmd.attempts, delay_s=delay, error=repr(error))
            if delay > 0:
                cmd.add_timer(self._clock.call_later(delay, partial(self._retry_due, cmd)))
            else:
                self._requeue_locked(cmd)
            return
        cmd.state = CommandState.FAILED
        lane.failed += 1
        lane.dead_lettered += 1
        self._final_locked(cmd)
        reason = f"{cmd.spec.name} failed after {cmd.attempts} attempt(s): {error!r}"
        self._box.add(partial(self._dead_letter, cmd, reason, error))

    def _dead_letter(self, cmd: Command, reason: str, error: BaseException) -> None:
        """Outside the lock: letter first, then events, then the caller sees the error."""
        source = f"lane:{cmd.lane.name}"
        try:
            if cmd.durable and self._pending is not None:
                letter = self._pending.move_to_dead_letters(self._orch.dead_letters, cmd, source, reason, error)
            else:
                letter = self._orch.dead_letters.put(source, reason, attempts=cmd.attempts, error=error,
                                                     work_id=cmd.id, payload=cmd.payload(with_fn=True))
            letter_id = letter.id
        except Exception:
            log.exception("could not dead-letter command %s", cmd.id)
            letter_id = ""
        if self._events.active:
            self._events.publish("queue.command.failed", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                 tool=cmd.spec.name, error=repr(error), attempts=cmd.attempts)
            self._events.publish("queue.command.dead_lettered", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                                 letter_id=letter_id, reason=reason)
        cmd.future.settle(error=error)

    def _retry_due(self, cmd: Command) -> None:
        with self._box.locked():
            if cmd.state is CommandState.RETRY_WAIT:
                cmd.timers = None  # the retry timer fired; nothing left to cancel
                self._requeue_locked(cmd)
                self._dispatch_locked()

    def _requeue_locked(self, cmd: Command, keep_seq: bool = False) -> None:
        """Queue a waiting command again (retry or preempted); it is already counted as pending."""
        lane = cmd.lane
        cmd.state = CommandState.QUEUED
        group = cmd.group
        if group is not None and lane.group is group:
            group.pending.append(cmd)
        else:
            if not keep_seq:
                cmd.seq = next(self._seq)
            cmd.queued = True
            lane.queue.push(cmd)
        self._touch(lane)

    def _on_timeout(self, run: Run) -> None:
        with self._box.locked():
            if run.ended or run.superseded:
                return
            run.superseded = True
            cmd = run.cmd
            cmd.lane.timed_out += 1
            self._box.add(partial(run.token.cancel, f"timed out after {cmd.timeout}s"))
            self._emit("queue.command.timeout", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                       timeout_s=cmd.timeout, attempt=run.attempt)
            error = CommandTimeout(
                f"command {cmd.id} ({cmd.spec.name}) in lane {cmd.lane.name!r} ran past its {cmd.timeout}s timeout"
                f" (attempt {run.attempt})"
            )
            self._fail_attempt_locked(cmd, error)
            self._lane_changed_locked(cmd.lane)
            self._dispatch_locked()

    # cancel and preempt ----------------------------------------------------------

    def _unqueue_locked(self, cmd: Command) -> None:
        """Take a QUEUED command out of whichever structure holds it."""
        lane = cmd.lane
        if cmd.queued:
            lane.queue.discard(cmd)
            cmd.queued = False
        elif cmd in lane.preemptors:
            lane.preemptors.remove(cmd)
        elif cmd.group is not None and cmd in cmd.group.pending:
            cmd.group.pending.remove(cmd)
        lane.remove_waiting(cmd)

    def _cancel_locked(self, cmd: Command, reason: str) -> None:
        lane = cmd.lane
        state = cmd.state
        if state is CommandState.QUEUED:
            self._unqueue_locked(cmd)
        elif state is CommandState.RETRY_WAIT:
            lane.remove_waiting(cmd)
        elif state is CommandState.RUNNING and cmd.run is not None and not cmd.run.superseded:
            cmd.run.superseded = True
            self._box.add(partial(cmd.run.token.cancel, reason))
        cmd.state = CommandState.CANCELLED
        lane.cancelled += 1
        self._final_locked(cmd)
        if cmd.durable and self._pending is not None:
            self._box.add(partial(self._pending.delete, cmd.id))
        self._box.add(partial(cmd.future.settle, error=CommandCancelled(f"command {cmd.id} cancelled: {reason}")))
        self._emit("queue.command.cancelled", lane.name, command_id=cmd.id, caller=cmd.caller, reason=reason)
        self._lane_changed_locked(lane)

    def _preempt_locked(self, cmd: Command) -> bool:
        """If ``cmd`` arrives at a full lane, preempt the lowest-priority preemptible run; True if it did."""
        lane = cmd.lane
        action = lane.config.preempt
        if action is PreemptAction.NEVER or lane.active < lane.cap or lane.group is not None:
            return False
        now = self._clock.now()
        victim: Run | None = None
        for run in lane.runs:
            c = run.cmd
            if run.superseded or not c.preemptible or c.level <= cmd.level:
                continue
            if now - run.started_at < lane.config.preempt_min_runtime_s:
                continue
            if victim is None or (c.level, run.started_at) > (victim.cmd.level, victim.started_at):
                victim = run
        if victim is None:
            return False
        victim.superseded = True
        lane.preempted += 1
        vc = victim.cmd
        reason = f"preempted by command {cmd.id} (priority {cmd.level} over {vc.level})"
        self._box.add(partial(victim.token.cancel, reason, preempted=True))
        self._emit("queue.command.preempted", lane.name, command_id=vc.id, caller=vc.caller,
                   by=cmd.id, action=action.value)
        if action is PreemptAction.REQUEUE:
            victim.requeue = True
        else:
            vc.state = CommandState.CANCELLED
            self._final_locked(vc)
            if vc.durable and self._pending is not None:
                self._box.add(partial(self._pending.delete, vc.id))
            self._box.add(partial(vc.future.settle, error=Preempted(f"command {vc.id} {reason}")))
        lane.preemptors.append(cmd)
        return True
