"""Tasks without a local executor run through the router, on agents found by role and capabilities."""

import threading

from laneway.router import AlphaRole
from laneway.workflow import TaskDefinition, TaskState, WorkflowState

from .conftest import WAIT


def test_tasks_route_to_agents_by_capability_and_role_with_the_context(orch, engine):
    seen = []

    def summarizer(payload, ctx):
        seen.append((ctx.task_id, dict(ctx.dependency_results), ctx.workflow_id))
        return f"summary of {payload} + {sorted(ctx.dependency_results.values())}"

    orch.register_agent("sum-1", AlphaRole.COMPRESSOR, {"summarize", "text"}, 2, summarizer)
    orch.register_agent("exec-1", AlphaRole.EXECUTOR, {"text"}, 2, lambda payload: payload.upper())
    engine.register_executor("local", lambda ctx: "from-local")
    wf = engine.create_workflow([
        TaskDefinition("fetch", agent_type="local"),
        TaskDefinition("shout", agent_type="executor", capabilities=["text"], payload="hi", dependencies=["fetch"]),
        TaskDefinition("sum", agent_type="summarize", payload="doc", dependencies=["fetch", "shout"]),
    ])
    status = wf.start().wait(WAIT)
    assert status.state is WorkflowState.COMPLETED, status
    assert status.results == {"fetch": "from-local", "shout": "HI", "sum": "summary of doc + ['HI', 'from-local']"}
    assert seen == [("sum", {"fetch": "from-local", "shout": "HI"}, wf.id)]


def test_no_capable_agent_fails_the_task_and_dead_letters_it(orch, engine):
    status = engine.run([TaskDefinition("t", capabilities=["telepathy"])], timeout=WAIT)
    assert status.tasks["t"].state is TaskState.FAILED and "NoCapableAgent" in status.tasks["t"].error
    assert [x.work_id for x in orch.dead_letters.list(f"workflow:{status.workflow_id}")] == ["t"]


def test_cancelling_the_workflow_cancels_the_agents_token(orch, engine):
    started = threading.Event()

    def patient(payload, ctx):
        started.set()
        ctx.cancel_token.wait(WAIT)
        ctx.cancel_token.raise_if_cancelled()
        return "finished anyway"

    orch.register_agent("patient", AlphaRole.EXECUTOR, {"wait"}, 1, patient)
    wf = engine.create_workflow([TaskDefinition("t", capabilities=["wait"])]).start()
    assert started.wait(WAIT)
    wf.cancel("stop")
    status = wf.wait(WAIT)
    assert status.state is WorkflowState.CANCELLED and status.tasks["t"].state is TaskState.CANCELLED
    assert orch.router.wait_idle(WAIT), "the agent's handler returned after its token was cancelled"
