"""The pool's Ray backend against raw Ray actors with the same batching, interleaved in one run.

Run: python -m laneway.cli.benchmarks.pool_ray [--tasks 10000] [--rounds 5]

Shape (see /work/shared/ANCHORS.md): ``x + 1`` tiny tasks on 2 workers, each task
submitted on its own, then all gathered. The baseline is what a careful Ray
user writes for the same job: 2 Ray actors, the tasks cut into calls of
``batch_size`` tasks, ``max_calls_per_worker`` calls in flight per actor, the
results collected by one ``ray.wait`` loop. Both use the backend's defaults
(16 tasks per call, 4 calls in flight), one Ray session (started here, not
timed), and every result is checked. Rounds alternate the two (A B A B ...),
and the script prints the median and range of the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

from laneway import Orchestrator
from laneway.cli.benchmarks.pool_throughput import inc
from laneway.pool.ray import RayBackend

WORKERS = 2


class _Batches:
    """The raw Ray worker: runs one call's tasks and returns their results."""

    def run(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        return [fn(x) for x in items]


def raw_ray_runner(batch: int, calls: int) -> Callable[[Callable[[Any], Any], list[Any]], list[Any]]:
    """``run(fn, items)`` on 2 raw Ray actors: ``batch`` items per call, ``calls`` calls in flight per actor."""
    import ray

    remote_class: Any = ray.remote(num_cpus=1)(_Batches)
    actors = [remote_class.remote() for _ in range(WORKERS)]
    ray.get([a.run.remote(inc, [0]) for a in actors])

    def run(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        chunks = [items[i:i + batch] for i in range(0, len(items), batch)]
        results: list[Any] = [None] * len(chunks)
        pending: dict[Any, tuple[int, Any]] = {}
        next_chunk = 0

        def send(actor: Any) -> None:
            nonlocal next_chunk
            if next_chunk < len(chunks):
                pending[actor.run.remote(fn, chunks[next_chunk])] = (next_chunk, actor)
                next_chunk += 1

        for actor in actors:
            for _ in range(calls):
                send(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index, actor = pending.pop(ref)
                results[index] = ray.get(ref)
                send(actor)
        return [r for chunk in results for r in chunk]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import ray

    os.environ.setdefault("RAY_ADDRESS", "local")
    # Room for both contenders' actors (1 CPU each, as Ray counts them); the machine's cores are what they share.
    ray.init(num_cpus=2 * WORKERS, include_dashboard=False, log_to_driver=False)
    defaults = RayBackend()
    batch, calls = defaults.batch_size, defaults.max_calls
    items = list(range(args.tasks))
    expected = [x + 1 for x in items]
    try:
        with Orchestrator(name="bench") as orch:
            pool = orch.start_pool(workers=WORKERS, backend="ray")
            assert pool.wait_ready(timeout=120)

            def laneway(fn: Callable[[Any], Any], xs: list[Any]) -> list[Any]:
                futures = [pool.submit(fn, x) for x in xs]
                return [f.get(600) for f in futures]

            runners = {"laneway pool (ray backend)": laneway, "raw Ray actors": raw_ray_runner(batch, calls)}
            for run in runners.values():  # warm up: actors started, code shipped
                assert run(inc, items[:1000]) == expected[:1000]
            rates: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(args.rounds):
                for name, run in runners.items():
                    start = time.perf_counter()
                    results = run(inc, items)
                    rates[name].append(len(items) / (time.perf_counter() - start))
                    assert results == expected, f"{name} returned wrong results"
    finally:
        ray.shutdown()

    print(f"tiny tasks: x + 1, {WORKERS} workers, {args.tasks} submitted one by one, {batch} tasks per call, "
          f"{calls} calls in flight per actor, {args.rounds} interleaved rounds")
    for name, values in rates.items():
        print(f"  {name:28s} median {statistics.median(values):9,.0f} tasks/s  "
              f"(range {min(values):,.0f}-{max(values):,.0f})")
    ours, theirs = rates["laneway pool (ray backend)"], rates["raw Ray actors"]
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"  laneway / raw Ray actors     median {statistics.median(ratios):.2f}x  "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x per round; target >= 0.8x)")


if __name__ == "__main__":
    main()
