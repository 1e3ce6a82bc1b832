"""One lane's state: its mailbox (queue), slots, counters and windows.

A lane is an actor in the Akka sense: a mailbox plus state that only its
dispatcher touches, run on a shared pool of threads rather than a thread of
its own. The lane manager's scheduler is that dispatcher; it holds one lock
while it moves commands between lanes, so cross-lane priority is exact.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING

from laneway.lanes._config import LaneConfig
from laneway.lanes._metrics import MemoryRecorder
from laneway.lanes._queue import FairQueue
from laneway.lanes._records import CommandState, LaneStats, LaneStatus, LaneStatusReport
from laneway.lanes._window import RateLimiter

if TYPE_CHECKING:
    from collections.abc import Iterable

    from laneway.lanes._command import Command, Group, Run
    from laneway.lanes._metrics import LaneRecorder
    from laneway.core import TimerHandle

#: Weight of the newest run time in the moving average behind ETAs.
RUN_EWMA_ALPHA = 0.2


class Lane:
    """Mutable state of one lane; guarded by the manager's scheduler lock."""

    def __init__(self, config: LaneConfig, now: float, recorder: LaneRecorder, session_id: str | None = None) -> None:
        self.config = config
        self.name = config.name
        self.session_id = session_id
        self.queue = FairQueue()
        self.preemptors: collections.deque[Command] = collections.deque()  # take the next free slots
        self.group: Group | None = None  # a parallel group holding the lane
        self.pending = 0  # queued (in any structure) or waiting for a retry
        self.reported_pending = 0  # pending as last reported to the recorder (and checked for pressure)
        self.active = 0
        self.runs: dict[Run, None] = {}  # runs in progress whose command is preemptible (empty: no victim)
        self.limiter = RateLimiter(config.rate_limit) if config.rate_limit else None
        self.rate_timer: TimerHandle | None = None  # set while the rate limit holds the lane back
        self.recorder = recorder  # queue length, completions and latencies go to the metrics backend
        # The default backend's recorder, which the core updates inline (see MemoryRecorder); else None.
        self.memory = recorder if type(recorder) is MemoryRecorder else None
        self.run_ewma: float | None = None
        self.paused = False
        self.pressure = False
        self.relief_due = False  # a pressure event was published: the next idle transition is published too
        self.busy = False
        self.in_turn = False  # in the scheduler's priority buckets (eligible when last touched)
        self.closing = False
        self.idle_since: float | None = now
        self.idle_timer: TimerHandle | None = None
        self.completed = self.failed = self.timed_out = self.retried = 0
        self.dead_lettered = self.cancelled = self.preempted = 0

    def __repr__(self) -> str:
        return f"<Lane {self.name} pending={self.pending} active={self.active}>"

    @property
    def cap(self) -> int:
        """Slots usable now: a running parallel group sets its own bound."""
        return self.group.max_concurrent if self.group is not None else self.config.max_concurrency

    def has_work(self) -> bool:
        if self.preemptors:
            return True
        group = self.group
        if group is not None:
            return bool(group.pending)
        return self.queue.size > 0

    def eligible(self) -> bool:
        """May the scheduler take a command from this lane now (rate limits aside)?"""
        # One expression, no property or method calls: the scheduler asks after every change.
        group = self.group
        if group is None:
            return (self.active < self.config.max_concurrency and (self.queue.size > 0 or bool(self.preemptors))
                    and not self.paused and self.rate_timer is None)
        return (self.active < group.max_concurrent and (bool(group.pending) or bool(self.preemptors))
                and not self.paused and self.rate_timer is None)

    def take(self) -> Command | None:
        """The next command to start, or None; a group's placeholder turns the lane into group mode."""
        if self.preemptors:
            return self.preemptors.popleft()
        if self.group is not None:
            return self.group.pending.popleft() if self.group.pending else None
        cmd = self.queue.pop()
        if cmd is None:
            return None
        cmd.queued = False
        return cmd if cmd.batch is None else self.open_group(cmd)

    def open_group(self, placeholder: Command) -> Command | None:
        """After :meth:`take`'s pop gave a group's placeholder (marked not queued): the group's first member.

        The lane turns to group mode; a placeholder whose members all left meanwhile
        is skipped for the next queued command.
        """
        cmd: Command | None = placeholder
        while cmd is not None:
            group = cmd.batch
            if group is None:
                return cmd
            if group.pending:
                self.group = group
                return group.pending.popleft()
            cmd = self.queue.pop()
            if cmd is not None:
                cmd.queued = False
        return None

    def preemption_victim(self, level: int, now: float) -> Run | None:
        """The run a command at ``level`` may preempt: the lowest-priority, then youngest, preemptible one."""
        victim: Run | None = None
        for run in self.runs:
            c = run.cmd
            if run.superseded or not c.preemptible or c.level <= level:
                continue
            if now - run.started_at < self.config.preempt_min_runtime_s:
                continue
            if victim is None or (c.level, run.started_at) > (victim.cmd.level, victim.started_at):
                victim = run
        return victim

    def add_waiting(self, cmd: Command) -> None:
        """``cmd`` waits in this lane again (queued or for a retry): it counts as pending."""
        self.pending += 1
        self.busy = True
        self.idle_since = None

    def remove_waiting(self, cmd: Command) -> None:
        """``cmd`` stopped waiting here other than by starting (cancelled, or the manager closed)."""
        self.pending -= 1

    def eta(self, position: int) -> float | None:
        """Seconds until a command at ``position`` starts, from recent run times and the slot count."""
        group = self.group  # self.cap, without the property's two frames per submit
        cap = self.config.max_concurrency if group is None else group.max_concurrent
        behind = position + 1 - (cap - self.active)
        if behind <= 0:
            return 0.0
        if self.run_ewma is None:
            return None
        return behind * self.run_ewma / cap

    def status(self, accepting: bool, closed: bool) -> LaneStatusReport:
        has_work = self.pending > 0 or self.active > 0
        if closed or (not accepting and not has_work):
            status = LaneStatus.CLOSED
        elif not accepting or (self.closing and has_work):
            status = LaneStatus.DRAINING
        elif self.paused:
            status = LaneStatus.PAUSED
        elif has_work:
            status = LaneStatus.BUSY
        else:
            status = LaneStatus.IDLE
        cfg = self.config
        return LaneStatusReport(self.name, status, self.pending, self.active, cfg.max_concurrency, cfg.priority,
                                self.pressure, self.session_id)

    def stats(self, now: float, oldest_enqueued_at: float | None) -> LaneStats:
        """This lane's statistics; ``oldest_enqueued_at`` from :func:`oldest_waiting` (None: nothing waits)."""
        reading = self.recorder.read(now)
        cfg = self.config
        return LaneStats(
            name=self.name,
            priority=cfg.priority,
            min_concurrency=cfg.min_concurrency,
            max_concurrency=cfg.max_concurrency,
            pending=self.pending,
            active=self.active,
            completed=self.completed,
            failed=self.failed,
            timed_out=self.timed_out,
            retried=self.retried,
            dead_lettered=self.dead_lettered,
            cancelled=self.cancelled,
            preempted=self.preempted,
            oldest_queued_age_s=0.0 if oldest_enqueued_at is None else max(0.0, now - oldest_enqueued_at),
            throughput_per_s=reading.throughput_per_s,
            latency_p50_s=reading.latency_p50_s,
            latency_p90_s=reading.latency_p90_s,
            latency_p95_s=reading.latency_p95_s,
            latency_p99_s=reading.latency_p99_s,
            paused=self.paused,
            session_id=self.session_id,
            peak_pending=reading.peak_pending,
            pressure_threshold=cfg.pressure_threshold,
        )


_WAITING = (CommandState.QUEUED, CommandState.RETRY_WAIT)


def oldest_waiting(commands: Iterable[Command], lanes: Iterable[Lane]) -> dict[Lane, float]:
    """The earliest ``enqueued_at`` of the waiting (queued or retry-waiting) commands of each of ``lanes``.

    Worked out when statistics are asked, from the core's commands, rather than kept
    up to date per command: each start and submit would pay for an age that only
    statistics read. A lane with nothing pending is not looked for (nor is anything,
    when no lane has a command pending).
    """
    wanted = {lane for lane in lanes if lane.pending}
    oldest: dict[Lane, float] = {}
    if not wanted:
        return oldest
    for cmd in commands:
        lane = cmd.lane
        if lane in wanted and cmd.state in _WAITING:
            at = oldest.get(lane)
            if at is None or cmd.enqueued_at < at:
                oldest[lane] = cmd.enqueued_at
    return oldest
