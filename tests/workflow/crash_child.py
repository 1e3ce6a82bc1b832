"""Child process for the crash-resume test: `start` runs a workflow until SIGKILLed, `resume` recovers it.

Every executor call appends "<pid> <task> <detail>" to LOG, so the parent can
count how often each task ran across both processes.
"""

import json
import os
import sys
import threading

from laneway import Orchestrator
from laneway.workflow import TaskDefinition

DB, LOG, MODE = sys.argv[1], sys.argv[2], sys.argv[3]


def log(line):
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()} {line}\n")


def fast(ctx):
    log(f"{ctx.task_id} ran")
    return f"{ctx.task_id}-done"


def slow(ctx):
    start = ctx.resume_state or 0
    log(f"{ctx.task_id} start-from {start}")
    for step in range(start + 1, 7):
        ctx.checkpoint(step)
        log(f"{ctx.task_id} step {step}")
        if MODE == "start" and step == 3:
            print("READY", flush=True)
            threading.Event().wait()  # hang here until the parent kills the process
    return f"slow-done-from-{start}"


with Orchestrator(name=f"crash-{MODE}", store=DB) as orch:
    engine = orch.workflows
    engine.register_executor("fast", fast)
    engine.register_executor("slow", slow)
    if MODE == "start":
        T = lambda tid, *deps, agent="fast": TaskDefinition(tid, agent_type=agent, dependencies=list(deps))  # noqa: E731
        engine.create_workflow(
            [T("a"), T("b", "a"), T("d", "a"), T("slow", "b", "d", agent="slow"), T("c", "slow")], workflow_id="wf"
        ).start()
        threading.Event().wait()
    else:
        recovered = engine.recover()
        status = recovered[0].wait(60)
        print(json.dumps({
            "recovered": [w.id for w in recovered],
            "state": status.state.value,
            "results": status.results,
            "tasks": {t: s.state.value for t, s in status.tasks.items()},
        }), flush=True)
