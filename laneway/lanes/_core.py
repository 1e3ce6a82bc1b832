"""The lanes' core: one outbox (the lock), the queues of every lane, and the transitions between them.

Every method ending in ``_locked`` runs inside :attr:`LaneCore.box` and never
calls user code: it queues what must happen afterwards (settle a future,
publish an event, write the store, start a thread) on the :class:`Outbox`,
which runs it once the outermost holder leaves, whether its block returned
or raised, so a transition that fails half-way never strands a future.
Waiting (for room, for a drain, for work) uses the bare ``box.lock``: a
wait inside the outbox would hold back every other thread's effects.

The end of runs lives in :class:`~laneway.lanes._outcomes.Outcomes`, the
executors in :class:`~laneway.lanes._executors.Executors`; both work
through the core's public attributes and methods and the callbacks they
are given.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable

from laneway.core import MonotonicClock, Outbox
from laneway.errors import (
    CommandCancelled,
    ConfigError,
    LaneBusy,
    LaneFull,
    LaneShutdown,
    Preempted,
)
from laneway.lanes._command import Command, Run
from laneway.lanes._config import SESSION_PREFIX, LaneConfig, PreemptAction, Priority
from laneway.lanes._executors import Executors
from laneway.lanes._lane import Lane
from laneway.lanes._outcomes import Outcomes
from laneway.lanes._records import CommandState

if TYPE_CHECKING:
    from laneway.core import Clock, CpuRunner, DeadLetterQueue, EventBus
    from laneway.lanes._tools import ToolSpec
    from laneway.lanes._metrics import LaneRecorder
    from laneway.lanes._persist import PendingStore

log = logging.getLogger(__name__)


def _no_hook(lane: Lane) -> None:
    pass


class LaneCore:
    """State and transitions shared by all lanes, guarded by :attr:`box`.

    Args:
        clock, events, dead_letters: the actor system's.
        max_workers: runs in progress at once, across all lanes.
        pending: where durable commands persist (None: nowhere).
        cpu_pool: returns the runner for ``cpu_bound`` tools (the executors ask on first use).

    Attributes (read and written only inside ``box``):
        lanes: every lane by name, session lanes too.
        commands: every command not yet completed, failed or cancelled.
        running, reserved: runs in progress; worker slots kept for lanes below their minimum.
        accepting, closed: False after shutdown; True once closed.
        space_waiters, quiet_waiters: threads waiting on ``space`` (room in a lane) and ``quiet`` (a drain).
        lane_idle_locked: called when a session lane runs empty (it cleans up on it).
    """

    def __init__(self, *, clock: Clock, events: EventBus, dead_letters: DeadLetterQueue, max_workers: int,
                 pending: PendingStore | None, cpu_pool: Callable[[], CpuRunner]) -> None:
        self.box = Outbox("lanes")
        self.lock = self.box.lock
        self.clock = clock
        # The clock's reading without a Python frame when it is the real monotonic clock (hot path).
        self.now: Callable[[], float] = time.monotonic if type(clock) is MonotonicClock else clock.now
        self.events = events
        self.pending = pending
        self.dead_letters = dead_letters
        self.space = threading.Condition(self.lock)  # a full lane got room
        self.quiet = threading.Condition(self.lock)  # no command left
        self.space_waiters = 0
        self.quiet_waiters = 0  # threads in drain: only then does the last command's end notify
        self.lanes: dict[str, Lane] = {}
        self.commands: dict[str, Command] = {}
        self.running = 0
        self.reserved = 0
        self.max_workers = max_workers
        self.accepting = True
        self.closed = False
        self.lane_idle_locked: Callable[[Lane], None] = _no_hook
        self._buckets: dict[int, dict[Lane, None]] = {}  # eligible lanes by priority, round-robin order
        self._eligible = 0  # lanes in the buckets: none, and dispatch has nothing to look at
        self._prios: list[int] = []
        self._order: list[dict[Lane, None]] = []  # the buckets in priority order (best first)
        self._seq = itertools.count(1)
        self.outcomes = Outcomes(self)
        self.executors = Executors(self.box, end_runs_locked=self.outcomes.end_runs_locked,
                                   dispatch_locked=self.dispatch_locked, finish=self.outcomes.finish,
                                   launch_failed=self.outcomes.launch_failed, announce=self.outcomes.announce_run,
                                   unstart_locked=self.unstart_locked,
                                   pool=cpu_pool, announcing=partial(events.wants, "queue.command.started"))

    def emit(self, key: str, source: str, **data: Any) -> None:
        """Publish an event once the lock is released (only when someone listens)."""
        if self.events.active and self.events.wants(key):
            # The dict handed over as is: a keyword partial would copy it twice more.
            self.box.add(partial(self.events.publish_dict, key, source, data))

    # lanes ------------------------------------------------------------------------------

    def add_lane_locked(self, config: LaneConfig, recorder: Callable[[], LaneRecorder]) -> None:
        """Add a named lane (``recorder`` makes its metrics recorder once the config is accepted)."""
        if not isinstance(config, LaneConfig):
            raise ConfigError(f"lanes must be LaneConfig records, got {config!r}")
        if config.name.startswith(SESSION_PREFIX):
            raise ConfigError(f"lane names starting with {SESSION_PREFIX!r} are reserved for session lanes")
        if config.name in self.lanes:
            raise ConfigError(f"a lane named {config.name!r} already exists")
        reserved = sum(lane.config.min_concurrency for lane in self.lanes.values()) + config.min_concurrency
        if reserved > self.max_workers:
            raise ConfigError(f"lanes reserve {reserved} workers in total (min_concurrency) but max_workers is {self.max_workers}")
        self.lanes[config.name] = Lane(config, self.clock.now(), recorder())
        self.reserved += config.min_concurrency

    def remove_lane_locked(self, lane: Lane) -> None:
        del self.lanes[lane.name]
        self.reserved -= max(0, lane.config.min_concurrency - lane.active)
        self.touch(lane)

    def touch(self, lane: Lane) -> None:
        """Put the lane in (or take it out of) its priority bucket after any change."""
        # Lane.eligible's expression inline: touch runs several times per command.
        group = lane.group
        if group is None:
            eligible = (lane.active < lane.config.max_concurrency and (lane.queue.size > 0 or bool(lane.preemptors))
                        and not lane.paused and lane.rate_timer is None)
        else:
            eligible = lane.eligible()
        if eligible == lane.in_turn:
            return  # in_turn says whether it is in its bucket (only this method changes both): no change
        lane.in_turn = eligible
        prio = lane.config.priority  # never changes while the lane exists: its bucket is where in_turn put it
        if eligible:
            bucket = self._buckets.get(prio)
            if bucket is None:
                bucket = self._buckets[prio] = {}
                bisect.insort(self._prios, prio)
                self._order = [self._buckets[p] for p in self._prios]
            bucket[lane] = None
            self._eligible += 1
        else:
            del self._buckets[prio][lane]
            self._eligible -= 1

    def run_ended_locked(self, lane: Lane, now: float) -> None:
        """What :meth:`lane_changed_locked` does after only ``active`` went down (pending, so the
        queue length and the pressure, did not change since reported): the end of runs that completed
        (one or several: it looks at the lane as it is), recorded at clock time ``now``."""
        if lane.pending != lane.reported_pending:  # dispatch took commands since: report that
            self.lane_changed_locked(lane)
            return
        if not lane.in_turn and (lane.queue.size or lane.preemptors or lane.group is not None):
            # Else no change: a free slot keeps an eligible lane eligible, and a lane with
            # nothing queued stays out of turn.
            self.touch(lane)
        if lane.busy and lane.pending == 0 and lane.active == 0:
            if lane.relief_due or lane.session_id is not None or self.space_waiters:
                self._went_idle_locked(lane)
            else:  # _went_idle_locked's common case, without its frame (a lane of sequential calls)
                lane.busy = False
                lane.idle_since = now  # the reading the runs' ends were recorded with: no clock call
        elif self.space_waiters and lane.pending < lane.config.max_pending:
            self.space.notify_all()

    def _went_idle_locked(self, lane: Lane) -> None:
        lane.busy = False
        lane.idle_since = self.now()
        if lane.relief_due:  # idle answers a pressure event; without one nobody is waiting for it
            lane.relief_due = False
            self.emit("queue.lane.idle", lane.name)
        if lane.session_id is not None:
            self.lane_idle_locked(lane)
        if self.space_waiters and lane.pending < lane.config.max_pending:
            self.space.notify_all()

    def lane_changed_locked(self, lane: Lane) -> None:
        """Eligibility, pressure and idle transitions after pending or active changed."""
        self.touch(lane)
        self._pending_changed_locked(lane)
        if lane.busy and lane.pending == 0 and lane.active == 0:
            self._went_idle_locked(lane)
        elif self.space_waiters and lane.pending < lane.config.max_pending:
            self.space.notify_all()

    def _pending_changed_locked(self, lane: Lane) -> None:
        """Report the lane's pending count (metrics, peak) and check its pressure."""
        pending = lane.reported_pending = lane.pending
        memory = lane.memory
        if memory is None:
            self._report_length_locked(lane)
        elif pending > memory.peak:
            memory.peak = pending  # its queue_length, without the call
        if lane.config.pressure_threshold is not None:
            self._check_pressure_locked(lane)

    def _report_length_locked(self, lane: Lane) -> None:
        try:
            lane.recorder.queue_length(lane.pending)
        except Exception:  # a metrics hook must not break a transition half-way
            log.exception("lanes: the metrics recorder of lane %r raised", lane.name)

    def _check_pressure_locked(self, lane: Lane) -> None:
        threshold = lane.config.pressure_threshold
        assert threshold is not None
        if lane.pending >= threshold and not lane.pressure:
            lane.pressure = lane.relief_due = True
            self.emit("queue.lane.pressure", lane.name, pending=lane.pending, threshold=threshold)
        elif lane.pending < threshold:
            lane.pressure = False

    # submitting -----------------------------------------------------------------------------

    def check_accepting_locked(self) -> None:
        if not self.accepting:
            raise LaneShutdown("the lane manager is shutting down and takes no new commands")

    def wait_for_room(self, lane: Lane, deadline: float, block: float) -> None:
        """Wait (bare lock: nothing is queued) until ``lane`` has room; LaneFull at ``deadline``."""
        limit = lane.config.max_pending
        with self.lock:
            self.space_waiters += 1
            try:
                while lane.pending >= lane.config.max_pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise LaneFull(f"lane {lane.name!r} stayed full ({limit} pending) for {block}s")
                    self.space.wait(left)
                    self.check_accepting_locked()
            finally:
                self.space_waiters -= 1

    def enqueue_locked(self, cmd: Command, max_wait: float | None) -> tuple[int, float | None]:
        """Queue ``cmd`` in its lane (or let it preempt a run); returns its position and ETA."""
        lane = cmd.lane
        if cmd.id in self.commands:
            raise ConfigError(f"command id {cmd.id!r} is already in use")
        eta: float | None
        if lane.runs and lane.active >= lane.cap and self._preempt_locked(cmd):
            position, eta = 0, 0.0
        elif not lane.queue.size and self._starts_now_locked(lane, cmd.spec):  # a queued lane: its frame spared
            # What dispatch would do next (this lane is the best one with a free slot), without the
            # queue's push and pop: the common case of a lane that keeps up with its callers. The
            # command is never pending (so no queue length or pressure change): the lane turns busy,
            # and it had nothing queued, so it stays out of the priority buckets.
            cmd.seq = next(self._seq)
            cmd.queued = False
            lane.busy = True
            lane.idle_since = None
            self.commands[cmd.id] = cmd
            self._start_all_locked(lane, (cmd,))
            return 0, 0.0
        else:
            ahead = len(lane.preemptors)
            if lane.group is not None:
                ahead += len(lane.group.pending)
            if max_wait is not None:  # refused before it is queued
                position = (lane.queue.estimate(cmd.caller, cmd.level) if lane.queue.size else 0) + ahead
                eta = lane.eta(position)
                if eta is not None and eta > max_wait:
                    raise LaneBusy(f"lane {lane.name!r}: estimated wait {eta:.3f}s ({position} ahead) exceeds max_wait {max_wait}s")
            cmd.seq = next(self._seq)
            cmd.queued = True
            position = lane.queue.push(cmd) + ahead  # push's own estimate: one call less than asking first
            # Lane.eta, inline (one frame less per queued command).
            cap = lane.config.max_concurrency if lane.group is None else lane.group.max_concurrent
            behind = position + 1 - (cap - lane.active)
            ewma = lane.run_ewma
            eta = 0.0 if behind <= 0 else None if ewma is None else behind * ewma / cap
        # Lane.add_waiting, inline (one frame less per queued command).
        lane.pending += 1
        lane.busy = True
        lane.idle_since = None
        self.commands[cmd.id] = cmd
        if cmd.deadline_s is not None:
            for fraction in lane.config.deadline_boosts:
                cmd.add_timer(self.clock.call_later(cmd.deadline_s * (1 - fraction), partial(self._boost, cmd)))
        # lane_changed_locked's part for a command that joined: the lane is busy, and no lane got room.
        if not lane.in_turn and (lane.active < lane.config.max_concurrency or lane.group is not None):
            # Else no change: more work keeps an eligible lane eligible, and a lane whose slots
            # are all taken stays out of turn.
            self.touch(lane)
        memory = lane.memory
        if memory is not None and lane.config.pressure_threshold is None:
            # _pending_changed_locked's common case (the default metrics, no pressure threshold), inline:
            # one frame less per queued command.
            pending = lane.reported_pending = lane.pending
            if pending > memory.peak:
                memory.peak = pending
        else:
            self._pending_changed_locked(lane)
        return position, eta

    def _starts_now_locked(self, lane: Lane, spec: ToolSpec) -> bool:
        """Would dispatch start a command of tool ``spec`` arriving at ``lane`` at once (nothing queued ahead of
        it anywhere, and a thread for it if it needs one)?"""
        if (lane.queue.size or lane.preemptors or lane.group is not None or lane.paused or lane.limiter is not None
                or lane.rate_timer is not None or self.closed or lane.active >= lane.config.max_concurrency
                or self.running >= self.max_workers or self.executors.fast_room_locked(spec) == 0):
            return False
        if self.max_workers - self.running - 1 < self.reserved and lane.active >= lane.config.min_concurrency:
            return False  # the last free workers are kept for lanes below their minimum
        if self._eligible:
            prio = lane.config.priority
            for p in self._prios:
                if p > prio:
                    break
                if self._buckets[p]:
                    return False  # another lane's work waits at an equal or better priority
        return True

    def push_batch_locked(self, placeholder: Command) -> None:
        """Queue the placeholder that stands for a parallel group (its members are already waiting)."""
        placeholder.seq = next(self._seq)
        placeholder.lane.queue.push(placeholder)
        self.lane_changed_locked(placeholder.lane)

    def _boost(self, cmd: Command) -> None:
        with self.box:
            if cmd.state is not CommandState.QUEUED or not cmd.queued or cmd.level == 0:
                return
            cmd.lane.queue.promote(cmd, cmd.level - 1)
            self.emit("queue.command.boosted", cmd.lane.name, command_id=cmd.id, caller=cmd.caller,
                      priority=Priority(cmd.level).name.lower())

    def requeue_locked(self, cmd: Command, keep_seq: bool = False) -> None:
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
        self.touch(lane)

    # dispatch --------------------------------------------------------------------------------

    def dispatch_locked(self) -> None:
        """Start commands while workers are free: always from the best eligible lane."""
        if self.closed:
            return
        max_workers = self.max_workers
        while self._eligible and self.running < max_workers:
            lane = self._pick_lane_locked()
            if lane is None:
                return
            if lane.preemptors or lane.group is not None:
                cmd = lane.take()
                if cmd is not None:
                    lane.pending -= 1
                    self._start_all_locked(cmd.lane, (cmd,))
                self.touch(lane)
                continue
            # A lane alone at its priority keeps the turn while it has work, a free slot and a free
            # worker: _pick_lane_locked would pick it again (only this lane changes here), so it is
            # not asked, and the lane's bucket is updated once, when it stops. Equal priorities (and a
            # rate-limited lane, which the pick checks) take one command per turn.
            alone = lane.limiter is None and len(self._buckets[lane.config.priority]) == 1
            held = self.fill_lane_locked(lane, lane.queue.size if alone else 1)
            self.touch(lane)
            if held:
                # Its next commands wait for the thread that is back soon (see fill_lane_locked), which
                # dispatches again then; so does what comes after them, as dispatch goes best first.
                return

    def fill_lane_locked(self, lane: Lane, most: int) -> bool:
        """Start up to ``most`` of ``lane``'s queued commands, best first, while it has a free slot and a
        worker is free (the last free workers kept for lanes below their minimum); the caller knows that
        no other lane comes first. The lane's bucket is left to the caller to update.

        Fast sync runs start only as a worker thread takes them (:meth:`Executors.fast_room_locked`): while
        a thread runs a batch of them, those that would only wait for it wait in their lane's queue, not
        started (True is returned then). They hold no slot meanwhile, which another lane's work or a
        command that arrives may take, and the thread takes the best of them when it is back.
        """
        if lane.group is not None or lane.preemptors:
            return False  # dispatch takes those one at a time
        config = lane.config
        workers = self.max_workers - self.running
        below = config.min_concurrency - lane.active  # starts that may use a worker kept for this lane
        spare = workers - self.reserved  # workers nobody keeps
        count = min(most, config.max_concurrency - lane.active, workers,
                    (below if below > 0 else 0) + (spare if spare > 0 else 0))
        if count <= 0:
            return False
        room = self.executors.fast_room_locked(lane.queue.head_spec())
        if room is not None and room < count:
            if room <= 0:
                return True
            count = room
        cmds = lane.queue.pop_many(count)  # one call for them all, not one per command
        if cmds and cmds[-1].batch is not None:
            # A parallel group's placeholder: its first member starts, and the lane is the group's now.
            member = lane.open_group(cmds.pop())
            if member is not None:
                cmds.append(member)
        lane.pending -= len(cmds)
        self._start_all_locked(lane, cmds)
        if most > count and lane.limiter is None and lane.group is None and cmds:
            self._chain_locked(lane, cmds[-1], most - count)
        return False

    def _chain_locked(self, lane: Lane, last: Command, most: int) -> None:
        """Start up to ``most`` more of ``lane``'s queued commands of ``last``'s tool on ``last``'s slot, in
        the batch of the worker thread that dispatches, if ``last``'s run went into it.

        That thread runs its batch one run after another, so a lane's runs in it use one slot
        between them, not one each: a chain holds the slot of the run it follows until its own
        last run ends (:attr:`Run.slot`). The runs are started, as every run in a batch is before it
        executes, but take no slot or worker of their own. Without chains, the batches of a lane
        with few slots (2, say) hold a couple of runs each, and each batch costs its critical
        section; with them, a burst's batches stay full. Only fast sync runs go into a batch, and
        a batch holds few (the executors decide both); if the thread blocks in one of them, the
        runs it holds behind it are queued again (:meth:`unstart_locked`).
        """
        run = last.run
        assert run is not None
        room = self.executors.chain_room_locked(run)
        if room <= 0 or last.preemptible:
            return
        chain = lane.queue.pop_chain(min(most, room), last.spec)
        if not chain:
            return
        lane.pending -= len(chain)
        runs: list[Run] = []
        self._start_all_locked(lane, chain, runs)
        run.slot = 0
        runs[-1].slot = 1  # the slot passes to the chain's last run
        self.executors.chain_locked(runs)

    def unstart_locked(self, run: Run) -> None:
        """``run``, which holds no slot (:attr:`Run.slot`), was handed back before it executed: its command
        waits in its lane's queue again, as before it started, unless it ended meanwhile (cancelled, or
        timed out)."""
        run.ended = True
        if run.superseded:
            return  # its command moved on without this run
        run.superseded = True  # a timeout timer set for it does nothing now
        cmd = run.cmd
        lane = cmd.lane
        cmd.run = None
        cmd.attempts -= 1
        lane.pending += 1
        self.requeue_locked(cmd, keep_seq=True)
        self.lane_changed_locked(lane)

    def refill_locked(self, lane: Lane) -> None:
        """Runs of ``lane`` ended (their slots are free): start its next commands at once when no
        other lane waits for a slot or a worker, which is what :meth:`dispatch_locked` would do then
        (no lane with work has room but this one), without the lane's turn through the priority buckets.

        A burst keeps every lane at its cap, so each end hands its slot straight to the lane's next
        command: the lane stays out of the buckets, instead of entering them and leaving them again.
        """
        if (not self._eligible and not self.closed and lane.limiter is None and not lane.paused
                and lane.queue.size):
            self.fill_lane_locked(lane, lane.queue.size)

    def _pick_lane_locked(self) -> Lane | None:
        spare = self.max_workers - self.running - 1
        for bucket in self._order:
            for lane in bucket:
                if spare < self.reserved and lane.active >= lane.config.min_concurrency:
                    continue  # the last free workers are kept for lanes below their minimum
                if lane.limiter is not None:
                    wait = lane.limiter.wait_s(self.now())
                    if wait > 0:
                        lane.rate_timer = self.clock.call_later(wait, partial(self._rate_release, lane))
                        self.touch(lane)
                        return self._pick_lane_locked()
                del bucket[lane]
                bucket[lane] = None  # equal priorities take turns
                return lane
        return None

    def _rate_release(self, lane: Lane) -> None:
        with self.box:
            lane.rate_timer = None
            self.touch(lane)
            self.dispatch_locked()

    def _start_all_locked(self, lane: Lane, cmds: Iterable[Command], chain: list[Run] | None = None) -> None:
        """Start a run of each of ``cmds``, in order, all of ``lane`` (the caller took them out of its
        pending commands, if they were there); with ``chain``, as a chain's runs (see :meth:`_chain_locked`):
        appended to it, holding no slot or worker, and not launched."""
        now = self.now()  # one reading: they start within microseconds of each other
        min_concurrency = lane.config.min_concurrency
        limiter = lane.limiter
        launch = self.executors.launch_locked
        for cmd in cmds:
            if cmd.timers:
                cmd.cancel_timers()  # deadline boosts are moot once it runs
            cmd.state = CommandState.RUNNING
            attempts = cmd.attempts = cmd.attempts + 1
            run = cmd.run = Run(cmd, attempts, now)
            if cmd.timeout is not None:
                cmd.add_timer(self.clock.call_later(cmd.timeout, partial(self.outcomes.on_timeout, run)))
            if chain is not None:
                run.slot = 0
                chain.append(run)
                continue
            lane.active += 1
            if lane.active <= min_concurrency:
                self.reserved -= 1
            if cmd.preemptible:  # only they can be victims: the others are not tracked
                lane.runs[run] = None
            self.running += 1
            if limiter is not None:
                limiter.record(now)
            try:
                launch(run)
            except Exception as exc:
                self.outcomes.launch_failed_locked(run, exc)
        if self.space_waiters:
            self.space.notify_all()

    # ends ----------------------------------------------------------------------------------------

    def final_locked(self, cmd: Command) -> None:
        """The command reached a final state: forget it, release its group, wake drainers."""
        if cmd.timers:
            cmd.cancel_timers()
        del self.commands[cmd.id]
        group = cmd.group
        if group is not None:
            group.outstanding -= 1
            if group.outstanding == 0 and cmd.lane.group is group:
                cmd.lane.group = None
        if self.quiet_waiters and not self.commands:
            # As an effect, after those its caller queued before this call (the store's delete,
            # the dead letter, the settle): a drain that returns has seen them done.
            self.box.add(self._notify_quiet)

    def _notify_quiet(self) -> None:
        with self.lock:
            self.quiet.notify_all()

    def unqueue_locked(self, cmd: Command) -> None:
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

    def cancel(self, command_id: str, reason: str, future: Any = None) -> bool:
        """Cancel an unfinished command (only if its future is ``future``, when given); False if none."""
        with self.box:
            cmd = self.commands.get(command_id)
            if cmd is None or (future is not None and cmd.future is not future):
                return False  # ended (its id may even be reused)
            self._cancel_locked(cmd, reason)
            self.dispatch_locked()
        return True

    def _cancel_locked(self, cmd: Command, reason: str) -> None:
        lane = cmd.lane
        state = cmd.state
        if state is CommandState.QUEUED:
            self.unqueue_locked(cmd)
        elif state is CommandState.RETRY_WAIT:
            lane.remove_waiting(cmd)
        elif state is CommandState.RUNNING and cmd.run is not None and not cmd.run.superseded:
            cmd.run.superseded = True
            self.box.add(partial(cmd.run.token.cancel, reason))
        cmd.state = CommandState.CANCELLED
        lane.cancelled += 1
        if cmd.durable and self.pending is not None:
            self.box.add(partial(self.pending.delete, cmd.id))
        self.box.add(partial(cmd.future.settle, error=CommandCancelled(f"command {cmd.id} cancelled: {reason}")))
        self.final_locked(cmd)  # after its effects are queued (see final_locked)
        self.emit("queue.command.cancelled", lane.name, command_id=cmd.id, caller=cmd.caller, reason=reason)
        self.lane_changed_locked(lane)

    def _preempt_locked(self, cmd: Command) -> bool:
        """If ``cmd`` arrives at a full lane, preempt the lowest-priority preemptible run; True if it did."""
        lane = cmd.lane
        action = lane.config.preempt
        if action is PreemptAction.NEVER or lane.active < lane.cap or lane.group is not None:
            return False
        victim = lane.preemption_victim(cmd.level, self.clock.now())
        if victim is None:
            return False
        victim.superseded = True
        lane.preempted += 1
        vc = victim.cmd
        reason = f"preempted by command {cmd.id} (priority {cmd.level} over {vc.level})"
        self.box.add(partial(victim.token.cancel, reason, preempted=True))
        self.emit("queue.command.preempted", lane.name, command_id=vc.id, caller=vc.caller,
                  by=cmd.id, action=action.value)
        if action is PreemptAction.REQUEUE:
            victim.requeue = True
        else:
            vc.state = CommandState.CANCELLED
            if vc.durable and self.pending is not None:
                self.box.add(partial(self.pending.delete, vc.id))
            self.box.add(partial(vc.future.settle, error=Preempted(f"command {vc.id} {reason}")))
            self.final_locked(vc)  # after its effects are queued (see final_locked)
        lane.preemptors.append(cmd)
        return True
