"""The console's operations: each one calls a subsystem's public API and is published as an event.

An operation is named ``<subject>.<verb>`` and takes a JSON object of
arguments. :func:`run_operation` checks the arguments, runs the call, and
publishes ``console.operation`` (``op``, ``args``, ``ok``, ``result`` or
``error``) on the system's bus, whether it succeeded or not, so an audit
listener sees every action taken from a browser.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping

import attrs

from laneway.errors import ConfigError, ConsoleOperationError, LanewayError

if TYPE_CHECKING:
    from laneway.console._target import ConsoleTarget

log = logging.getLogger(__name__)

EVENT_KEY = "console.operation"


@attrs.frozen
class OperationSpec:
    """One operation: its name, its arguments (name -> type) and what it does."""

    name: str
    args: Mapping[str, type]
    doc: str
    fn: Callable[..., Any] = attrs.field(repr=False)


def _lanes(t: ConsoleTarget) -> Any:
    lanes = t.started_lanes()
    if lanes is None:
        raise ConsoleOperationError("lanes are not started in this system")
    return lanes


def _router(t: ConsoleTarget) -> Any:
    router = t.started_router()
    if router is None:
        raise ConsoleOperationError("the router is not started in this system")
    return router


def _workflows(t: ConsoleTarget) -> Any:
    engine = t.started_workflows()
    if engine is None:
        raise ConsoleOperationError("workflows are not started in this system")
    return engine


def _describe(result: Any) -> Any:
    if result is None or isinstance(result, (bool, int, float, str)):
        return result
    for attr in ("command_id", "workflow_id", "id"):
        value = getattr(result, attr, None)
        if isinstance(value, str):
            return {attr: value}
    return repr(result)[:200]


def _purge(t: ConsoleTarget, letter_id: str) -> bool:
    t.dead_letters.remove(letter_id)
    return True


def _breaker(t: ConsoleTarget, agent_id: str, verb: str) -> str:
    breaker = _router(t).breaker(agent_id)
    getattr(breaker, verb)()
    return str(breaker.state.value)


OPERATIONS: dict[str, OperationSpec] = {
    spec.name: spec
    for spec in (
        OperationSpec("lane.pause", {"lane": str}, "start nothing more from the lane",
                      lambda t, lane: _lanes(t).pause(lane)),
        OperationSpec("lane.resume", {"lane": str}, "undo lane.pause", lambda t, lane: _lanes(t).resume(lane)),
        OperationSpec("lane.set_max_concurrency", {"lane": str, "n": int}, "change the lane's max concurrency",
                      lambda t, lane, n: _lanes(t).set_max_concurrent(lane, n)),
        OperationSpec("command.cancel", {"command_id": str}, "cancel a queued or running command",
                      lambda t, command_id: _lanes(t).cancel(command_id, "cancelled from the console")),
        OperationSpec("dead_letter.resubmit", {"letter_id": str}, "run the dead-lettered work again",
                      lambda t, letter_id: t.dead_letters.resubmit(letter_id)),
        OperationSpec("dead_letter.purge", {"letter_id": str}, "delete the letter", _purge),
        OperationSpec("workflow.pause", {"workflow_id": str}, "start no new tasks",
                      lambda t, workflow_id: _workflows(t).pause(workflow_id)),
        OperationSpec("workflow.resume", {"workflow_id": str}, "continue a paused workflow",
                      lambda t, workflow_id: _workflows(t).resume(workflow_id)),
        OperationSpec("workflow.cancel", {"workflow_id": str}, "cancel the workflow",
                      lambda t, workflow_id: _workflows(t).cancel(workflow_id, "cancelled from the console")),
        OperationSpec("workflow.rollback", {"workflow_id": str, "version": int},
                      "restore a stored version (as paused when it was running)",
                      lambda t, workflow_id, version: _workflows(t).rollback_workflow(workflow_id, version).version),
        OperationSpec("breaker.trip", {"agent_id": str}, "open the agent's circuit now",
                      lambda t, agent_id: _breaker(t, agent_id, "trip")),
        OperationSpec("breaker.reset", {"agent_id": str}, "close the agent's circuit and forget its failures",
                      lambda t, agent_id: _breaker(t, agent_id, "reset")),
    )
}


def _checked_args(spec: OperationSpec, args: Any) -> dict[str, Any]:
    wanted = ", ".join(f"{k} ({v.__name__})" for k, v in spec.args.items())
    if not isinstance(args, Mapping):
        raise ConsoleOperationError(f"operation {spec.name} takes a JSON object with {wanted}; got {args!r}")
    unknown = sorted(set(args) - set(spec.args))
    missing = sorted(set(spec.args) - set(args))
    if unknown or missing:
        raise ConsoleOperationError(
            f"operation {spec.name} takes {wanted}; missing {missing or 'none'}, unknown {unknown or 'none'}"
        )
    for key, kind in spec.args.items():
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, kind) or (kind is str and not value):
            raise ConsoleOperationError(f"operation {spec.name}: {key} must be a non-empty {kind.__name__}, got {value!r}")
    return dict(args)


def run_operation(target: ConsoleTarget, op: str, args: Any) -> Any:
    """Run operation ``op`` with ``args`` on ``target`` and publish it as ``console.operation``.

    Returns:
        A JSON-able description of the result.

    Raises:
        ConsoleOperationError: unknown operation or bad arguments (names what is accepted).
        LanewayError, LookupError: what the subsystem raised (unknown lane, letter, agent...).
    """
    spec = OPERATIONS.get(op)
    if spec is None:
        raise ConsoleOperationError(f"unknown operation {op!r}; known: {', '.join(sorted(OPERATIONS))}")
    try:
        checked = _checked_args(spec, args)
    except ConsoleOperationError as exc:
        target.events.publish(EVENT_KEY, target.name, op=op, args=args, ok=False, error=str(exc))
        raise
    try:
        result = _describe(spec.fn(target, **checked))
    except (LanewayError, LookupError, ConfigError) as exc:
        target.events.publish(EVENT_KEY, target.name, op=op, args=checked, ok=False, error=str(exc))
        raise
    log.info("console operation %s %s -> %r", op, checked, result)
    target.events.publish(EVENT_KEY, target.name, op=op, args=checked, ok=True, result=result)
    return result
