"""Validation of a workflow's task graph: duplicate ids, unknown dependencies, cycles."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from laneway.errors import CycleError, WorkflowValidationError
from laneway.workflow._model import TaskDefinition


def validate_graph(tasks: Iterable[TaskDefinition]) -> dict[str, TaskDefinition]:
    """Check the task graph and return the tasks by id, in definition order.

    Raises:
        WorkflowValidationError: no tasks, a non-TaskDefinition, duplicate ids
            (all of them named) or dependencies on unknown tasks (every pair named).
        CycleError: the dependencies form a cycle; the message and ``cycle``
            give the path, e.g. ``a -> b -> c -> a``.

    Example:
        >>> validate_graph([TaskDefinition("a", agent_type="x", dependencies=["a"])])
        Traceback (most recent call last):
        ...
        laneway.errors.CycleError: workflow has a dependency cycle: a -> a
    """
    tasks = list(tasks)
    if not tasks:
        raise WorkflowValidationError("a workflow needs at least one task")
    wrong = [repr(t) for t in tasks if not isinstance(t, TaskDefinition)]
    if wrong:
        raise WorkflowValidationError(f"tasks must be TaskDefinition instances, got {', '.join(wrong)}")
    by_id: dict[str, TaskDefinition] = {}
    duplicates: list[str] = []
    for t in tasks:
        if t.task_id in by_id and t.task_id not in duplicates:
            duplicates.append(t.task_id)
        by_id[t.task_id] = t
    if duplicates:
        raise WorkflowValidationError(f"duplicate task ids: {', '.join(duplicates)}")
    unknown = [f"{t.task_id!r} depends on unknown {d!r}" for t in tasks for d in t.dependencies if d not in by_id]
    if unknown:
        raise WorkflowValidationError("unknown dependencies: " + "; ".join(unknown))
    cycle = find_cycle({tid: t.dependencies for tid, t in by_id.items()})
    if cycle:
        path = " -> ".join(cycle)
        raise CycleError(f"workflow has a dependency cycle: {path}", tuple(cycle))
    return by_id


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """A cycle in the dependency graph as a path whose first node is repeated at the end; [] if none.

    Iterative depth-first search (no recursion limit on deep chains); the path
    follows dependency edges, so ``a -> b`` reads "a depends on b".
    """
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    for root in deps:
        if color[root] != white:
            continue
        path: list[str] = [root]
        stack = [iter(deps[root])]
        color[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                color[path.pop()] = black
                stack.pop()
            elif color[nxt] == grey:
                return path[path.index(nxt) :] + [nxt]
            elif color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                stack.append(iter(deps[nxt]))
    return []


def descendants(deps: Mapping[str, Sequence[str]], roots: Iterable[str]) -> set[str]:
    """Every task that depends, directly or not, on one of ``roots`` (roots excluded)."""
    dependents: dict[str, list[str]] = {tid: [] for tid in deps}
    for tid, ds in deps.items():
        for d in ds:
            dependents[d].append(tid)
    seen: set[str] = set()
    todo = [c for r in roots for c in dependents[r]]
    while todo:
        tid = todo.pop()
        if tid not in seen:
            seen.add(tid)
            todo.extend(dependents[tid])
    return seen
