"""Failures: allow_failure, skipped dependents with reasons, retries and timeouts on a manual clock, dead letters."""

import threading

import pytest

from laneway.errors import TaskTimeout, WorkflowFailed
from laneway.lanes import RetryPolicy
from laneway.workflow import TaskDefinition, TaskState, WorkflowState

from .conftest import WAIT, Gate


def T(tid, *deps, agent="ok", **kw):
    return TaskDefinition(tid, agent_type=agent, dependencies=list(deps), **kw)


def boom(ctx):
    raise RuntimeError(f"{ctx.task_id} exploded")


@pytest.fixture
def basic(engine):
    engine.register_executor("ok", lambda ctx: ctx.task_id)
    engine.register_executor("boom", boom)
    return engine


def test_failure_skips_dependents_with_reason_and_fails_the_workflow(basic, orch):
    status = basic.run(
        [T("a"), T("bad", "a", agent="boom"), T("child", "bad"), T("grandchild", "child"), T("other", "a")],
        timeout=WAIT,
    )
    assert status.state is WorkflowState.FAILED
    assert status.tasks["bad"].state is TaskState.FAILED and "bad exploded" in status.tasks["bad"].error
    for tid in ("child", "grandchild"):
        assert status.tasks[tid].state is TaskState.SKIPPED
        assert "dependency 'bad' failed" in status.tasks[tid].reason
    assert status.tasks["other"].state is TaskState.COMPLETED, "independent branches still run"
    letters = orch.dead_letters.list(f"workflow:{status.workflow_id}")
    assert [(x.work_id, x.attempts) for x in letters] == [("bad", 1)]
    assert "exploded" in letters[0].error


def test_dead_letter_is_written_before_the_workflow_settles_when_another_thread_ends_it(engine, orch):
    # 'bad' fails on one executor thread; 'other' ends the workflow on another
    # thread while the first is still between its state change and its
    # dead letter. Whoever waits on the workflow must find the letter there.
    gate = Gate()
    engine.register_executor("gate", gate)
    engine.register_executor("boom", boom)
    settled = threading.Event()
    letters_at_settle = []

    def hold_failing_thread(event):
        if event.data["task_id"] == "bad":
            gate.open("other")
            settled.wait(0.5)  # the bug let the workflow settle meanwhile; fixed, it waits for this thread

    orch.events.add_listener(hold_failing_thread, "workflow.task.failed")
    wf = engine.create_workflow([T("bad", agent="boom"), T("other", agent="gate")])

    def on_settled(_future):
        letters_at_settle.extend(orch.dead_letters.list(f"workflow:{wf.id}"))
        settled.set()

    wf.future.add_done_callback(on_settled)
    status = wf.start().wait(WAIT)
    assert status.state is WorkflowState.FAILED and status.tasks["other"].state is TaskState.COMPLETED
    assert [x.work_id for x in letters_at_settle] == ["bad"]


def test_allow_failure_lets_the_workflow_go_on(basic):
    seen = {}

    def after(ctx):
        seen.update(results=dict(ctx.dependency_results), failed=dict(ctx.failed_dependencies))
        return "after"

    basic.register_executor("after", after)
    status = basic.run(
        [T("a"), T("flaky", "a", agent="boom", allow_failure=True), T("after", "a", "flaky", agent="after")],
        timeout=WAIT,
    )
    assert status.state is WorkflowState.COMPLETED
    assert status.tasks["flaky"].state is TaskState.FAILED
    assert status.results == {"a": "a", "after": "after"}
    assert seen["results"] == {"a": "a"} and "flaky exploded" in seen["failed"]["flaky"]


def test_result_raises_workflow_failed_with_status(basic):
    wf = basic.create_workflow([T("bad", agent="boom")]).start()
    with pytest.raises(WorkflowFailed, match="failed") as info:
        wf.result(WAIT)
    assert info.value.status.tasks["bad"].state is TaskState.FAILED


def test_retries_follow_the_policy_on_the_manual_clock(manual_engine, clock):
    calls = []

    def flaky(ctx):
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return "third time"

    manual_engine.register_executor("flaky", flaky)
    policy = RetryPolicy.exponential(3, initial_s=10, max_s=100)
    wf = manual_engine.create_workflow([T("t", agent="flaky", retry_policy=policy)]).start()
    for attempt, delay in ((1, 10), (2, 20)):
        assert clock.wait_for_timers(1, WAIT), "retry timer was never scheduled"
        status = wf.status()
        assert status.tasks["t"].state is TaskState.RETRY_WAIT and status.tasks["t"].attempts == attempt
        clock.advance(delay - 0.5)
        assert wf.status().tasks["t"].state is TaskState.RETRY_WAIT, "retried before its backoff elapsed"
        clock.advance(0.5)
    status = wf.wait(WAIT)
    assert status.succeeded and status.results == {"t": "third time"} and calls == [1, 2, 3]
    assert status.tasks["t"].attempts == 3


def test_no_retry_on_errors_fail_at_once(manual_engine):
    manual_engine.register_executor("boom", boom)
    policy = RetryPolicy.fixed(5, 0, no_retry_on=(RuntimeError,))
    status = manual_engine.run([T("t", agent="boom", retry_policy=policy)], timeout=WAIT)
    assert status.tasks["t"].state is TaskState.FAILED and status.tasks["t"].attempts == 1


def test_timeout_cancels_the_token_and_retries(manual_engine, clock):
    gate = Gate()
    tokens = []

    def slow_then_fast(ctx):
        tokens.append(ctx.cancel_token)
        if ctx.attempt == 1:
            return gate(ctx)  # blocks until cancelled
        return "fast"

    manual_engine.register_executor("slow", slow_then_fast)
    wf = manual_engine.create_workflow([T("t", agent="slow", timeout=5, retry_policy=RetryPolicy.fixed(1, 0))]).start()
    gate.wait_entered(1)
    clock.advance(5)
    status = wf.wait(WAIT)
    assert status.succeeded and status.results == {"t": "fast"}
    assert tokens[0].cancelled and "timed out" in tokens[0].reason
    assert any("attempt 1 failed" in v.note for v in wf.history())


def test_timeout_without_retries_fails_with_task_timed_out(manual_engine, clock):
    gate = Gate()
    manual_engine.register_executor("gate", gate)
    wf = manual_engine.create_workflow([T("t", agent="gate", timeout=2)]).start()
    gate.wait_entered(1)
    clock.advance(2)
    status = wf.wait(WAIT)
    assert status.state is WorkflowState.FAILED
    assert TaskTimeout.__name__ in status.tasks["t"].error


def test_dead_letter_resubmit_reruns_the_failed_task_and_its_skipped_dependents(basic, orch):
    fail = {"on": True}

    def sometimes(ctx):
        if fail["on"]:
            raise RuntimeError("down")
        return "up"

    basic.register_executor("sometimes", sometimes)
    wf = basic.create_workflow([T("a"), T("s", "a", agent="sometimes"), T("after", "s")]).start()
    assert wf.wait(WAIT).state is WorkflowState.FAILED
    (letter,) = orch.dead_letters.list(f"workflow:{wf.id}")
    fail["on"] = False
    orch.dead_letters.resubmit(letter.id)
    status = wf.wait(WAIT)
    assert status.succeeded and status.results == {"a": "a", "s": "up", "after": "after"}
    assert len(orch.dead_letters) == 0


def test_missing_executor_and_router_fails_the_task_not_the_engine(engine):
    status = engine.run([T("t", agent="nobody-home")], timeout=WAIT)
    assert status.state is WorkflowState.FAILED and status.tasks["t"].error
