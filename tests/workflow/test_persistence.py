"""Versioned state: history, rollback, shutdown/crash recovery (SIGKILL across processes), checkpoints."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from laneway import Orchestrator
from laneway.actors import ManualClock
from laneway.errors import VersionNotFound, WorkflowNotFound, WorkflowStateError
from laneway.workflow import TaskDefinition, TaskState, WorkflowState

from .conftest import WAIT, Gate

HERE = Path(__file__).parent


def T(tid, *deps, agent="ok", **kw):
    return TaskDefinition(tid, agent_type=agent, dependencies=list(deps), **kw)


def test_every_state_change_is_a_version_with_a_note(engine):
    engine.register_executor("ok", lambda ctx: ctx.task_id)
    wf = engine.create_workflow([T("a"), T("b", "a")])
    wf.start().wait(WAIT)
    history = wf.history()
    assert [v.version for v in history] == list(range(1, len(history) + 1))
    assert [v.note for v in history] == [
        "created",
        "started",
        "task a started (attempt 1)",
        "task a completed",
        "task b started (attempt 1)",
        "task b completed",
        "completed",
    ]
    assert history[3].tasks == {"a": TaskState.COMPLETED, "b": TaskState.PENDING}
    assert history[-1].state is WorkflowState.COMPLETED and wf.status().version == history[-1].version


def test_rollback_restores_an_earlier_version_and_reruns_from_there(engine):
    runs = Counter()

    def count(ctx):
        runs[ctx.task_id] += 1
        return f"{ctx.task_id}#{runs[ctx.task_id]}"

    engine.register_executor("ok", count)
    wf = engine.create_workflow([T("a"), T("b", "a"), T("c", "b")])
    wf.start().wait(WAIT)
    after_a = next(v for v in wf.history() if v.note == "task a completed")
    status = wf.rollback(after_a.version)
    assert status.state is WorkflowState.PAUSED, "a version taken while running comes back paused"
    assert {t: s.state for t, s in status.tasks.items()} == {
        "a": TaskState.COMPLETED,
        "b": TaskState.PENDING,
        "c": TaskState.PENDING,
    }
    assert status.results == {"a": "a#1"}
    assert wf.history()[-1].note == f"rolled back to version {after_a.version}"
    wf.resume()
    final = wf.wait(WAIT)
    assert final.results == {"a": "a#1", "b": "b#2", "c": "c#2"}, "a is not re-run; b and c are"


def test_rollback_to_a_finished_version_and_back_keeps_the_results_of_that_version(engine):
    runs = Counter()

    def count(ctx):
        runs[ctx.task_id] += 1
        return runs[ctx.task_id]

    engine.register_executor("ok", count)
    wf = engine.create_workflow([T("a")])
    first_end = wf.start().wait(WAIT).version
    wf.rollback(1)  # back to "created"
    assert wf.status().state is WorkflowState.CREATED
    assert wf.start().wait(WAIT).results == {"a": 2}
    restored = wf.rollback(first_end)
    assert restored.state is WorkflowState.COMPLETED and restored.results == {"a": 1}
    assert wf.wait(WAIT).results == {"a": 1}


def test_rollback_is_refused_while_tasks_run(engine):
    gate = Gate()
    engine.register_executor("gate", gate)
    wf = engine.create_workflow([T("a", agent="gate")]).start()
    gate.wait_entered(1)
    with pytest.raises(WorkflowStateError, match="pause it and wait"):
        wf.rollback(1)
    wf.pause()
    with pytest.raises(WorkflowStateError):
        wf.rollback(1)  # paused, but a task still runs
    gate.open()
    assert wf.wait_idle(WAIT)
    wf.rollback(1)
    with pytest.raises(VersionNotFound):
        wf.rollback(999)
    with pytest.raises(WorkflowNotFound):
        engine.history("no-such-workflow")


def test_shutdown_mid_run_then_recover_in_a_new_orchestrator_with_checkpoint(tmp_path):
    """Auto-checkpoints (manual clock), a graceful shutdown mid-task, and recovery from the same file."""
    db = tmp_path / "wf.db"
    clock = ManualClock()
    orch = Orchestrator(name="first", store=db, clock=clock)
    gate = Gate()

    def long_task(ctx):
        ctx.update_state({"pages": 41})
        return gate(ctx)

    orch.workflows.register_executor("ok", lambda ctx: "quick")
    orch.workflows.register_executor("long", long_task)
    wf = orch.workflows.create_workflow([T("a"), T("long", "a", agent="long", checkpoint_every_s=30), T("z", "long")])
    wid = wf.start().id
    gate.wait_entered(1)
    assert clock.wait_for_timers(1, WAIT)
    clock.advance(30)  # the periodic checkpoint saves {"pages": 41}
    orch.shutdown(timeout=WAIT)  # cancels the token; the task is left "running" in the store
    assert gate.entered == ["long"]

    resumed = []
    with Orchestrator(name="second", store=db) as orch2:
        engine = orch2.workflows
        engine.register_executor("ok", lambda ctx: resumed.append(ctx.task_id) or "again")
        engine.register_executor("long", lambda ctx: resumed.append((ctx.task_id, ctx.resume_state)) or "long-done")
        (handle,) = engine.recover()
        assert handle.id == wid
        status = handle.wait(WAIT)
    assert status.succeeded
    assert resumed == [("long", {"pages": 41}), "z"], "a is not re-run; long resumes from its checkpoint"
    assert status.results == {"a": "quick", "long": "long-done", "z": "again"}


def test_explicit_checkpoint_is_cleared_when_the_task_completes(engine):
    def saver(ctx):
        ctx.checkpoint({"step": 2})
        return ctx.has_checkpoint

    engine.register_executor("saver", saver)
    wf = engine.create_workflow([T("s", agent="saver")])
    assert wf.start().wait(WAIT).results == {"s": False}
    assert engine._wstore.load_checkpoint(wf.id, "s") == (False, None)


@pytest.mark.multiprocess
@pytest.mark.chaos
def test_sigkilled_workflow_resumes_in_a_new_process(tmp_path, store_location):
    db, log = store_location, str(tmp_path / "runs.log")
    # Keep the caller's PYTHONPATH too: it may point at the checkout under test (a worktree).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "crash_child.py"), db, log, "start"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "READY", "child did not reach the slow task"
        child.send_signal(signal.SIGKILL)
        assert child.wait(WAIT) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    out = subprocess.run(
        [sys.executable, str(HERE / "crash_child.py"), db, log, "resume"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["recovered"] == ["wf"] and report["state"] == "completed"
    assert report["results"] == {"a": "a-done", "b": "b-done", "d": "d-done", "slow": "slow-done-from-3", "c": "c-done"}
    lines = [line.split(" ", 1) for line in Path(log).read_text().splitlines()]
    pids = list(dict.fromkeys(pid for pid, _ in lines))
    assert len(pids) == 2
    first, second = ([text for pid, text in lines if pid == p] for p in pids)
    assert sorted(first) == sorted(["a ran", "b ran", "d ran", "slow start-from 0", "slow step 1", "slow step 2", "slow step 3"])
    assert second == ["slow start-from 3", "slow step 4", "slow step 5", "slow step 6", "c ran"], (
        "finished tasks must not re-run; the interrupted one resumes from its checkpoint"
    )


def test_finished_workflows_beyond_keep_finished_are_read_back_from_the_store(tmp_path):
    with Orchestrator(name="evict", store=tmp_path / "e.db") as orch:
        from laneway.workflow import WorkflowEngine

        engine = WorkflowEngine(orch, keep_finished=2)
        engine.register_executor("ok", lambda ctx: ctx.workflow_id)
        handles = [engine.create_workflow([T("a")]) for _ in range(4)]
        for h in handles:
            h.start().wait(WAIT)
        assert sum(engine.statistics().workflows.values()) == 2, "only the 2 newest stay in memory"
        oldest = handles[0]
        assert oldest.wait(WAIT).results == {"a": oldest.id}, "an evicted workflow is read back, already settled"
        assert oldest.progress.result(WAIT) == {"a": oldest.id}
        assert engine.workflow_ids() == [h.id for h in handles]
