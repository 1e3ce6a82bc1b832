"""One workflow's scheduler: task state machine, retries, timeouts, pause/resume/cancel, rollback.

All state changes happen under the run's lock and end with one store
version (the note says what changed). Nothing the user wrote runs under the
lock: executors are dispatched, events published and futures settled only
after it is released (the run's :class:`~laneway.core.Outbox`).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import types
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import attrs

from laneway.core import Outbox, TimerHandle
from laneway.core import Future
from laneway.errors import Cancelled, LanewayTimeout, TaskTimeout, WorkflowError, WorkflowFailed, WorkflowStateError
from laneway.core import ProgressStream
from laneway.core import CancellationToken
from laneway.workflow._context import ProgressReporter, TaskContext
from laneway.workflow._dag import descendants
from laneway.workflow._model import (
    TaskRecord,
    TaskState,
    TaskStatus,
    WorkflowDefinition,
    WorkflowState,
    WorkflowStatus,
)
from laneway.workflow._persist import Snapshot

if TYPE_CHECKING:
    from laneway.workflow._engine import WorkflowEngine

log = logging.getLogger(__name__)

_RUNNING, _PENDING, _RETRY = TaskState.RUNNING, TaskState.PENDING, TaskState.RETRY_WAIT


@attrs.define(eq=False)
class Attempt:
    """An attempt in flight (memory only)."""

    token: str
    ctx: TaskContext
    timeout_timer: TimerHandle | None = None
    checkpoint_timer: TimerHandle | None = None


class WorkflowRun:
    """The live state of one workflow inside a :class:`WorkflowEngine`."""

    def __init__(self, engine: WorkflowEngine, definition: WorkflowDefinition, snap: Snapshot, *, flat: bool = False) -> None:
        self.engine = engine
        self.definition = definition
        self.id = definition.workflow_id
        self.tasks = {t.task_id: t for t in definition.tasks}
        self._order = {tid: i for i, tid in enumerate(self.tasks)}
        self._deps = {tid: t.dependencies for tid, t in self.tasks.items()}
        self._dependents: dict[str, list[str]] = {tid: [] for tid in self.tasks}
        for tid, deps in self._deps.items():
            for d in deps:
                self._dependents[d].append(tid)
        self._variables = types.MappingProxyType(dict(definition.variables))
        self._flat = flat  # a single submitted task: progress fields go to the stream's top level
        self._lock = engine._new_lock()
        # Effects (dispatching executors, events, settling futures) run after the lock is released.
        self._outbox = Outbox(f"workflow {self.id}", self._lock)
        self.state = snap.state
        self.version = snap.version
        self.records: dict[str, TaskRecord] = dict(snap.tasks)
        self.results: dict[str, Any] = {}
        self._attempts: dict[str, Attempt] = {}
        self._retry_timers: dict[str, TimerHandle] = {}
        self._ready: list[tuple[int, str]] = []
        self._progress_fields: dict[str, dict[str, Any]] = {}
        self.done = self._new_future()
        self.progress = self._new_stream()
        self._load_results()

    def __repr__(self) -> str:
        return f"<WorkflowRun {self.id} {self.state.value}>"

    # plumbing ------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, atomic: bool = False) -> Iterator[None]:
        """Hold the lock; the effects queued under it run once the outermost holder releases it.

        The outbox runs them even when the body raises, so a refused call
        cannot leave later effects (dispatching the next task, settling the
        future) queued for good. With ``atomic`` (the caller-facing
        operations) a body that raises also leaves the run as it found it:
        the in-memory state is restored and the effects it queued are
        dropped, so a refused or failed call changes nothing.
        """
        with self._outbox.locked():
            saved = self._save() if atomic and self._outbox.depth == 1 else None
            try:
                yield
            except BaseException:
                if saved is not None:
                    self._restore(saved)
                raise

    def _save(self) -> tuple[Any, ...]:
        return (
            self.state, self.version, dict(self.records), dict(self.results), list(self._ready),
            dict(self._attempts), dict(self._retry_timers), self.done, self.progress, self._outbox.mark(),
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        (self.state, self.version, self.records, self.results, self._ready,
         attempts, self._retry_timers, self.done, self.progress, queued) = saved
        for tid, attempt in self._attempts.items():
            if attempts.get(tid) is not attempt:
                # Started by the failed call: its dispatch effect is dropped below, so it never ran.
                for timer in (attempt.timeout_timer, attempt.checkpoint_timer):
                    if timer is not None:
                        timer.cancel()
                self.engine._attempt_ended()
        self._attempts = attempts
        self._outbox.discard_since(queued)
        for tid in self.records:
            self._report(tid)

    def _new_future(self) -> Future[WorkflowStatus]:
        future: Future[WorkflowStatus] = Future()
        future._what = f"end of workflow {self.id}"
        future._timeout_error = LanewayTimeout
        return future

    def _new_stream(self) -> ProgressStream:
        e = self.engine
        stream = ProgressStream(self.id, snapshot_every=e.snapshot_every, buffer_size=e.progress_buffer)
        # Start from every task's current state, so the first snapshot shows the whole workflow.
        if self._flat:
            stream.update(self._fields(next(iter(self.tasks))))
        else:
            stream.update({tid: self._fields(tid) for tid in self.tasks})
        return stream

    def _fields(self, tid: str) -> dict[str, Any]:
        rec = self.records[tid]
        return {"state": rec.state.value, "attempts": rec.attempts, **self._progress_fields.get(tid, {})}

    def _load_results(self) -> None:
        for tid, rec in self.records.items():
            if rec.state is TaskState.COMPLETED:
                self.results[tid] = self.engine._wstore.result(self.id, tid, rec.run)

    def _change(self, tid: str, **changes: Any) -> TaskRecord:
        rec = self.records[tid] = attrs.evolve(self.records[tid], **changes)
        self._report(tid)
        if self.engine._events.active:
            key = f"workflow.task.{rec.state.value}"
            self._outbox.add(
                lambda: self.engine._events.publish(
                    key, self.id, task_id=tid, attempts=rec.attempts, error=rec.error, reason=rec.reason
                )
            )
        return rec

    def _report(self, tid: str) -> None:
        if self._flat:
            self.progress.update(self._fields(tid))
        else:
            self.progress.update({tid: self._fields(tid)})

    def _set_state(self, state: WorkflowState) -> None:
        self.state = state
        if self.engine._events.active:
            self._outbox.add(lambda: self.engine._events.publish(f"workflow.{state.value}", self.id))

    def _commit(self, note: str, result: tuple[str, str, bytes] | None = None) -> None:
        self.version = self.engine._wstore.write(self.id, self.state, self.records, note, result=result)

    # queries --------------------------------------------------------------------

    def status(self) -> WorkflowStatus:
        with self._lock:
            tasks = {tid: TaskStatus(tid, r.state, r.attempts, r.error, r.reason) for tid, r in self.records.items()}
            return WorkflowStatus(self.id, self.definition.name, self.state, self.version, tasks, dict(self.results))

    @property
    def running(self) -> int:
        return len(self._attempts)

    def _satisfied(self, dep: str) -> bool:
        rec = self.records[dep]
        return rec.state is TaskState.COMPLETED or (rec.state is TaskState.FAILED and self.tasks[dep].allow_failure)

    def _push_ready(self, tid: str) -> None:
        if self.records[tid].state is _PENDING and all(self._satisfied(d) for d in self._deps[tid]):
            heapq.heappush(self._ready, (self._order[tid], tid))

    def _rebuild_ready(self) -> None:
        self._ready = []
        for tid in self.tasks:
            self._push_ready(tid)

    # lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        with self._locked(atomic=True):
            if self.state is not WorkflowState.CREATED:
                raise WorkflowStateError(f"workflow {self.id} is {self.state.value}; only a created workflow can start")
            self._set_state(WorkflowState.RUNNING)
            self._rebuild_ready()
            self._commit("started")
            self._schedule()

    def recover(self) -> None:
        """After a load from the store: attempts that were running died with their process; re-run them."""
        with self._locked():
            interrupted = [tid for tid, r in self.records.items() if r.state in (_RUNNING, _RETRY)]
            for tid in interrupted:
                rec = self.records[tid]
                self._change(
                    tid,
                    state=_PENDING,
                    attempts=rec.attempts - (rec.state is _RUNNING),
                    reason="interrupted (process ended); re-run",
                )
            self._rebuild_ready()
            if interrupted:
                self._commit("recovered; re-running " + ", ".join(interrupted))
            if self.state is WorkflowState.RUNNING:
                self._schedule()

    def settle_loaded(self) -> None:
        """A finished workflow read back from the store: settle its future and stream at once."""
        with self._locked():
            self._settle()

    def pause(self) -> bool:
        with self._locked(atomic=True):
            if self.state is not WorkflowState.RUNNING:
                return False
            self._set_state(WorkflowState.PAUSED)
            self._commit("paused")
            return True

    def resume(self) -> bool:
        with self._locked(atomic=True):
            if self.state is not WorkflowState.PAUSED:
                return False
            self._set_state(WorkflowState.RUNNING)
            self._commit("resumed")
            self._schedule()
            return True

    def cancel(self, reason: str) -> bool:
        with self._locked(atomic=True):
            if self.state.terminal:
                return False
            self._set_state(WorkflowState.CANCELLED)
            for tid, rec in self.records.items():
                if rec.state in (_PENDING, _RETRY):
                    self._change(tid, state=TaskState.CANCELLED, reason=reason)
            # Cancelled once the call succeeded (a due timer finds no RETRY_WAIT task and does nothing).
            self._outbox.extend(timer.cancel for timer in self._retry_timers.values())
            self._retry_timers = {}
            self._commit(f"cancelled: {reason}")
            attempts = list(self._attempts.values())
            # Tokens run callbacks (user code): cancel them after the lock is released.
            self._outbox.extend(functools.partial(a.ctx.cancel_token.cancel, reason) for a in attempts)
            self._maybe_finish()
            return True

    def rollback(self, snap: Snapshot) -> None:
        with self._locked(atomic=True):
            if self._attempts or self.state is WorkflowState.RUNNING:
                raise WorkflowStateError(
                    f"workflow {self.id} is running ({len(self._attempts)} tasks in flight); "
                    "pause it and wait until it is idle, or let it finish, before rolling back"
                )
            # Cancelled once the call succeeded (a due timer finds no RETRY_WAIT task and does nothing).
            self._outbox.extend(timer.cancel for timer in self._retry_timers.values())
            self._retry_timers = {}
            self.records = {}
            for tid, rec in snap.tasks.items():
                if rec.state in (_RUNNING, _RETRY):
                    rec = attrs.evolve(rec, state=_PENDING, attempts=rec.attempts - (rec.state is _RUNNING))
                self.records[tid] = rec
            self.results = {}
            self._load_results()
            state = WorkflowState.PAUSED if snap.state is WorkflowState.RUNNING else snap.state
            self._reopen(state)
            self._rebuild_ready()
            # One store transaction: dropped checkpoints and the new version commit together or not at all.
            with self.engine._wstore.store.transaction():
                for tid, rec in self.records.items():
                    if rec.state is not TaskState.COMPLETED:
                        self.engine._wstore.clear_checkpoint(self.id, tid)
                self._commit(f"rolled back to version {snap.version}")
            for tid in self.records:
                self._report(tid)
            if state.terminal:
                self._settle()

    def retry_task(self, tid: str) -> None:
        """Run a failed task again (and the tasks its failure skipped)."""
        with self._locked(atomic=True):
            rec = self.records.get(tid)
            if rec is None or rec.state is not TaskState.FAILED:
                state = "unknown" if rec is None else rec.state.value
                raise WorkflowStateError(f"task {tid!r} of workflow {self.id} is {state}; only a failed task can be retried")
            if self.state is WorkflowState.CANCELLED:
                raise WorkflowStateError(f"workflow {self.id} is cancelled; its tasks cannot be retried")
            self._change(tid, state=_PENDING, attempts=0, reason="resubmitted")
            for d in descendants(self._deps, [tid]):
                if self.records[d].state is TaskState.SKIPPED:
                    self._change(d, state=_PENDING, reason="")
            if self.state.terminal:
                self._reopen(WorkflowState.RUNNING)
            self._rebuild_ready()
            self._commit(f"task {tid} resubmitted")
            self._schedule()

    def _reopen(self, state: WorkflowState) -> None:
        """Leave a terminal state: a fresh done-future and progress stream for the new ending."""
        if self.state.terminal:
            self.done = self._new_future()
            self.progress = self._new_stream()
        self._set_state(state)

    # scheduling ---------------------------------------------------------------------

    def _schedule(self) -> None:
        limit = self.definition.max_parallel_tasks
        while self.state is WorkflowState.RUNNING and self._ready and len(self._attempts) < limit:
            if self.engine.stopping:
                return
            _, tid = heapq.heappop(self._ready)
            if self.records[tid].state is _PENDING and tid not in self._attempts:
                self._start_attempt(tid)
        self._maybe_finish()

    def _start_attempt(self, tid: str) -> None:
        task = self.tasks[tid]
        rec = self._change(tid, state=_RUNNING, attempts=self.records[tid].attempts + 1, reason="")
        token = uuid.uuid4().hex[:16]
        results = {d: self.results[d] for d in task.dependencies if d in self.results}
        failed = {d: self.records[d].error for d in task.dependencies if self.records[d].state is TaskState.FAILED}
        ctx = TaskContext(
            task=task,
            workflow_id=self.id,
            attempt=rec.attempts,
            dependency_results=results,
            failed_dependencies=failed,
            variables=self._variables,
            progress=ProgressReporter(lambda fields: self._on_progress(tid, fields)),
            cancel_token=CancellationToken(),
            resume=self.engine._wstore.load_checkpoint(self.id, tid),
            save_checkpoint=lambda state: self._save_checkpoint(tid, token, state),
        )
        attempt = self._attempts[tid] = Attempt(token, ctx)
        self.engine._attempt_started()
        clock = self.engine._clock
        if task.timeout is not None:
            attempt.timeout_timer = clock.call_later(task.timeout, lambda: self._on_timeout(tid, token))
        if task.checkpoint_every_s is not None:
            attempt.checkpoint_timer = clock.call_later(task.checkpoint_every_s, lambda: self._auto_checkpoint(tid, token))
        self._commit(f"task {tid} started (attempt {rec.attempts})")
        self._outbox.add(lambda: self.engine._dispatch.execute(self, tid, attempt))

    def _maybe_finish(self) -> None:
        if self._attempts:
            return
        if self.state is WorkflowState.CANCELLED:
            self._settle()
            return
        if self.state.terminal or not all(r.state.terminal for r in self.records.values()):
            return
        failed = [t for t, r in self.records.items() if r.state is TaskState.FAILED and not self.tasks[t].allow_failure]
        self._set_state(WorkflowState.FAILED if failed else WorkflowState.COMPLETED)
        self._commit("failed: " + ", ".join(failed) if failed else "completed")
        self._settle()

    def _settle(self) -> None:
        status, done, stream = self.status(), self.done, self.progress
        if status.state is WorkflowState.COMPLETED:
            outcome: Any = (self.results.get(next(iter(self.tasks))) if self._flat else status.results)
            self._outbox.add(lambda: stream.complete(outcome))
        else:
            error = self._failure(status)
            self._outbox.add(lambda: stream.fail(error))
        self._outbox.add(lambda: done.settle(status))
        self._outbox.add(lambda: self.engine._finished(self))

    def _failure(self, status: WorkflowStatus) -> BaseException:
        if self._flat and status.state is WorkflowState.FAILED:
            rec = next(iter(status.tasks.values()))
            return WorkflowError(f"task {rec.task_id!r} failed after {rec.attempts} attempts: {rec.error}")
        failed = "; ".join(f"{t}: {s.error}" for t, s in status.tasks.items() if s.state is TaskState.FAILED)
        return WorkflowFailed(f"workflow {self.id} {status.state.value}" + (f" ({failed})" if failed else ""), status)

    # attempt outcomes --------------------------------------------------------------------

    def finish_attempt(self, tid: str, token: str, ok: bool, value: Any) -> None:
        """Record an attempt's result (``ok``) or error; stale attempts (timed out, superseded) are ignored."""
        with self._locked():
            attempt = self._attempts.get(tid)
            if attempt is None or attempt.token != token:
                return
            if self.engine.stopping and (not ok or self.engine.closed):
                # Shutting down: the attempt was told to stop. Leave the task
                # RUNNING in the store so recovery re-runs it.
                self._drop(tid)
                return
            blob: bytes | None = None
            if ok:
                try:
                    blob = self.engine._wstore.pickle_result(tid, value)
                except WorkflowError as exc:
                    value = exc
            self._drop(tid)
            if blob is not None:  # succeeded, and its result pickled
                self.results[tid] = value
                self._change(tid, state=TaskState.COMPLETED, run=token, error="")
                self._commit(f"task {tid} completed", result=(tid, token, blob))
                self.engine._wstore.clear_checkpoint(self.id, tid)
                self._unblock(tid)
            else:
                self._failed_attempt(tid, value)
            self._schedule()

    def _drop(self, tid: str) -> None:
        attempt = self._attempts.pop(tid)
        for timer in (attempt.timeout_timer, attempt.checkpoint_timer):
            if timer is not None:
                timer.cancel()
        self.engine._attempt_ended()

    def _unblock(self, tid: str) -> None:
        for child in self._dependents[tid]:
            self._push_ready(child)

    def _failed_attempt(self, tid: str, error: BaseException) -> None:
        rec = self.records[tid]
        if self.state is WorkflowState.CANCELLED:
            self._change(tid, state=TaskState.CANCELLED, error=repr(error), reason="workflow cancelled")
            self._commit(f"task {tid} cancelled")
            return
        policy = self.tasks[tid].retry_policy
        delay = policy.delay_before(rec.attempts) if policy.retries(error) and not isinstance(error, Cancelled) else None
        if delay is not None:
            if delay > 0:
                self._change(tid, state=_RETRY, error=repr(error))
                self._retry_timers[tid] = self.engine._clock.call_later(delay, lambda: self._retry_due(tid))
            else:
                self._change(tid, state=_PENDING, error=repr(error))
                self._push_ready(tid)
            self._commit(f"task {tid} attempt {rec.attempts} failed; retrying in {delay:g}s")
            return
        self._change(tid, state=TaskState.FAILED, error=repr(error))
        note = f"task {tid} failed after {rec.attempts} attempts"
        if self.tasks[tid].allow_failure:
            self._unblock(tid)
            note += " (allowed)"
        else:
            skipped = [d for d in sorted(descendants(self._deps, [tid]), key=self._order.__getitem__) if self.records[d].state is _PENDING]
            for d in skipped:
                self._change(d, state=TaskState.SKIPPED, reason=f"dependency {tid!r} failed: {error!r}")
            if skipped:
                note += "; skipped " + ", ".join(skipped)
        self._commit(note)
        self._outbox.add(lambda: self.engine._dead_letter(self, tid, rec.attempts, error))

    def _retry_due(self, tid: str) -> None:
        with self._locked():
            self._retry_timers.pop(tid, None)
            if self.records[tid].state is not _RETRY:
                return
            self._change(tid, state=_PENDING)
            self._commit(f"task {tid} retry due")
            self._push_ready(tid)
            self._schedule()

    def _on_timeout(self, tid: str, token: str) -> None:
        attempt = self._attempts.get(tid)
        if attempt is None or attempt.token != token:
            return
        timeout = self.tasks[tid].timeout
        attempt.ctx.cancel_token.cancel(f"timed out after {timeout}s")
        self.finish_attempt(tid, token, False, TaskTimeout(f"task {tid!r} timed out after {timeout}s (attempt {attempt.ctx.attempt})"))

    # progress and checkpoints ---------------------------------------------------------------

    def _on_progress(self, tid: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            if tid in self._attempts:
                self._progress_fields[tid] = {**self._progress_fields.get(tid, {}), **fields}
                self._report(tid)

    def _save_checkpoint(self, tid: str, token: str, state: Any) -> None:
        with self._lock:
            attempt = self._attempts.get(tid)
            if attempt is None or attempt.token != token:
                log.debug("workflow %s: checkpoint of stale attempt of %s ignored", self.id, tid)
                return
            self.engine._wstore.save_checkpoint(self.id, tid, state)

    def _auto_checkpoint(self, tid: str, token: str) -> None:
        with self._lock:
            attempt = self._attempts.get(tid)
            if attempt is None or attempt.token != token:
                return
            has_state, state = attempt.ctx._take_latest()
            if has_state:
                self.engine._wstore.save_checkpoint(self.id, tid, state)
            every = self.tasks[tid].checkpoint_every_s
            if every is not None:  # always, for a task with this timer
                attempt.checkpoint_timer = self.engine._clock.call_later(every, lambda: self._auto_checkpoint(tid, token))

    def tokens(self) -> list[CancellationToken]:
        """Tokens of the attempts in flight (the engine cancels them at shutdown)."""
        with self._lock:
            return [a.ctx.cancel_token for a in self._attempts.values()]
