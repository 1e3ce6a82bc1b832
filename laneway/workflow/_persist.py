"""How workflows live in a :class:`~laneway.store.Store`.

Layout (namespaces):

* ``workflow.definitions`` (key/value): the pickled :class:`WorkflowDefinition`, written once.
* ``workflow.states`` (versioned): one JSON document per state change, small
  and human-readable: the workflow state, a note saying what changed, and per
  task ``[state, attempts, run, error, reason]``. Results are not inlined, so
  a version costs tens of bytes per task whatever the results weigh.
* ``workflow.results`` (key/value): each completed attempt's pickled result,
  keyed ``workflow/task/run``; a version refers to it by ``run`` token, so
  rolling back to any version finds the result that version saw.
* ``workflow.checkpoints`` (key/value): a running task's last checkpoint.

A result and the version that records it commit in one transaction, so a
SIGKILL never leaves a version pointing at a missing result.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import attrs
import cloudpickle

from laneway.errors import StoreError, VersionNotFound, WorkflowError, WorkflowNotFound, WorkflowValidationError
from laneway.store import Store
from laneway.workflow._model import TaskRecord, WorkflowDefinition, WorkflowState, WorkflowVersion

DEFINITIONS = "workflow.definitions"
STATES = "workflow.states"
RESULTS = "workflow.results"
CHECKPOINTS = "workflow.checkpoints"


@attrs.frozen
class Snapshot:
    """One stored version of a workflow's state."""

    version: int
    state: WorkflowState
    tasks: Mapping[str, TaskRecord]
    note: str


def _dumps(what: str, value: Any) -> bytes:
    try:
        return cloudpickle.dumps(value)
    except Exception as exc:
        raise WorkflowError(f"{what} cannot be stored (not picklable): {exc!r}") from exc


class WorkflowStore:
    """Reads and writes workflows in a :class:`~laneway.store.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, definition: WorkflowDefinition, tasks: Mapping[str, TaskRecord]) -> int:
        """Store a new workflow's definition and first version; returns the version (1)."""
        wid = definition.workflow_id
        try:
            blob = cloudpickle.dumps(definition)
        except Exception as exc:
            raise WorkflowValidationError(f"workflow {wid!r} cannot be stored (a payload or variable is not picklable): {exc!r}") from exc
        with self.store.transaction():
            if self.store.get(DEFINITIONS, wid) is not None:
                raise WorkflowValidationError(f"a workflow with id {wid!r} already exists")
            self.store.put(DEFINITIONS, wid, blob)
            return self.write(wid, WorkflowState.CREATED, tasks, "created")

    def write(
        self,
        wid: str,
        state: WorkflowState,
        tasks: Mapping[str, TaskRecord],
        note: str,
        *,
        result: tuple[str, str, bytes] | None = None,
    ) -> int:
        """Append a version; ``result`` is ``(task_id, run, pickled result)`` to store with it."""
        doc = json.dumps(
            {"state": state.value, "note": note, "tasks": {tid: r.to_json() for tid, r in tasks.items()}},
            separators=(",", ":"),
        ).encode()
        with self.store.transaction():
            if result is not None:
                tid, run, blob = result
                self.store.put(RESULTS, f"{wid}/{tid}/{run}", blob)
            return self.store.append_version(STATES, wid, doc)

    @staticmethod
    def pickle_result(task_id: str, value: Any) -> bytes:
        return _dumps(f"the result of task {task_id!r}", value)

    def definition(self, wid: str) -> WorkflowDefinition:
        blob = self.store.get(DEFINITIONS, wid)
        if blob is None:
            raise WorkflowNotFound(f"no workflow {wid!r} in {self.store!r}")
        try:
            return cloudpickle.loads(blob)
        except Exception as exc:
            raise StoreError(f"the stored definition of workflow {wid!r} cannot be read: {exc!r}") from exc

    def snapshot(self, wid: str, version: int | None = None) -> Snapshot:
        """The latest version (or ``version``) of the workflow's state.

        Raises:
            WorkflowNotFound: no such workflow.
            VersionNotFound: no such version.
        """
        try:
            number, blob = self.store.get_version(STATES, wid, version)
        except VersionNotFound:
            if version is None or self.store.get(DEFINITIONS, wid) is None:
                raise WorkflowNotFound(f"no workflow {wid!r} in {self.store!r}") from None
            raise VersionNotFound(f"workflow {wid!r} has no version {version}") from None
        doc = json.loads(blob)
        tasks = {tid: TaskRecord.from_json(row) for tid, row in doc["tasks"].items()}
        return Snapshot(number, WorkflowState(doc["state"]), tasks, doc["note"])

    def result(self, wid: str, tid: str, run: str) -> Any:
        blob = self.store.get(RESULTS, f"{wid}/{tid}/{run}")
        if blob is None:
            raise StoreError(f"result of task {tid!r} (run {run}) of workflow {wid!r} is missing from the store")
        return cloudpickle.loads(blob)

    def history(self, wid: str) -> list[WorkflowVersion]:
        infos = self.store.history(STATES, wid)
        if not infos:
            raise WorkflowNotFound(f"no workflow {wid!r} in {self.store!r}")
        out = []
        for info in infos:
            snap = self.snapshot(wid, info.version)
            out.append(
                WorkflowVersion(info.version, info.ts, snap.state, snap.note, {t: r.state for t, r in snap.tasks.items()})
            )
        return out

    def workflow_ids(self) -> list[str]:
        """Every stored workflow, oldest first."""
        return self.store.versioned_keys(STATES)

    def save_checkpoint(self, wid: str, tid: str, state: Any) -> None:
        self.store.put(CHECKPOINTS, f"{wid}/{tid}", _dumps(f"the checkpoint of task {tid!r}", state))

    def load_checkpoint(self, wid: str, tid: str) -> tuple[bool, Any]:
        """``(True, state)`` if the task has a checkpoint, else ``(False, None)``."""
        blob = self.store.get(CHECKPOINTS, f"{wid}/{tid}")
        return (False, None) if blob is None else (True, cloudpickle.loads(blob))

    def clear_checkpoint(self, wid: str, tid: str) -> None:
        self.store.delete(CHECKPOINTS, f"{wid}/{tid}")
