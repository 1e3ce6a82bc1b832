"""Validation of task definitions and graphs: every bad input fails with a typed error naming the culprit."""

import pytest

from laneway.errors import CycleError, WorkflowValidationError
from laneway.lanes import RetryPolicy
from laneway.workflow import TaskDefinition, validate_graph


def T(tid, *deps, **kw):
    return TaskDefinition(tid, agent_type="x", dependencies=list(deps), **kw)


def test_duplicate_ids_are_all_named(engine):
    with pytest.raises(WorkflowValidationError, match="duplicate task ids: a, b"):
        engine.create_workflow([T("a"), T("b"), T("a"), T("b"), T("c")])


def test_unknown_dependencies_name_task_and_dependency():
    with pytest.raises(WorkflowValidationError) as info:
        validate_graph([T("a"), T("b", "a", "ghost"), T("c", "nope")])
    assert "'b' depends on unknown 'ghost'" in str(info.value)
    assert "'c' depends on unknown 'nope'" in str(info.value)


def test_cycle_error_gives_the_path(engine):
    tasks = [T("start"), T("a", "start", "c"), T("b", "a"), T("c", "b"), T("end", "c")]
    with pytest.raises(CycleError) as info:
        engine.create_workflow(tasks)
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert " -> ".join(cycle) in str(info.value)
    # The path follows real edges: each node depends on the next.
    deps = {t.task_id: t.dependencies for t in tasks}
    assert all(nxt in deps[cur] for cur, nxt in zip(cycle, cycle[1:]))
    assert engine.workflow_ids() == [], "an invalid workflow must not be stored"


def test_self_dependency_is_a_cycle():
    with pytest.raises(CycleError, match="a -> a"):
        validate_graph([T("a", "a")])


def test_deep_chain_validates_without_recursion_limit():
    tasks = [T("t0")] + [T(f"t{i}", f"t{i - 1}") for i in range(1, 5000)]
    assert len(validate_graph(tasks)) == 5000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task_id": ""}, "task_id must be a non-empty string"),
        ({"task_id": "a/b"}, "without '/'"),
        ({"agent_type": None}, "needs an agent_type or capabilities"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"retry_policy": 3}, "retry_policy must be"),
        ({"dependencies": [""]}, "dependencies must be non-empty strings"),
        ({"dependencies": 5}, "expected a list of strings"),
        ({"checkpoint_every_s": -1}, "checkpoint_every_s must be > 0"),
    ],
)
def test_bad_task_definitions_raise_typed_errors(kwargs, message):
    args = {"task_id": "t", "agent_type": "x", **kwargs}
    with pytest.raises(WorkflowValidationError, match=message):
        TaskDefinition(args.pop("task_id"), **args)


def test_capabilities_alone_are_enough_and_lists_become_tuples():
    t = TaskDefinition("t", capabilities=["search", "summarize"], dependencies=["a"], retry_policy=RetryPolicy.fixed(2, 0))
    assert t.capabilities == ("search", "summarize") and t.dependencies == ("a",)


def test_empty_and_wrongly_typed_workflows_are_rejected(engine):
    with pytest.raises(WorkflowValidationError, match="at least one task"):
        engine.create_workflow([])
    with pytest.raises(WorkflowValidationError, match="TaskDefinition"):
        engine.create_workflow([{"task_id": "a"}])


def test_workflow_ids_are_unique(engine):
    engine.create_workflow([T("a")], workflow_id="wf")
    with pytest.raises(WorkflowValidationError, match="already exists"):
        engine.create_workflow([T("a")], workflow_id="wf")
