"""Each DAG shape runs in dependency order, with results flowing to dependents and bounded parallelism."""

import random
import threading

from laneway.workflow import TaskDefinition, TaskState, WorkflowState

from .conftest import WAIT, Gate


def T(tid, *deps, agent="rec", **kw):
    return TaskDefinition(tid, agent_type=agent, dependencies=list(deps), **kw)


class Recorder:
    """Executor that records start/finish order and returns the sum of its inputs plus its payload."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []
        self.running = 0
        self.max_running = 0

    def __call__(self, ctx):
        with self.lock:
            self.events.append(("start", ctx.task_id))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return (ctx.payload or 0) + sum(ctx.dependency_results.values())
        finally:
            with self.lock:
                self.running -= 1
                self.events.append(("end", ctx.task_id))

    def order(self, kind="start"):
        return [t for k, t in self.events if k == kind]


def test_sequential_runs_in_order_and_passes_results(engine):
    rec = Recorder()
    engine.register_executor("rec", rec)
    status = engine.run([T("a", payload=1), T("b", "a", payload=10), T("c", "b", payload=100)], timeout=WAIT)
    assert status.state is WorkflowState.COMPLETED
    assert rec.order() == ["a", "b", "c"]
    assert status.results == {"a": 1, "b": 11, "c": 111}
    assert rec.max_running == 1


def test_parallel_tasks_overlap_up_to_the_limit(engine):
    gate = Gate()
    engine.register_executor("gate", gate)
    wf = engine.create_workflow([T(f"p{i}", agent="gate") for i in range(6)], max_parallel_tasks=3).start()
    gate.wait_entered(3)
    assert len(wf.status().tasks_in(TaskState.RUNNING)) == 3, "exactly max_parallel_tasks run at once"
    assert len(gate.entered) == 3
    gate.open()
    status = wf.wait(WAIT)
    assert status.state is WorkflowState.COMPLETED and len(gate.entered) == 6


def test_diamond_fans_out_and_joins(engine):
    gate = Gate()
    order = []
    engine.register_executor("gate", gate)
    engine.register_executor("step", lambda ctx: order.append(ctx.task_id) or sorted(ctx.dependency_results.values()))
    wf = engine.create_workflow(
        [T("root", agent="step"), T("left", "root", agent="gate"), T("right", "root", agent="gate"),
         T("join", "left", "right", agent="step")]
    ).start()
    gate.wait_entered(2)  # both branches run at the same time
    assert sorted(gate.entered) == ["left", "right"]
    assert wf.status().tasks["join"].state is TaskState.PENDING
    gate.open("left")
    assert wf.status().tasks["join"].state is TaskState.PENDING
    gate.open("right")
    status = wf.wait(WAIT)
    assert status.results["join"] == ["left", "right"]
    assert order == ["root", "join"]


def test_join_sees_every_dependency_result(engine):
    seen = {}

    def join(ctx):
        seen.update(ctx.dependency_results)
        return len(ctx.dependency_results)

    engine.register_executor("rec", Recorder())
    engine.register_executor("join", join)
    status = engine.run(
        [T("root", payload=1), T("l", "root", payload=2), T("r", "root", payload=3), T("j", "l", "r", agent="join")],
        timeout=WAIT,
    )
    assert seen == {"l": 3, "r": 4} and status.results["j"] == 2


def test_random_dag_respects_every_edge(engine):
    rnd = random.Random(7)
    tasks = []
    for i in range(40):
        deps = rnd.sample([t.task_id for t in tasks], k=min(len(tasks), rnd.randint(0, 3)))
        tasks.append(T(f"t{i}", *deps, payload=1))
    rng_order = tasks[:]
    rnd.shuffle(rng_order)  # definition order must not matter
    rec = Recorder()
    engine.register_executor("rec", rec)
    status = engine.run(rng_order, timeout=WAIT, max_parallel_tasks=4)
    assert status.state is WorkflowState.COMPLETED
    ends = {t: i for i, (k, t) in enumerate(rec.events) if k == "end"}
    starts = {t: i for i, (k, t) in enumerate(rec.events) if k == "start"}
    for t in tasks:
        for d in t.dependencies:
            assert ends[d] < starts[t.task_id], f"{t.task_id} started before its dependency {d} ended"
    assert rec.max_running <= 4


def test_context_carries_definition_ids_variables_and_attempt(engine):
    captured = {}

    def look(ctx):
        captured.update(
            task=ctx.task, wid=ctx.workflow_id, vars=dict(ctx.variables), attempt=ctx.attempt, payload=ctx.payload
        )
        return "ok"

    engine.register_executor("look", look)
    task = T("only", agent="look", payload={"q": 1})
    wf = engine.create_workflow([task], variables={"lang": "en"}, name="ctx")
    status = wf.start().wait(WAIT)
    assert status.succeeded and status.name == "ctx"
    assert captured == {"task": task, "wid": wf.id, "vars": {"lang": "en"}, "attempt": 1, "payload": {"q": 1}}


def test_async_executors_run(engine):
    async def double(ctx):
        return 2 * ctx.payload

    engine.register_executor("double", double)
    assert engine.run([T("a", agent="double", payload=21)], timeout=WAIT).results == {"a": 42}
