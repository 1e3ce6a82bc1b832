"""Process-pool throughput: laneway's pool against the stdlib pools, same run, same worker count.

Run: python -m laneway.cli.benchmarks.pool_throughput [--tiny 20000] [--bulk 200000] [--cpu 200] [--rounds 3]

Shapes (see /work/shared/ANCHORS.md): tiny ``x + 1`` tasks on 2 workers, each task
submitted on its own and all gathered (pools warmed, start-up not timed); the same
calls in bulk, through ``map(chunksize=100)`` (``--bulk 0`` skips it); and
CPU-bound pure-Python tasks of about 20 ms on 1 and on 2 workers. Prints the
median tasks/s of each runner and the ratios the issue sets targets for.

Runners are entries of ``TINY_RUNNERS`` / ``CPU_RUNNERS``: a name and a context
manager that starts a pool with N workers and yields ``run(fn, items) -> results``.
Add a backend or a baseline by appending a :class:`Runner`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import multiprocessing
import statistics
import time
from typing import Any, Callable, ContextManager, Iterator

import attrs

from laneway import Orchestrator
from laneway.cli.benchmarks._work import calibrate_spin, inc, spin

RunMany = Callable[[Callable[[Any], Any], list], list]


@attrs.frozen
class Runner:
    """A named way to run tasks: ``start(workers)`` yields ``run(fn, items) -> results``."""

    name: str
    start: Callable[[int], ContextManager[RunMany]]


@contextlib.contextmanager
def laneway_pool(workers: int, **config: Any) -> Iterator[RunMany]:
    orch = Orchestrator(name="bench")
    try:
        pool = orch.start_pool(workers=workers, **config)
        assert pool.wait_ready(timeout=120)

        def run(fn, items):
            futs = [pool.submit(fn, x) for x in items]
            return [f.get(600) for f in futs]

        run.pool = pool  # type: ignore[attr-defined]  # for the bulk runner
        yield run
    finally:
        orch.shutdown()


@contextlib.contextmanager
def laneway_pool_map(workers: int) -> Iterator[RunMany]:
    with laneway_pool(workers) as run:
        yield lambda fn, items: list(run.pool.map(fn, items, chunksize=BULK_CHUNK))  # type: ignore[attr-defined]  # set by laneway_pool


@contextlib.contextmanager
def process_pool_executor_map(workers: int) -> Iterator[RunMany]:
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        yield lambda fn, items: list(ex.map(fn, items, chunksize=BULK_CHUNK))


@contextlib.contextmanager
def process_pool_executor(workers: int) -> Iterator[RunMany]:
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        def run(fn, items):
            futs = [ex.submit(fn, x) for x in items]
            return [f.result() for f in futs]

        yield run


@contextlib.contextmanager
def mp_pool_apply_async(workers: int) -> Iterator[RunMany]:
    with multiprocessing.get_context("spawn").Pool(workers) as mp:
        def run(fn, items):
            results = [mp.apply_async(fn, (x,)) for x in items]
            return [r.get() for r in results]

        yield run


@contextlib.contextmanager
def laneway_pool_on_ray(workers: int) -> Iterator[RunMany]:
    # laneway starts a local Ray of ``workers`` CPUs (not timed) and shuts it down after.
    with laneway_pool(workers, backend="ray", num_cpus=workers, init_options={"log_to_driver": False}) as run:
        yield run


@contextlib.contextmanager
def raw_ray_tasks(workers: int) -> Iterator[RunMany]:
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remotes: dict[Callable, Any] = {}
    try:
        def run(fn, items):
            remote = remotes.get(fn) or remotes.setdefault(fn, ray.remote(fn))
            return ray.get([remote.remote(x) for x in items])

        yield run
    finally:
        ray.shutdown()


TINY_RUNNERS: list[Runner] = [
    Runner("laneway pool (zmq)", laneway_pool),
    Runner("ProcessPoolExecutor submit", process_pool_executor),
    Runner("multiprocessing.Pool apply_async", mp_pool_apply_async),
]
if importlib.util.find_spec("ray") is not None:  # the laneway[ray] extra
    TINY_RUNNERS += [Runner("laneway pool (ray)", laneway_pool_on_ray), Runner("raw @ray.remote tasks", raw_ray_tasks)]

#: Calls per task in the bulk shape.
BULK_CHUNK = 100

BULK_RUNNERS: list[Runner] = [
    Runner("laneway pool map(chunksize=100)", laneway_pool_map),
    Runner("ProcessPoolExecutor map(chunksize=100)", process_pool_executor_map),
]

CPU_RUNNERS: list[Runner] = [
    Runner("laneway pool (zmq)", laneway_pool),
    Runner("ProcessPoolExecutor submit", process_pool_executor),
]


def measure(runner: Runner, workers: int, fn: Callable, items: list, rounds: int) -> float:
    """Median tasks/s over ``rounds`` timed runs on one warmed pool."""
    rates = []
    with runner.start(workers) as run:
        run(fn, items[: max(1, len(items) // 10)])  # warm up: workers started, code shipped
        for _ in range(rounds):
            start = time.perf_counter()
            results = run(fn, items)
            rates.append(len(items) / (time.perf_counter() - start))
            assert len(results) == len(items)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", type=int, default=20_000, help="tiny tasks per round")
    parser.add_argument("--bulk", type=int, default=200_000, help="calls per round through map (0: skip)")
    parser.add_argument("--cpu", type=int, default=200, help="CPU-bound tasks per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(f"tiny tasks: x + 1, 2 workers, {args.tiny} tasks, median of {args.rounds}")
    tiny = {r.name: measure(r, 2, inc, list(range(args.tiny)), args.rounds) for r in TINY_RUNNERS}
    for name, rate in tiny.items():
        print(f"  {name:36s} {rate:10,.0f} tasks/s")
    ours = tiny[TINY_RUNNERS[0].name]
    for r in TINY_RUNNERS[1:]:
        print(f"  {'laneway / ' + r.name:44s} {ours / tiny[r.name]:6.2f}x")
    if "raw @ray.remote tasks" in tiny:
        # Not the Ray target's baseline: laneway batches 16 tasks per actor call and these tasks go one per
        # call. The fair one, raw Ray actors with the same batching, is `pool_ray`.
        ratio = tiny["laneway pool (ray)"] / tiny["raw @ray.remote tasks"]
        print(f"  {'laneway (ray) / raw @ray.remote tasks':44s} {ratio:6.2f}x  (unbatched; see pool_ray)")

    if args.bulk:
        print(f"\nbulk: x + 1 through map(chunksize={BULK_CHUNK}), 2 workers, {args.bulk} calls, "
              f"median of {args.rounds}")
        bulk = {r.name: measure(r, 2, inc, list(range(args.bulk)), args.rounds) for r in BULK_RUNNERS}
        for name, rate in bulk.items():
            print(f"  {name:40s} {rate:12,.0f} calls/s")
        ratio = bulk[BULK_RUNNERS[0].name] / bulk[BULK_RUNNERS[1].name]
        print(f"  {'laneway / ProcessPoolExecutor':40s} {ratio:6.2f}x")

    n = calibrate_spin()
    items = [n] * args.cpu
    print(f"\nCPU-bound: {args.cpu} pure-Python tasks of ~20 ms, 1 vs 2 workers, median of {args.rounds}")
    for r in CPU_RUNNERS:
        one = measure(r, 1, spin, items, args.rounds)
        two = measure(r, 2, spin, items, args.rounds)
        print(f"  {r.name:36s} 1 worker {one:7.1f}/s  2 workers {two:7.1f}/s  speed-up {two / one:5.2f}x")


if __name__ == "__main__":
    main()
