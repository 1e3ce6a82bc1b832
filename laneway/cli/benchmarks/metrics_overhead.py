"""Metrics overhead on lane throughput: the same lane workload with and without ``orch.metrics``.

a3s-lane claims 3-5 % overhead for its metrics; this measures ours in the same
run on the same machine. Three variants run in alternating rounds (so drift
and noise from other processes hit each alike) and the median of each is kept:

* ``off``: no one listens to the event bus (lanes skip building event data).
* ``listener``: a no-op listener on ``queue.`` events (the event bus' own cost).
* ``metrics``: ``orch.metrics`` counting every command and recording its latency.

Then a micro-benchmark of the metrics listener alone: ns per published event.

Run: python -m laneway.cli.benchmarks.metrics_overhead [--commands 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from laneway import Orchestrator
from laneway.lanes import ToolRegistry
from laneway.observe import Counter, Scope

LANES = ("system", "control", "query", "session", "skill", "prompt")
EVENTS_PER_COMMAND = 3  # queue.command.submitted, .started, .completed


def noop(x: int) -> int:
    return x


def lane_run(variant: str, commands: int) -> float:
    """Commands per second for one fresh, pre-warmed lane manager."""
    with Orchestrator(name=f"bench-{variant}") as orch:
        if variant == "metrics":
            orch.metrics
        elif variant == "listener":
            orch.events.add_listener(lambda e: None, "queue")
        lanes = orch.start_lanes(tools=ToolRegistry(), store=None)
        lanes.tools.register(noop, name="noop")
        for h in [lanes.submit(lane, "noop", {"x": 0}) for lane in LANES for _ in range(50)]:
            h.result(timeout=60)  # warm up threads and code paths
        start = time.perf_counter()
        handles = [lanes.submit(LANES[i % len(LANES)], "noop", {"x": i}) for i in range(commands)]
        for h in handles:
            h.result(timeout=120)
        elapsed = time.perf_counter() - start
        if variant == "metrics":
            assert orch.metrics.snapshot().total(Scope.LANE, Counter.COMPLETED) >= commands
        return commands / elapsed


def listener_cost(events: int) -> tuple[float, float]:
    """ns per publish of a completed-command event: bus with a no-op listener, and with metrics."""
    out = []
    for variant in ("listener", "metrics"):
        with Orchestrator(name="bench-events") as orch:
            if variant == "metrics":
                orch.metrics
            else:
                orch.events.add_listener(lambda e: None, "queue")
            publish = orch.events.publish
            start = time.perf_counter()
            for i in range(events):
                publish("queue.command.completed", "prompt", command_id="c", caller="default", latency_s=0.001)
            out.append((time.perf_counter() - start) / events * 1e9)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()

    variants = ("off", "listener", "metrics")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else reversed(variants):
            rates[v].append(lane_run(v, args.commands))
    med = {v: statistics.median(rates[v]) for v in variants}
    print(f"lane throughput, {args.commands} no-op commands over the 6 default lanes, median of {args.rounds} rounds")
    print(f"{'variant':10s} {'ops/s':>10s} {'vs off':>8s}   rounds")
    for v in variants:
        spread = " ".join(f"{x:,.0f}" for x in rates[v])
        print(f"{v:10s} {med[v]:10,.0f} {med[v] / med['off']:8.3f}   {spread}")
    overhead = 100 * (1 - med["metrics"] / med["off"])
    print(f"metrics overhead on lane throughput: {overhead:.1f} % (a3s-lane claims 3-5 %)")
    bus, metrics = listener_cost(args.events)
    per_command_us = 1e6 / med["off"]
    listener_us = EVENTS_PER_COMMAND * max(0.0, metrics - bus) / 1000
    print(f"per event: bus + no-op listener {bus:,.0f} ns, bus + metrics {metrics:,.0f} ns "
          f"(metrics listener itself ~{metrics - bus:,.0f} ns)")  # fmt: skip
    print(f"estimate, robust to noise: {EVENTS_PER_COMMAND} events per command x {metrics - bus:,.0f} ns = "
          f"{listener_us:.2f} us of a {per_command_us:.1f} us command = {100 * listener_us / per_command_us:.1f} % "
          f"(metrics proper; emitting the events costs the lanes the 'listener' row's difference)")  # fmt: skip

if __name__ == "__main__":
    main()
