"""The manager's life: recovery from the store, re-submission, the process pool on first use, shutdown and close."""

from __future__ import annotations

import logging
import threading
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from laneway.errors import (
    ConfigError,
    LaneError,
    LaneShutdown,
    LanewayError,
    StoreError,
)
from laneway.lanes._config import Priority
from laneway.lanes._records import CommandState, DrainReport
from laneway.lanes._submit import SubmitOptions

if TYPE_CHECKING:
    from laneway.core import CpuRunner, CpuRunnerProvider, DeadLetterQueue, EventBus
    from laneway.lanes._core import LaneCore
    from laneway.lanes._persist import PendingStore
    from laneway.lanes._records import CommandHandle

log = logging.getLogger(__name__)

#: ``(record, attempts, unbounded)``: submit a persisted or dead-lettered command record again.
SubmitRecord = Callable[[dict[str, Any], int, bool], "CommandHandle"]


def record_options(rec: dict[str, Any]) -> SubmitOptions:
    """The options a command was submitted with, from its persisted record."""
    return SubmitOptions(Priority(rec["priority"]), rec["caller"], rec["timeout"], rec["retry"],
                         rec["deadline_s"], rec["preemptible"], None, rec["id"])


def recover(pending: PendingStore, submit_record: SubmitRecord, dead_letters: DeadLetterQueue,
            events: EventBus) -> tuple[CommandHandle, ...]:
    """Queue the store's pending commands again; one that cannot run again is dead-lettered."""
    handles = []
    for key, rec in pending.load():
        lane = rec.get("lane", "?") if rec else "?"
        try:
            if rec is None:
                raise StoreError(f"persisted command {key} is unreadable")
            attempts = rec.get("attempts", 0)
            if attempts >= rec["retry"].max_attempts:
                raise LaneError(f"interrupted by a crash during its last attempt ({attempts})")
            handles.append(submit_record(rec, attempts, True))
        except LanewayError as exc:
            dead_letters.put(f"lane:{lane}", f"could not recover persisted command: {exc}",
                             attempts=(rec or {}).get("attempts", 0), error=exc, work_id=key, payload=rec)
            pending.delete(key)
            continue
        if events.active:
            events.publish("queue.command.recovered", lane, command_id=key, attempts=attempts)
    if handles:
        log.info("recovered %d pending commands from the store", len(handles))
    return tuple(handles)


class CpuOnce:
    """The runner for ``cpu_bound`` tools (the process pool), asked of ``provider`` on first use only.

    ``first_use`` runs once, after the runner was obtained (the manager orders its
    shutdown before the pool's then).
    """

    def __init__(self, provider: CpuRunnerProvider | None, first_use: Callable[[], None]) -> None:
        self._provider = provider
        self._first_use = first_use
        self._runner: CpuRunner | None = None
        self._lock = threading.Lock()

    def __call__(self) -> CpuRunner:
        runner = self._runner
        if runner is not None:
            return runner
        if self._provider is None:
            raise ConfigError("this lane manager was given no process pool (cpu=...), so it cannot run "
                              "cpu_bound tools; use orch.lanes, or pass cpu=lambda: pool")
        runner = self._provider()
        with self._lock:
            first, self._runner = self._runner is None, runner
        if first:
            self._first_use()
        return runner


def shutdown(core: LaneCore) -> None:
    """Stop accepting commands; queued and running work goes on."""
    with core.lock:
        if not core.accepting:
            return
        core.accepting = False
        pending, running = len(core.commands) - core.running, core.running
        core.space.notify_all()
    core.events.publish("queue.shutdown.started", "lanes", pending=pending, running=running)


def drain(core: LaneCore, timeout: float | None) -> DrainReport:
    """Wait until no command is queued or running (up to ``timeout`` s); report what is left."""
    with core.lock:
        core.quiet_waiters += 1
        try:
            core.quiet.wait_for(lambda: not core.commands, timeout)
        finally:
            core.quiet_waiters -= 1
        queued = tuple(c.id for c in core.commands.values() if c.state is not CommandState.RUNNING)
        running = tuple(c.id for c in core.commands.values() if c.state is CommandState.RUNNING)
    return DrainReport(drained=not queued and not running, queued=queued, running=running)


def close_locked(core: LaneCore) -> tuple[list[str], list[str]]:
    """End every unfinished command for a closing manager: (ids left in the store, ids dead-lettered)."""
    core.closed = True
    persisted: list[str] = []
    lettered: list[str] = []
    for cmd in list(core.commands.values()):
        was = cmd.state
        if was is CommandState.QUEUED:
            core.unqueue_locked(cmd)
        elif was is CommandState.RETRY_WAIT:
            cmd.lane.remove_waiting(cmd)
        elif cmd.run is not None and not cmd.run.superseded:
            cmd.run.superseded = True
            core.box.add(partial(cmd.run.token.cancel, "lane manager closed"))
        cmd.state = CommandState.CANCELLED
        core.final_locked(cmd)
        if cmd.durable:
            persisted.append(cmd.id)
        else:
            lettered.append(cmd.id)
            core.box.add(partial(core.dead_letters.put, f"lane:{cmd.lane.name}",
                                 f"lane manager closed while it was {was.value}", attempts=cmd.attempts,
                                 work_id=cmd.id, payload=cmd.payload(with_fn=True)))
        where = "left in the store for the next manager" if cmd.durable else "dead-lettered"
        core.box.add(partial(cmd.future.settle, error=LaneShutdown(
            f"lane manager closed while command {cmd.id} was {was.value}; {where}")))
    for lane in core.lanes.values():
        # The clock is shared: drop this manager's lane timers (command timers went with their commands).
        for timer in (lane.rate_timer, lane.idle_timer):
            if timer is not None:
                timer.cancel()
        lane.rate_timer = lane.idle_timer = None
    return persisted, lettered
