"""The workflow engine: creates, runs, persists and recovers DAG workflows."""

from __future__ import annotations

import collections
import logging
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import attrs

from laneway.errors import ConfigError, SystemShutdown, WorkflowStateError
from laneway.core import ProgressStream
from laneway.store import SQLiteStore, Store
from laneway.workflow._dag import validate_graph
from laneway.workflow._dispatch import Dispatcher, Executor
from laneway.workflow._handle import Workflow
from laneway.workflow._model import (
    TaskDefinition,
    TaskRecord,
    WorkflowDefinition,
    WorkflowState,
    WorkflowStatus,
    WorkflowVersion,
)
from laneway.workflow._persist import WorkflowStore
from laneway.workflow._run import WorkflowRun

if TYPE_CHECKING:
    from laneway.actors import ActorSystem
    from laneway.workflow._dispatch import RoutingProvider
    from laneway.core import DeadLetter

log = logging.getLogger(__name__)


@attrs.frozen
class EngineStatistics:
    """Counters of a :class:`WorkflowEngine`."""

    workflows: Mapping[str, int]  #: workflows in memory, by state value
    running_tasks: int
    executor_threads: int


class WorkflowEngine:
    """Runs workflows: DAGs of tasks whose state lives in a store and survives crashes.

    Each task runs on the local executor registered for its ``agent_type``
    (:meth:`register_executor`), or else through the orchestrator's router.
    Every state change is a new stored version (:meth:`history`,
    :meth:`rollback_workflow`); a workflow whose process died is resumed by
    :meth:`recover` in a new process: finished tasks keep their results,
    interrupted ones run again with their last checkpoint.

    A failed task fails its dependents (skipped, with the reason) and, unless
    it has ``allow_failure``, the workflow; independent branches still run to
    the end. Every permanently failed task goes to ``orch.dead_letters``
    (source ``"workflow:<id>"``); re-submitting the letter runs it again.
    Events: ``workflow.created``, ``workflow.<state>`` and
    ``workflow.task.<state>`` (``task_id``, ``attempts``, ``error``, ``reason``).

    Args:
        orch: the actor system (its clock, events, dead letters and store are used).
        router: returns the router that runs tasks no local executor takes (started on first use).
        store: a :class:`~laneway.store.Store` or a SQLite path; default the
            orchestrator's store, else an in-memory SQLite store (no durability).
        max_parallel_tasks: default bound of tasks running at once per workflow.
        threads: most threads running local executors at once, over all workflows.
        snapshot_every: progress streams send a full snapshot every N updates.
        progress_buffer: events buffered per progress subscriber before folding.
        keep_finished: finished workflows kept in memory; older ones are read
            back from the store when asked for.

    Example:
        >>> with Orchestrator() as orch:                                   # doctest: +SKIP
        ...     engine = orch.workflows
        ...     engine.register_executor("double", lambda ctx: 2 * ctx.payload)
        ...     wf = engine.create_workflow([TaskDefinition("a", agent_type="double", payload=21)])
        ...     wf.start().wait(timeout=10).results
        {'a': 42}
    """

    def __init__(
        self,
        orch: ActorSystem,
        *,
        router: RoutingProvider | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        max_parallel_tasks: int = 8,
        threads: int = 16,
        snapshot_every: int = 10,
        progress_buffer: int = 100,
        keep_finished: int = 1000,
    ) -> None:
        for name, value in (("max_parallel_tasks", max_parallel_tasks), ("threads", threads),
                            ("snapshot_every", snapshot_every), ("progress_buffer", progress_buffer)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"WorkflowEngine: {name} must be an int >= 1, got {value!r}")
        if not isinstance(keep_finished, int) or keep_finished < 0:
            raise ConfigError(f"WorkflowEngine: keep_finished must be an int >= 0, got {keep_finished!r}")
        self._orch = orch
        self._owns_store = (store is None and orch.store is None) or isinstance(store, (str, os.PathLike))
        if store is None:
            store = orch.store if orch.store is not None else SQLiteStore(":memory:")
        elif isinstance(store, (str, os.PathLike)):
            store = SQLiteStore(store)
        elif not isinstance(store, Store):
            raise ConfigError(f"WorkflowEngine: store must be a Store or a SQLite path, got {store!r}")
        self.store = store
        self._wstore = WorkflowStore(store)
        self._clock = orch.clock
        self._events = orch.events
        self.max_parallel_tasks = max_parallel_tasks
        self.snapshot_every = snapshot_every
        self.progress_buffer = progress_buffer
        self.keep_finished = keep_finished
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._runs: dict[str, WorkflowRun] = {}
        self._finished_order: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._dispatch = Dispatcher(router, threads)
        self.stopping = False
        self.closed = False
        orch.on_shutdown("workflows", self._shutdown)
        orch.dead_letters.register_resubmitter("workflow:", self._resubmit)

    def __repr__(self) -> str:
        return f"<WorkflowEngine {len(self._runs)} workflows on {self.store!r}>"

    @staticmethod
    def _new_lock() -> threading.RLock:
        return threading.RLock()

    # executors ----------------------------------------------------------------------

    def register_executor(self, agent_type: str, fn: Executor) -> None:
        """Run tasks of ``agent_type`` by calling ``fn(ctx)`` on an engine thread (``async def`` works too).

        The return value is the task's result; an exception fails the attempt.
        Local executors win over router agents of the same type.

        Example:
            >>> engine.register_executor("summarize", lambda ctx: ctx.payload[:100])   # doctest: +SKIP
        """
        if not isinstance(agent_type, str) or not agent_type or not callable(fn):
            raise ConfigError(f"register_executor needs an agent_type string and a callable, got {agent_type!r}, {fn!r}")
        self._dispatch.executors[agent_type] = fn

    # creating and running --------------------------------------------------------------

    def create_workflow(
        self,
        tasks: Iterable[TaskDefinition],
        *,
        workflow_id: str | None = None,
        name: str = "",
        variables: Mapping[str, Any] | None = None,
        max_parallel_tasks: int | None = None,
    ) -> Workflow:
        """Validate and store a workflow (not started; call :meth:`Workflow.start`).

        Raises:
            WorkflowValidationError: duplicate ids, unknown dependencies, no tasks,
                an id already used, a payload that cannot be stored.
            CycleError: a dependency cycle, named as a path.
        """
        return self._create(tasks, workflow_id, name, variables, max_parallel_tasks, flat=False)

    def _create(self, tasks: Iterable[TaskDefinition], workflow_id: str | None, name: str,
                variables: Mapping[str, Any] | None, max_parallel_tasks: int | None, *, flat: bool) -> Workflow:
        by_id = validate_graph(tasks)
        limit = self.max_parallel_tasks if max_parallel_tasks is None else max_parallel_tasks
        if not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"max_parallel_tasks must be an int >= 1, got {limit!r}")
        wid = workflow_id if workflow_id is not None else f"wf-{uuid.uuid4().hex[:12]}"
        if not isinstance(wid, str) or not wid or "/" in wid:
            raise ConfigError(f"workflow_id must be a non-empty string without '/', got {wid!r}")
        definition = WorkflowDefinition(wid, name, tuple(by_id.values()), dict(variables or {}), limit)
        records = {tid: TaskRecord() for tid in by_id}
        with self._lock:
            self._check_open()
            version = self._wstore.create(definition, records)
            run = WorkflowRun(self, definition, self._wstore.snapshot(wid, version), flat=flat)
            self._runs[wid] = run
        self._events.publish("workflow.created", wid, tasks=len(by_id))
        return Workflow(self, wid)

    def start(self, workflow_id: str) -> Workflow:
        """Start a created workflow.

        Raises:
            WorkflowStateError: it was already started.
        """
        self._check_open()
        self._run(workflow_id).start()
        return Workflow(self, workflow_id)

    def run(self, tasks: Iterable[TaskDefinition], *, timeout: float | None = None, **options: Any) -> WorkflowStatus:
        """Create, start and wait for a workflow; returns its final status (failed or not).

        Raises:
            LanewayTimeout: not finished within ``timeout`` (it keeps running).
        """
        return self.create_workflow(tasks, **options).start().wait(timeout)

    def submit(
        self, task: TaskDefinition, *, variables: Mapping[str, Any] | None = None, workflow_id: str | None = None
    ) -> ProgressStream:
        """Run one (long) task and return its progress stream.

        The stream's state holds the task's ``state``, ``attempts`` and every
        field it reports with ``ctx.progress.report(...)``; it completes with
        the task's result or fails with its error.

        Example:
            >>> stream = engine.submit(TaskDefinition("crawl", agent_type="crawler"))  # doctest: +SKIP
            >>> for event in stream:                                                 # doctest: +SKIP
            ...     print(event.kind, dict(event.data))
        """
        wf = self._create([task], workflow_id, task.task_id, variables, 1, flat=True)
        return wf.start().progress

    # control ----------------------------------------------------------------------------

    def get(self, workflow_id: str) -> Workflow:
        """A handle on a workflow of this engine or of its store.

        A workflow read back from the store that was running when its process
        died resumes at once (see :meth:`recover`), so register executors first.

        Raises:
            WorkflowNotFound: no such workflow.
        """
        self._run(workflow_id)
        return Workflow(self, workflow_id)

    def _run(self, workflow_id: str) -> WorkflowRun:
        with self._lock:
            run = self._runs.get(workflow_id)
            if run is not None:
                return run
            self._check_open()
            definition = self._wstore.definition(workflow_id)
            run = WorkflowRun(self, definition, self._wstore.snapshot(workflow_id))
            self._runs[workflow_id] = run
        if run.state.terminal:
            run.settle_loaded()
        else:
            run.recover()
        return run

    def forget(self, workflow_id: str) -> bool:
        """Drop a workflow that runs nothing here from memory; the store keeps it.

        The next :meth:`get` reads it back from the store, so a workflow created
        here and then run by another process sharing the store (another node of
        a cluster) is not shadowed by the stale copy created here.
        Returns False if it was not in memory.

        Raises:
            WorkflowStateError: tasks of it are running here.
        """
        with self._lock:
            run = self._runs.get(workflow_id)
            if run is None:
                return False
            if run.running or run.state is WorkflowState.RUNNING:
                raise WorkflowStateError(f"workflow {workflow_id} is {run.state.value} here; only an idle one can be forgotten")
            del self._runs[workflow_id]
            self._finished_order.pop(workflow_id, None)
            return True

    def status(self, workflow_id: str) -> WorkflowStatus:
        """The workflow's current status."""
        return self._run(workflow_id).status()

    def pause(self, workflow_id: str) -> bool:
        """Start no new tasks; running ones finish. False if it was not running."""
        return self._run(workflow_id).pause()

    def resume(self, workflow_id: str) -> bool:
        """Continue a paused workflow. False if it was not paused."""
        self._check_open()
        return self._run(workflow_id).resume()

    def cancel(self, workflow_id: str, reason: str = "cancelled by caller") -> bool:
        """Cancel pending tasks and the running ones' tokens. False if it had already ended.

        The workflow ends (``wait`` returns) once the running attempts have
        returned; one that finishes anyway keeps its result.
        """
        return self._run(workflow_id).cancel(reason)

    def retry_task(self, workflow_id: str, task_id: str) -> Workflow:
        """Run a failed task again, and the tasks its failure skipped; the workflow runs on.

        Raises:
            WorkflowStateError: the task is not failed, or the workflow was cancelled.
        """
        self._check_open()
        self._run(workflow_id).retry_task(task_id)
        return Workflow(self, workflow_id)

    def rollback_workflow(self, workflow_id: str, version: int) -> WorkflowStatus:
        """Restore the state of ``version`` as a new version.

        Tasks completed in that version keep their results; the others go back
        to pending (their checkpoints are dropped). A version in which the
        workflow was running is restored as paused: call :meth:`resume`.

        Raises:
            WorkflowStateError: tasks are running (pause and wait for idle first).
            VersionNotFound: no such version.
        """
        run = self._run(workflow_id)
        run.rollback(self._wstore.snapshot(workflow_id, version))
        with self._lock:
            self._finished_order.pop(workflow_id, None)
        return run.status()

    def history(self, workflow_id: str) -> list[WorkflowVersion]:
        """Every stored version of the workflow, oldest first."""
        return self._wstore.history(workflow_id)

    def workflow_ids(self) -> list[str]:
        """Every workflow in the store, oldest first."""
        return self._wstore.workflow_ids()

    def loaded_ids(self) -> list[str]:
        """Workflows this engine holds in memory (running, paused, recently finished), oldest first.

        Unlike :meth:`get` or :meth:`status` on a stored id, this never loads a
        workflow from the store (loading resumes an interrupted one), so an
        observer can list what runs without changing it.
        """
        with self._lock:
            return list(self._runs)

    def definition(self, workflow_id: str) -> WorkflowDefinition:
        """What the workflow is made of (its tasks and their dependencies), without loading it to run.

        Raises:
            WorkflowNotFound: no such workflow in memory or in the store.
        """
        with self._lock:
            run = self._runs.get(workflow_id)
        return run.definition if run is not None else self._wstore.definition(workflow_id)

    def recover(self) -> list[Workflow]:
        """Load every unfinished workflow of the store that this engine does not run yet.

        Running ones resume at once: completed tasks are not re-run, tasks
        that were running when the process died run again (with their last
        checkpoint as ``ctx.resume_state``). Paused ones stay paused.
        Register executors before calling this.
        """
        found = []
        for wid in self._wstore.workflow_ids():
            with self._lock:
                if wid in self._runs:
                    continue
            if not self._wstore.snapshot(wid).state.terminal:
                self._run(wid)
                found.append(Workflow(self, wid))
        return found

    # bookkeeping -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.stopping:
            raise SystemShutdown("the workflow engine is shut down")

    def _wait_idle(self, workflow_id: str, timeout: float | None) -> bool:
        run = self._run(workflow_id)
        with self._lock:
            return self._idle.wait_for(lambda: run.running == 0, timeout)

    def _attempt_started(self) -> None:
        with self._lock:
            self._inflight += 1

    def _attempt_ended(self) -> None:
        with self._lock:
            self._inflight -= 1
            self._idle.notify_all()

    def _finished(self, run: WorkflowRun) -> None:
        with self._lock:
            if run.state.terminal and self._runs.get(run.id) is run:
                self._remember_finished(run.id)

    def _remember_finished(self, wid: str) -> None:
        self._finished_order[wid] = None
        self._finished_order.move_to_end(wid)
        while len(self._finished_order) > self.keep_finished:
            old, _ = self._finished_order.popitem(last=False)
            self._runs.pop(old, None)

    def _dead_letter(self, run: WorkflowRun, tid: str, attempts: int, error: BaseException) -> None:
        self._orch.dead_letters.put(
            f"workflow:{run.id}",
            f"task {tid!r} failed after {attempts} attempts",
            attempts=attempts,
            error=error,
            work_id=tid,
            payload={"workflow_id": run.id, "task_id": tid},
        )

    def _resubmit(self, letter: DeadLetter) -> Workflow:
        return self.retry_task(letter.payload["workflow_id"], letter.payload["task_id"])

    def statistics(self) -> EngineStatistics:
        """Workflows in memory by state, tasks in flight, executor threads started."""
        with self._lock:
            counts = collections.Counter(r.state.value for r in self._runs.values())
            return EngineStatistics(dict(counts), self._inflight, self._dispatch.threads)

    def _shutdown(self, timeout: float) -> None:
        """Stop dispatching, cancel running attempts' tokens, wait up to ``timeout`` for them, close.

        Unfinished workflows stay as they are in the store (running ones with
        their running tasks), so :meth:`recover` continues them later.
        """
        with self._lock:
            self.stopping = True
            runs = list(self._runs.values())
        for run in runs:
            for token in run.tokens():
                token.cancel("orchestrator shutting down")
        with self._lock:
            if not self._idle.wait_for(lambda: self._inflight == 0, timeout):
                log.warning("workflow engine: %d task attempts did not stop within %ss; abandoned", self._inflight, timeout)
        self._dispatch.close()
        with self._lock:
            self.closed = True  # late attempt results are dropped from now on (their tasks re-run on recovery)
        if self._owns_store:
            self.store.close()
