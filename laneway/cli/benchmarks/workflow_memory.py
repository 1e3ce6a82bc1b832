"""Workflow state memory (target: <= 1 MB per 100 tasks) and scheduling overhead, same run, same machine.

Run: python -m laneway.cli.benchmarks.workflow_memory [--workflows 20] [--tasks 100] [--store memory|file]

Memory: tracemalloc of what the engine keeps for finished workflows (records,
results, progress state, handles), per 100 tasks, excluding the task
definitions the caller built beforehand. Baseline measured in the same run:
a plain ``{task_id: {"state", "attempts", "result"}}`` dict per workflow, the
least any engine could keep. Peak is the high-water mark while running.
Speed: tasks/s through the engine vs calling the same executor in a loop.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

from laneway import Orchestrator
from laneway.workflow import TaskDefinition


def build(n: int, prefix: str) -> list[TaskDefinition]:
    """Layers of 10 tasks, each depending on two tasks of the layer before (fan-out / fan-in)."""
    tasks = []
    for i in range(n):
        deps = [] if i < 10 else [f"{prefix}{i - 10}", f"{prefix}{(i - 9) if (i % 10) != 9 else i - 19}"]
        tasks.append(TaskDefinition(f"{prefix}{i}", agent_type="work", dependencies=deps, payload=i))
    return tasks


def work(ctx) -> int:
    return ctx.payload * 2


def measure_engine(workflows: int, tasks: int, store_path: str | None) -> tuple[float, int, float]:
    orch = Orchestrator(name="bench", store=store_path)
    engine = orch.workflows
    engine.register_executor("work", work)
    engine.run(build(tasks, "warm"), timeout=120)  # imports, threads, caches
    # Speed first, without tracemalloc (it slows Python down several times).
    start = time.perf_counter()
    for h in [engine.create_workflow(build(tasks, f"s{w}-")).start() for w in range(workflows)]:
        assert h.wait(300).succeeded
    elapsed = time.perf_counter() - start
    defs = [build(tasks, f"w{w}-") for w in range(workflows)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    handles = [engine.create_workflow(d).start() for d in defs]
    for h in handles:
        assert h.wait(300).succeeded
    gc.collect()
    after = tracemalloc.take_snapshot()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = sum(s.size_diff for s in after.compare_to(before, "filename"))
    orch.shutdown()
    return kept / (workflows * tasks / 100), peak, workflows * tasks / elapsed


def measure_baseline(workflows: int, tasks: int) -> tuple[float, float]:
    defs = [build(tasks, f"w{w}-") for w in range(workflows)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    start = time.perf_counter()
    kept = [{t.task_id: {"state": "completed", "attempts": 1, "result": work(t)} for t in d} for d in defs]
    elapsed = time.perf_counter() - start
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del kept
    return size / (workflows * tasks / 100), workflows * tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--store", choices=["memory", "file"], default="file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db") if args.store == "file" else None
        per100, peak, rate = measure_engine(args.workflows, args.tasks, path)
    base100, base_rate = measure_baseline(args.workflows, args.tasks)
    print(f"{args.workflows} workflows x {args.tasks} tasks, store={args.store}")
    print(f"engine state kept:   {per100 / 1024:8.1f} KiB per 100 tasks  (target <= 1024 KiB: "
          f"{'OK' if per100 <= 1024 * 1024 else 'OVER'})")
    print(f"plain-dict baseline: {base100 / 1024:8.1f} KiB per 100 tasks  -> engine/baseline {per100 / base100:.1f}x")
    print(f"peak while running:  {peak / 1024:8.1f} KiB for {args.workflows * args.tasks} tasks")
    print(f"throughput:          {rate:8.0f} tasks/s through the engine (each state change persisted); "
          f"bare loop {base_rate:,.0f} calls/s")


if __name__ == "__main__":
    main()
