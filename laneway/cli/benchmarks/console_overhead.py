"""Console overhead on lane throughput: the same lane workload with and without the web console open.

The ``console`` variant starts ``orch.console`` and attaches a browser-like
client: one thread reading the server-sent event stream (every snapshot and
every event, unfiltered), as an open page does. The ``off`` variant has no
console. Rounds alternate A B A B on fresh orchestrators, so drift and noise
from other processes hit both alike; the ratio console/off of each pair is
reported as its median and range. The goal: the median stays >= 0.9.

Run: python -m laneway.cli.benchmarks.console_overhead [--commands 5000] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
import urllib.parse

from laneway import Orchestrator
from laneway.lanes import ToolRegistry

LANES = ("system", "control", "query", "session", "skill", "prompt")


def noop(x: int) -> int:
    return x


class StreamReader:
    """Reads the console's event stream like an open page, until stopped."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2.0)
        self._conn.request("GET", "/api/stream", headers={"X-Laneway-Token": "none"})
        self._resp = self._conn.getresponse()
        assert self._resp.status == 200, self._resp.status
        self.snapshots = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sse-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                line = self._resp.readline()
            except TimeoutError:
                continue
            except OSError:
                return
            if not line:
                return
            self.bytes += len(line)
            if line.startswith(b"event: snapshot"):
                self.snapshots += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()


def lane_run(variant: str, commands: int) -> tuple[float, int]:
    """(commands per second, snapshots the client read) for one fresh, pre-warmed lane manager."""
    with Orchestrator(name=f"bench-{variant}", handle_signals=False) as orch:
        lanes = orch.start_lanes(tools=ToolRegistry(), store=None)
        lanes.tools.register(noop, name="noop")
        reader = None
        if variant == "console":
            reader = StreamReader(orch.console.start(port=0).url)
        for h in [lanes.submit(lane, "noop", {"x": 0}) for lane in LANES for _ in range(50)]:
            h.result(timeout=60)  # warm up threads and code paths
        start = time.perf_counter()
        handles = [lanes.submit(LANES[i % len(LANES)], "noop", {"x": i}) for i in range(commands)]
        for h in handles:
            h.result(timeout=120)
        elapsed = time.perf_counter() - start
        snapshots = 0
        if reader is not None:
            snapshots = reader.snapshots
            reader.close()
        return commands / elapsed, snapshots


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commands", type=int, default=20_000, help="commands per round (default 20000)")
    p.add_argument("--rounds", type=int, default=5, help="A/B pairs (default 5)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2000 commands, 2 pairs")
    args = p.parse_args(argv)
    commands, rounds = (2000, 2) if args.quick else (args.commands, args.rounds)
    off: list[float] = []
    on: list[float] = []
    reads: list[int] = []
    for _ in range(rounds):
        off.append(lane_run("off", commands)[0])
        rate, snapshots = lane_run("console", commands)
        on.append(rate)
        reads.append(snapshots)
    ratios = [b / a for a, b in zip(off, on)]
    print(f"lane throughput, {commands} no-op commands over 6 lanes, {rounds} interleaved A/B pairs")
    print(f"  off      median {statistics.median(off):9,.0f} cmd/s  (range {min(off):,.0f}..{max(off):,.0f})")
    print(f"  console  median {statistics.median(on):9,.0f} cmd/s  (range {min(on):,.0f}..{max(on):,.0f}); "
          f"the page read {statistics.median(reads):.0f} snapshots per round")
    print(f"  ratio console/off: median {statistics.median(ratios):.3f}, range {min(ratios):.3f}..{max(ratios):.3f} "
          f"(goal >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
