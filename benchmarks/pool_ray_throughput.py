"""Tiny tasks (x -> x + 1) on Ray: laneway's pool on the Ray backend vs raw ``@ray.remote`` tasks.

Run: python benchmarks/pool_ray_throughput.py [--n 10000] [--rounds 3]
Same run, same local Ray (num_cpus=2): raw Ray tasks, then a laneway pool of 2 Ray actor
workers; start-up is not timed (pools warmed). Prints tasks/s (median of rounds) and the
ratio laneway/raw (target >= 0.8x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import ray

from laneway import Orchestrator


def inc(x):
    return x + 1


def raw_ray(n: int) -> float:
    remote_inc = ray.remote(inc)
    ray.get([remote_inc.remote(i) for i in range(200)])  # warm the worker processes
    start = time.perf_counter()
    results = ray.get([remote_inc.remote(i) for i in range(n)])
    rate = n / (time.perf_counter() - start)
    assert results[-1] == n
    return rate


def laneway_on_ray(n: int, window: int) -> float:
    orch = Orchestrator(name="bench-ray")
    try:
        pool = orch.start_pool(backend="ray", workers=2, window=window, max_queue=max(n, 10_000))
        assert pool.wait_ready(2, timeout=120)
        for f in [pool.submit(inc, i) for i in range(200)]:  # warm: functions shipped, windows grown
            f.get(timeout=60)
        start = time.perf_counter()
        futures = [pool.submit(inc, i) for i in range(n)]
        results = [f.get(timeout=300) for f in futures]
        rate = n / (time.perf_counter() - start)
        assert results[-1] == n
        return rate
    finally:
        orch.shutdown(timeout=30)  # frees the actors' CPUs for the next raw round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=16, help="the pool's per-worker window")
    args = parser.parse_args()

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"ray.init: {time.perf_counter() - t:.1f}s (not timed below)")
    rows: dict[str, list[float]] = {"raw @ray.remote": [], "laneway on Ray": []}
    try:
        for _ in range(args.rounds):
            rows["raw @ray.remote"].append(raw_ray(args.n))
            rows["laneway on Ray"].append(laneway_on_ray(args.n, args.window))
    finally:
        ray.shutdown()
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{'':18} {'tasks/s':>10}   ({args.n} tasks x -> x+1, 2 CPUs, median of {args.rounds} rounds)")
    for k, v in med.items():
        print(f"{k:18} {v:10.0f}   rounds: {', '.join(f'{r:.0f}' for r in rows[k])}")
    ratio = med["laneway on Ray"] / med["raw @ray.remote"]
    print(f"laneway on Ray / raw Ray tasks: {ratio:.2f}x (target >= 0.8x)")


if __name__ == "__main__":
    main()
