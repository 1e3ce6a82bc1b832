"""The workflow hooks the cluster uses: ``WorkflowEngine.forget`` and ``TaskContext.idempotency_key``."""

import pytest

from laneway import Orchestrator
from laneway.errors import WorkflowStateError
from laneway.workflow import TaskDefinition, WorkflowEngine, WorkflowState


def test_forget_drops_an_idle_copy_so_get_reads_the_store_again(tmp_path):
    path = str(tmp_path / "wf.db")
    with Orchestrator("a", store=path) as a, Orchestrator("b", store=path) as b:
        keys = []
        a.workflows.register_executor("t", lambda ctx: keys.append(ctx.idempotency_key) or ctx.attempt)
        a.workflows.create_workflow([TaskDefinition("x", agent_type="t")], workflow_id="w1")
        b.workflows.register_executor("t", lambda ctx: keys.append(ctx.idempotency_key) or ctx.attempt)
        assert b.workflows.get("w1").start().wait(timeout=10).state is WorkflowState.COMPLETED
        assert a.workflows.status("w1").state is WorkflowState.CREATED  # the stale copy
        assert a.workflows.forget("w1") is True
        assert a.workflows.status("w1").state is WorkflowState.COMPLETED
        assert a.workflows.forget("nope") is False
        assert keys == ["w1/x"]


def test_forget_refuses_a_running_workflow(tmp_path):
    import threading

    gate = threading.Event()
    with Orchestrator("a", store=str(tmp_path / "wf.db")) as orch:
        engine: WorkflowEngine = orch.workflows
        engine.register_executor("t", lambda ctx: gate.wait(10))
        engine.create_workflow([TaskDefinition("x", agent_type="t")], workflow_id="w1").start()
        with pytest.raises(WorkflowStateError, match="only an idle one can be forgotten"):
            engine.forget("w1")
        gate.set()
        engine.get("w1").wait(timeout=10)
