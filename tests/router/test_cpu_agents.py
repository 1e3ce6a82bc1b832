"""CPU-bound agents run their handler on the orchestrator's process pool."""

from __future__ import annotations

import math
import os

import pytest

from laneway.errors import AgentTimeout, RemoteError
from laneway.lanes import RetryPolicy

pytestmark = pytest.mark.multiprocess


def where_and_ctx(payload, ctx=None):
    return (payload, ctx, os.getpid())


def test_cpu_bound_handlers_run_in_worker_processes_with_ctx(orch):
    orch.start_pool(workers=1)
    orch.register_agent("crunch", "optimizer", {"math"}, 2, math.factorial, cpu_bound=True)
    orch.register_agent("where", "executor", {"pid"}, 2, where_and_ctx, cpu_bound=True)
    assert orch.router.run(10, capabilities="math", timeout=60) == 3628800
    payload, ctx, pid = orch.router.run("p", capabilities="pid", context={"wf": 1}, timeout=60)
    assert (payload, ctx) == ("p", {"wf": 1}) and pid != os.getpid()
    assert orch.router.agent("crunch").cpu_bound
    with pytest.raises(RemoteError) as info:
        orch.router.run(-1, capabilities="math", timeout=60, retry=RetryPolicy.none())
    assert info.value.type_name == "builtins.ValueError"
    assert orch.router.agent("crunch").failed == 1


def test_a_cpu_bound_task_past_its_deadline_is_stopped_on_the_pool(orch):
    orch.start_pool(workers=1)
    orch.register_agent("crunch", "optimizer", {"math"}, 1, math.factorial, cpu_bound=True)
    with orch.events.subscribe("agent.task.failed") as sub:
        with pytest.raises(AgentTimeout):
            orch.router.run(10**8, capabilities="math", timeout=0.5, retry=RetryPolicy.none())
        # The pool got the remaining time as its own timeout: it stops the worker, freeing the agent.
        sub.get(timeout=30)
    assert orch.router.agent("crunch").in_flight == 0
    assert orch.router.run(5, capabilities="math", timeout=60) == 120
