"""The pool's Ray backend against raw Ray actors with the same batching, interleaved in one run.

Run: python -m laneway.cli.benchmarks.pool_ray [--tasks 10000] [--rounds 5] [--base DIR]

Shape (see /work/shared/ANCHORS.md): ``x + 1`` tiny tasks on 2 workers, each task
submitted on its own, then all gathered. The baseline is what a careful Ray
user writes for the same job: 2 Ray actors, the tasks cut into calls of
``batch_size`` tasks, ``max_calls_per_worker`` calls in flight per actor, the
results collected by one ``ray.wait`` loop. Both use the backend's defaults
(16 tasks per call, 4 calls in flight), one Ray session (started here, not
timed), and every result is checked. Rounds alternate the two (A B A B ...),
and the script prints the median and range of the per-round ratios.

``--base DIR`` (before/after in one run): laneway runs in two child processes
(this file run as a script with ``--child``), one importing laneway from this
checkout and one from DIR (``PYTHONPATH``), each a driver on this script's Ray
session with a pool of its own; the raw actors stay here. Rounds take turns
(now, base, raw, now, base, raw, ...), and the script prints each child's ratio
to raw Ray per round and their ratio to each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
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


Runner = Callable[[Callable[[Any], Any], list[Any]], list[Any]]
OURS, RAW = "laneway pool (ray backend)", "raw Ray actors"


def laneway_runner(orch: Orchestrator) -> Runner:
    """``run(fn, items)`` on a 2-worker Ray pool: one submit per item, then every result."""
    pool = orch.start_pool(workers=WORKERS, backend="ray")
    assert pool.wait_ready(timeout=120)

    def run(fn: Callable[[Any], Any], xs: list[Any]) -> list[Any]:
        futures = [pool.submit(fn, x) for x in xs]
        return [f.get(600) for f in futures]

    return run


def timed(name: str, run: Runner, items: list[Any], expected: list[Any]) -> float:
    """Tasks per second of one round of ``run``, its results checked."""
    start = time.perf_counter()
    results = run(inc, items)
    rate = len(items) / (time.perf_counter() - start)
    assert results == expected, f"{name} returned wrong results"
    return rate


def child(address: str, tasks: int) -> None:
    """``--child``: a laneway Ray pool on the parent's Ray; each ``round`` line on stdin answers its rate."""
    import ray

    # The actors' processes must import laneway from this child's tree too: the raylet's workers would
    # otherwise have the parent's PYTHONPATH, and Ray puts the driver's working directory (the tree, see
    # ChildRunner) on their sys.path.
    ray.init(address=address, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    items = list(range(tasks))
    expected = [x + 1 for x in items]
    try:
        with Orchestrator(name="bench") as orch:
            run = laneway_runner(orch)
            assert run(inc, items[:1000]) == expected[:1000]  # warm up: actors started, code shipped
            print("ready", flush=True)
            for line in sys.stdin:
                if line.strip() != "round":
                    break
                print(json.dumps(timed(OURS, run, items, expected)), flush=True)
    finally:
        ray.shutdown()


class ChildRunner:
    """A ``--child`` process whose laneway comes from ``tree``; :meth:`round` runs one timed round there."""

    def __init__(self, tag: str, tree: str, address: str, tasks: int) -> None:
        self.tag, self.tree = tag, tree
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", "--address", address, "--tasks", str(tasks)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=tree), cwd=tree)

    def wait_ready(self) -> None:
        if self.proc.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise SystemExit(f"the {self.tag} child ({self.tree}) did not start")

    def round(self) -> float:
        self.proc.stdin.write("round\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise SystemExit(f"the {self.tag} child ({self.tree}) died")
        return float(json.loads(line))

    def close(self) -> None:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=60)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def versus_raw(rounds: int, items: list[Any], expected: list[Any], batch: int, calls: int) -> dict[str, list[float]]:
    """laneway here and raw Ray actors, interleaved; tasks/s per round of each."""
    with Orchestrator(name="bench") as orch:
        runners = {OURS: laneway_runner(orch), RAW: raw_ray_runner(batch, calls)}
        for run in runners.values():  # warm up: actors started, code shipped
            assert run(inc, items[:1000]) == expected[:1000]
        rates: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(rounds):
            for name, run in runners.items():
                rates[name].append(timed(name, run, items, expected))
    return rates


def versus_base(rounds: int, items: list[Any], expected: list[Any], batch: int, calls: int,
                base: str) -> dict[str, list[float]]:
    """laneway from this checkout and from ``base`` (children) and raw Ray actors (here), taking turns."""
    import ray

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    address = ray.get_runtime_context().gcs_address
    children = [ChildRunner("now", here, address, len(items)),
                ChildRunner("base", os.path.abspath(base), address, len(items))]
    try:
        for c in children:
            c.wait_ready()
        raw = raw_ray_runner(batch, calls)
        assert raw(inc, items[:1000]) == expected[:1000]
        rates: dict[str, list[float]] = {f"{OURS} now": [], f"{OURS} base": [], RAW: []}
        for _ in range(rounds):
            for c in children:
                rates[f"{OURS} {c.tag}"].append(c.round())
            rates[RAW].append(timed(RAW, raw, items, expected))
    finally:
        for c in children:
            c.close()
    return rates


def _ratios(label: str, ours: list[float], theirs: list[float], target: str = "") -> None:
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"  {label:38s} median {statistics.median(ratios):.2f}x  "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x per round{target})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--base", default="", help="a checkout whose laneway runs too, in its own child (before/after)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.address, args.tasks)
        return

    import ray

    os.environ.setdefault("RAY_ADDRESS", "local")
    # Room for every contender's actors (1 CPU each, as Ray counts them); the machine's cores are what they share.
    ray.init(num_cpus=(3 if args.base else 2) * WORKERS, include_dashboard=False, log_to_driver=False)
    defaults = RayBackend()
    batch, calls = defaults.batch_size, defaults.max_calls
    items = list(range(args.tasks))
    expected = [x + 1 for x in items]
    try:
        if args.base:
            rates = versus_base(args.rounds, items, expected, batch, calls, args.base)
        else:
            rates = versus_raw(args.rounds, items, expected, batch, calls)
    finally:
        ray.shutdown()

    print(f"tiny tasks: x + 1, {WORKERS} workers, {args.tasks} submitted one by one, {batch} tasks per call, "
          f"{calls} calls in flight per actor, {args.rounds} interleaved rounds")
    for name, values in rates.items():
        print(f"  {name:38s} median {statistics.median(values):9,.0f} tasks/s  "
              f"(range {min(values):,.0f}-{max(values):,.0f})")
    target = "; target >= 0.8x"
    if args.base:
        _ratios("laneway now / raw Ray actors", rates[f"{OURS} now"], rates[RAW], target)
        _ratios("laneway base / raw Ray actors", rates[f"{OURS} base"], rates[RAW], target)
        _ratios("laneway now / laneway base", rates[f"{OURS} now"], rates[f"{OURS} base"])
    else:
        _ratios("laneway / raw Ray actors", rates[OURS], rates[RAW], target)


if __name__ == "__main__":
    main()
