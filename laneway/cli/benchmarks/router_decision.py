"""Routing decision time with many agents (target: < 1 ms per decision with 1,000 agents), same run, same machine.

Run: python -m laneway.cli.benchmarks.router_decision [--agents 1000] [--decisions 20000] [--tasks 5000]

1. Decision: the router's capability index (set intersections, then one pass
   over the eligible survivors by strategy) vs the naive linear scan over
   every agent (check capabilities, role, limit and breaker, then take the
   least busy). Agents have 3-6 of 40 capabilities; tasks need 1-2 of them,
   30% also a role; a quarter of the agents are busy, 2% have an open breaker.
   "broad" is the worst case for the index: every agent has the capability,
   so all 1,000 survive the intersection.
2. End to end: a real Router with that many agents (one breaker actor each)
   running no-op tasks, vs a ThreadPoolExecutor running the same no-op (the
   least machinery that runs a function on another thread and returns it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import random
import time

from laneway import Orchestrator
from laneway.actors import ManualClock
from laneway.breakers import BreakerConfig, BreakerState, CircuitBreaker
from laneway.router import AgentIndex, AgentSlot, AlphaRole, RoutingStrategy, pick

ROLES = list(AlphaRole)


def build_agents(n: int, rng: random.Random, caps: list[str]) -> list[AgentSlot]:
    clock = ManualClock()
    slots = []
    for i in range(n):
        breaker = CircuitBreaker(f"a{i}", BreakerConfig(), clock=clock)
        if rng.random() < 0.02:
            breaker.trip()
        slot = AgentSlot(
            f"a{i}", rng.choice(ROLES), frozenset(rng.sample(caps, rng.randint(3, 6)) + ["broad"]),
            rng.randint(1, 8), seq=i, breaker=breaker,
        )  # fmt: skip
        if rng.random() < 0.25:
            slot.in_flight = rng.randint(1, slot.max_concurrent)
        slot.update_rank()
        slots.append(slot)
    return slots


def naive(slots: list[AgentSlot], need: frozenset[str], role: AlphaRole | None) -> AgentSlot | None:
    best = None
    for s in slots:
        if not need <= s.capabilities or (role is not None and s.role is not role):
            continue
        state = s.breaker.state
        if state is BreakerState.OPEN or s.in_flight >= s.max_concurrent:
            continue
        if best is None or s.in_flight / s.max_concurrent < best.in_flight / best.max_concurrent:
            best = s
    return best


def time_decisions(decide, tasks) -> float:
    start = time.perf_counter()
    for need, role in tasks:
        decide(need, role)
    return (time.perf_counter() - start) / len(tasks) * 1e6


def bench_decision(n_agents: int, n_decisions: int) -> None:
    rng = random.Random(42)
    caps = [f"cap{i}" for i in range(40)]
    slots = build_agents(n_agents, rng, caps)
    index = AgentIndex()
    for slot in slots:
        index.add(slot)
    selective = [
        (frozenset(rng.sample(caps, rng.randint(1, 2))), rng.choice(ROLES) if rng.random() < 0.3 else None)
        for _ in range(n_decisions)
    ]
    broad = [(frozenset({"broad"}), None)] * max(1, n_decisions // 10)
    print(f"decision, {n_agents} agents, {len(caps)} capabilities (µs per decision, lower is better)")
    print(f"  {'workload':<10} {'strategy':<17} {'index':>8} {'naive scan':>11} {'speed-up':>9}")
    for label, tasks in (("selective", selective), ("broad", broad)):
        base = time_decisions(lambda need, role: naive(slots, need, role), tasks)
        for strategy in RoutingStrategy:
            pick_rng = random.Random(1)

            def decide(need, role, strategy=strategy, pick_rng=pick_rng):
                found = index.eligible(need, role)
                return pick(strategy, found, pick_rng) if found else None

            us = time_decisions(decide, tasks)
            verdict = "ok" if us < 1000 else "OVER 1 ms"
            print(f"  {label:<10} {strategy.value:<17} {us:8.1f} {base:11.1f} {base / us:8.1f}x  {verdict}")


def noop(payload):
    return payload


def bench_end_to_end(n_agents: int, n_tasks: int) -> None:
    rng = random.Random(7)
    caps = [f"cap{i}" for i in range(40)]
    with Orchestrator(name="bench", ask_timeout=60) as orch:
        router = orch.start_router(threads=8)
        t0 = time.perf_counter()
        for i in range(n_agents):
            router.register_agent(f"a{i}", rng.choice(ROLES), rng.sample(caps, rng.randint(3, 6)) + ["broad"], 4, noop)
        reg = time.perf_counter() - t0
        needs = [frozenset(rng.sample(caps, 1)) for _ in range(n_tasks)]
        for need in needs[:200]:  # warm up
            router.submit(0, capabilities=need)
        router.wait_idle(60)
        t0 = time.perf_counter()
        futures = [router.submit(i, capabilities=need) for i, need in enumerate(needs)]
        for f in futures:
            f.get(120)
        routed = time.perf_counter() - t0
        t0 = time.perf_counter()
        latencies = []
        for need in needs[:500]:
            t = time.perf_counter()
            router.run(0, capabilities=need)
            latencies.append(time.perf_counter() - t)
        latencies.sort()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        t0 = time.perf_counter()
        for tf in [pool.submit(noop, i) for i in range(n_tasks)]:
            tf.result()
        base = time.perf_counter() - t0
    print(f"end to end, {n_agents} agents (one breaker actor each), {n_tasks} no-op tasks")
    print(f"  registration: {reg / n_agents * 1e3:.2f} ms per agent")
    print(f"  router:  {n_tasks / routed:9.0f} tasks/s  ({routed / n_tasks * 1e6:.0f} µs/task)")
    print(f"  ThreadPoolExecutor baseline: {n_tasks / base:9.0f} tasks/s  -> router at {base / routed:.2f}x of it")
    print(f"  one at a time: p50 {latencies[len(latencies) // 2] * 1e6:.0f} µs, p99 {latencies[int(len(latencies) * 0.99)] * 1e6:.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    bench_decision(args.agents, args.decisions)
    print()
    bench_end_to_end(args.agents, args.tasks)


if __name__ == "__main__":
    main()
