"""pause / resume / cancel of a running workflow."""

from laneway.errors import Cancelled
from laneway.workflow import TaskDefinition, TaskState, WorkflowState

from .conftest import WAIT, Gate


def T(tid, *deps, agent="gate", **kw):
    return TaskDefinition(tid, agent_type=agent, dependencies=list(deps), **kw)


def test_pause_lets_running_tasks_finish_and_starts_no_new_ones(engine):
    gate = Gate()
    engine.register_executor("gate", gate)
    wf = engine.create_workflow([T("a1"), T("a2"), T("b", "a1", "a2"), T("c", "b")]).start()
    gate.wait_entered(2)
    assert wf.pause() is True
    assert wf.status().state is WorkflowState.PAUSED
    gate.open()  # the running tasks finish while paused
    assert wf.wait_idle(WAIT)
    status = wf.status()
    assert status.tasks_in(TaskState.COMPLETED) == ["a1", "a2"]
    assert status.tasks["b"].state is TaskState.PENDING and sorted(gate.entered) == ["a1", "a2"]
    assert status.state is WorkflowState.PAUSED
    assert wf.resume() is True
    status = wf.wait(WAIT)
    assert status.succeeded and sorted(gate.entered) == ["a1", "a2", "b", "c"]
    notes = [v.note for v in wf.history()]
    assert notes.index("paused") < notes.index("resumed") < notes.index("task b started (attempt 1)")


def test_pause_and_resume_are_idempotent_and_report_it(engine):
    engine.register_executor("ok", lambda ctx: 1)
    wf = engine.create_workflow([T("a", agent="ok")])
    assert wf.pause() is False, "a created workflow is not running"
    status = wf.start().wait(WAIT)
    assert status.succeeded
    assert wf.pause() is False and wf.resume() is False and wf.cancel() is False


def test_cancel_cancels_running_tokens_and_pending_tasks(engine):
    gate = Gate()
    engine.register_executor("gate", gate)
    wf = engine.create_workflow([T("r1"), T("r2"), T("later", "r1")]).start()
    gate.wait_entered(2)
    assert wf.cancel("user pressed stop") is True
    status = wf.wait(WAIT)  # ends only once the running attempts have returned
    assert status.state is WorkflowState.CANCELLED
    assert {t: s.state for t, s in status.tasks.items()} == {
        "r1": TaskState.CANCELLED,
        "r2": TaskState.CANCELLED,
        "later": TaskState.CANCELLED,
    }
    assert "user pressed stop" in status.tasks["later"].reason
    assert Cancelled.__name__ in status.tasks["r1"].error
    assert sorted(gate.entered) == ["r1", "r2"]


def test_cancel_of_a_paused_workflow(engine):
    gate = Gate()
    engine.register_executor("gate", gate)
    wf = engine.create_workflow([T("a"), T("b", "a")]).start()
    gate.wait_entered(1)
    wf.pause()
    gate.open()
    assert wf.wait_idle(WAIT)
    assert wf.cancel()
    status = wf.wait(WAIT)
    assert status.state is WorkflowState.CANCELLED
    assert status.tasks["a"].state is TaskState.COMPLETED and status.tasks["b"].state is TaskState.CANCELLED


def test_cancelled_workflow_progress_stream_ends_with_error(engine):
    gate = Gate()
    engine.register_executor("gate", gate)
    wf = engine.create_workflow([T("a")]).start()
    events = wf.progress.subscribe()
    gate.wait_entered(1)
    wf.cancel()
    kinds = [e.kind.value for e in events]
    assert kinds[-1] == "error"
