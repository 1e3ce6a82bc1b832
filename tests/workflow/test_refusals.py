"""A refused or failed control call leaves the workflow as it was, and it runs on."""

import pytest

from laneway.errors import StoreError, WorkflowStateError
from laneway.workflow import TaskDefinition, TaskState, WorkflowState

from .conftest import WAIT, Gate


def T(tid, *deps, agent="gate", **kw):
    return TaskDefinition(tid, agent_type=agent, dependencies=list(deps), **kw)


def _blocked_chain(engine):
    gate = Gate()
    engine.register_executor("gate", gate)
    wf = engine.create_workflow([T("h"), T("h2", "h")]).start()
    gate.wait_entered(1)
    return gate, wf


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(lambda engine, wf: wf.rollback(1), id="rollback"),
        pytest.param(lambda engine, wf: wf.start(), id="start-again"),
        pytest.param(lambda engine, wf: engine.retry_task(wf.id, "h2"), id="retry-pending-task"),
        pytest.param(lambda engine, wf: engine.retry_task(wf.id, "nope"), id="retry-unknown-task"),
    ],
)
def test_a_refused_call_does_not_wedge_the_workflow(engine, refused):
    gate, wf = _blocked_chain(engine)
    before = wf.status()
    with pytest.raises(WorkflowStateError):
        refused(engine, wf)
    assert wf.status() == before, "a refused call changed the workflow"
    gate.open()
    status = wf.wait(WAIT)
    assert status.succeeded and status.results == {"h": "h", "h2": "h2"}
    assert gate.entered == ["h", "h2"]


class _FailingWrites:
    """Wraps the engine's workflow store so the next ``write`` raises a StoreError."""

    def __init__(self, wstore):
        self._wstore = wstore
        self.armed = False

    def __getattr__(self, name):
        return getattr(self._wstore, name)

    def write(self, *args, **kwargs):
        if self.armed:
            self.armed = False
            raise StoreError("disk full (simulated)")
        return self._wstore.write(*args, **kwargs)


def test_a_call_that_fails_half_way_leaves_state_unchanged_and_the_workflow_runs_on(engine):
    engine.register_executor("ok", lambda ctx: ctx.task_id)
    engine.register_executor("boom", lambda ctx: 1 / 0)
    wf = engine.create_workflow([T("a", agent="boom"), T("b", "a", agent="ok")]).start()
    failed = wf.wait(WAIT)
    assert failed.state is WorkflowState.FAILED
    engine.register_executor("boom", lambda ctx: "fixed")
    faulty = engine._wstore = _FailingWrites(engine._wstore)
    faulty.armed = True
    with pytest.raises(StoreError):
        engine.retry_task(wf.id, "a")
    assert wf.status() == failed, "the failed retry left the workflow half-changed"
    assert wf.future.done()
    status = engine.retry_task(wf.id, "a").wait(WAIT)
    assert status.succeeded and status.results == {"a": "fixed", "b": "b"}


def test_a_failed_rollback_leaves_state_unchanged(engine):
    engine.register_executor("ok", lambda ctx: ctx.task_id)
    wf = engine.create_workflow([T("a", agent="ok"), T("b", "a", agent="ok")]).start()
    done = wf.wait(WAIT)
    faulty = engine._wstore = _FailingWrites(engine._wstore)
    faulty.armed = True
    versions = len(wf.history())
    with pytest.raises(StoreError):
        wf.rollback(1)
    assert wf.status() == done and len(wf.history()) == versions
    assert wf.future.done() and wf.wait(WAIT) == done
    restored = wf.rollback(1)
    assert restored.state is WorkflowState.CREATED
    assert all(t.state is TaskState.PENDING for t in restored.tasks.values())
