"""Actor ask/tell latency and throughput: laneway vs raw pykka, same run, same machine.

Run: python -m laneway.cli.benchmarks.actor_ask [--n 20000]
Prints asks/s, p50/p99 latency and tells/s for both, and laneway's ratio to pykka.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import pykka

from laneway import Orchestrator
from laneway.actors import Actor


class PykkaEcho(pykka.ThreadingActor):
    def on_receive(self, message):
        return message


class Echo(Actor):
    def on_receive(self, message):
        return message


def measure_ask(ask, n: int) -> tuple[float, float, float]:
    lat = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        ask(i)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    lat.sort()
    return n / total, statistics.median(lat) * 1e6, lat[int(len(lat) * 0.99)] * 1e6


def measure_tell(tell: Callable[[int], Any], flush: Callable[[], Any], n: int) -> float:
    """Tells per second: ``n`` calls of ``tell``, then ``flush`` (which returns once all were handled)."""
    start = time.perf_counter()
    for i in range(n):
        tell(i)
    flush()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    pref = PykkaEcho.start()
    orch = Orchestrator(name="bench")
    lref = orch.spawn(Echo, name="echo")
    rows: dict[str, list[tuple[float, ...]]] = {"pykka": [], "laneway": []}
    try:
        for _ in range(args.rounds):
            ask_p = measure_ask(lambda m: pref.ask(m), args.n)
            tell_p = measure_tell(pref.tell, lambda: pref.ask("flush"), args.n * 5)
            rows["pykka"].append((*ask_p, tell_p))
            ask_l = measure_ask(lambda m: lref.ask(m, timeout=10), args.n)
            tell_l = measure_tell(lref.tell, lambda: lref.ask("flush", timeout=60), args.n * 5)
            rows["laneway"].append((*ask_l, tell_l))
    finally:
        pref.stop()
        orch.shutdown()

    med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
    print(f"{'':10} {'asks/s':>10} {'p50 µs':>8} {'p99 µs':>8} {'tells/s':>10}   (median of {args.rounds} rounds)")
    for k, (rate, p50, p99, tells) in med.items():
        print(f"{k:10} {rate:10.0f} {p50:8.1f} {p99:8.1f} {tells:10.0f}")
    p, lw = med["pykka"], med["laneway"]
    print(f"laneway/pykka: asks/s {lw[0] / p[0]:.2f}x, p50 {lw[1] / p[1]:.2f}x, tells/s {lw[3] / p[3]:.2f}x")


if __name__ == "__main__":
    main()
