"""Console overhead on lane throughput: the same lane workload with and without the web console open.

The ``console`` variant starts ``orch.console`` and attaches a page: a separate
client process (a browser is one too) that reads the server-sent event stream
as the page does (``/api/stream?events=``, the page's default, unfiltered
filter) and decodes every snapshot, delta (what changed since the previous
tick) and event batch as JSON, as the page does before rendering. The ``off`` variant has no console. Both run the same lanes,
the same warm-up and the same commands, and every command's result is checked.
Pairs alternate their order (off first, then console first, ...) on fresh
orchestrators, so drift, noise from other processes and whatever a run leaves
behind hit both alike; the ratio console/off of each pair is reported as its
median and range. The goal: the median stays >= 0.9. A console round counts
the updates the page received while the commands ran, and fails if the page
read none in a run longer than three ticks (the console was not updating).

Run: python -m laneway.cli.benchmarks.console_overhead [--commands 30000] [--rounds 8] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import select
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

from laneway import Orchestrator
from laneway.lanes import ToolRegistry

LANES = ("system", "control", "query", "session", "skill", "prompt")
#: Seconds the page process may take to connect, or to answer a count.
PAGE_TIMEOUT_S = 30.0


def noop(x: int) -> int:
    return x


# the page (its own process) ---------------------------------------------------------------------


def page_main(url: str) -> int:
    """Read ``url``'s event stream like the page until stdin closes; answer "count" lines on stdout.

    Prints ``ready`` after the first snapshot, then for each ``count`` line read
    from stdin one line: updates (snapshots and deltas), event batches, events and
    bytes read so far.
    """
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    conn.request("GET", "/api/stream?events=", headers={"X-Laneway-Token": "none"})
    resp = conn.getresponse()
    if resp.status != 200:
        print(f"error HTTP {resp.status}", flush=True)
        return 1
    counts = {"snapshots": 0, "batches": 0, "events": 0, "bytes": 0}
    first = threading.Event()
    failure: list[str] = []

    def read() -> None:
        try:
            read_stream()
        except Exception as exc:  # reported on the next count, so the run fails instead of reading nothing
            failure.append(repr(exc))
            first.set()

    def read_stream() -> None:
        kind, data = "message", []
        while True:
            try:
                line = resp.readline()
            except OSError:
                return
            if not line:
                return
            counts["bytes"] += len(line)
            if line.startswith(b"event: "):
                kind = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                data.append(line[6:])
            elif line == b"\n":
                if data:
                    value = json.loads(b"".join(data))  # what the page's JSON.parse does
                    if kind == "snapshot" or (kind == "delta" and first.is_set()):
                        # A delta holds the sections that changed since the previous tick (lanes do, under load).
                        if not isinstance(value, dict) or (kind == "snapshot" and "lanes" not in value):
                            raise AssertionError(f"a {kind} without lanes: {str(value)[:200]}")
                        counts["snapshots"] += 1
                        first.set()
                    elif kind == "delta":
                        raise AssertionError("a delta before the first snapshot")
                    elif kind == "events":
                        counts["batches"] += 1
                        counts["events"] += len(value)
                kind, data = "message", []

    threading.Thread(target=read, name="page-reader", daemon=True).start()
    if not first.wait(PAGE_TIMEOUT_S):
        print("error no snapshot", flush=True)
        return 1
    print(f"error {failure[0]}" if failure else "ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "count" and failure:
            print(f"error {failure[0]}", flush=True)
        elif line.strip() == "count":
            print(" ".join(str(counts[k]) for k in ("snapshots", "batches", "events", "bytes")), flush=True)
    conn.close()
    return 0


class Page:
    """An open page in its own process, attached to a console's event stream."""

    def __init__(self, url: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "laneway.cli.benchmarks.console_overhead", "--page", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        line = self._line()
        if line != "ready":
            self.close()
            raise AssertionError(f"the page did not attach: {line!r}")

    def _line(self) -> str:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], PAGE_TIMEOUT_S)
        if not ready:
            raise TimeoutError(f"the page process did not answer within {PAGE_TIMEOUT_S}s")
        return self._proc.stdout.readline().strip()

    def counts(self) -> tuple[int, int, int, int]:
        """(updates, event batches, events, bytes) the page read so far."""
        assert self._proc.stdin is not None
        self._proc.stdin.write("count\n")
        self._proc.stdin.flush()
        line = self._line()
        if not line[:1].isdigit():
            raise AssertionError(f"the page failed: {line}")
        snapshots, batches, events, size = (int(x) for x in line.split())
        return snapshots, batches, events, size

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


def console_threads_cpu_s() -> float:
    """CPU seconds used so far by this process' console threads (server loop, calls, monitor); nan if unknown."""
    total = 0.0
    for t in threading.enumerate():
        if "console" not in t.name or t.ident is None:
            continue
        try:
            total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        except (AttributeError, OSError):  # not on this platform, or the thread just ended
            return float("nan")
    return total


# the runs -----------------------------------------------------------------------------------------


def lane_run(variant: str, commands: int) -> tuple[float, float, int, float]:
    """(commands per second, process CPU µs per command, updates the page read while they ran,
    share of the run's time its console threads spent on a CPU)."""
    with Orchestrator(name=f"bench-{variant}", handle_signals=False) as orch:
        lanes = orch.start_lanes(tools=ToolRegistry(), store=None)
        lanes.tools.register(noop, name="noop")
        page = Page(orch.console.start(port=0).url) if variant == "console" else None
        try:
            for h in [lanes.submit(lane, "noop", {"x": 0}) for lane in LANES for _ in range(50)]:
                h.result(timeout=60)  # warm up threads and code paths
            gc.collect()
            before = page.counts()[0] if page is not None else 0
            console_cpu = console_threads_cpu_s()
            cpu, start = time.process_time(), time.perf_counter()
            handles = [lanes.submit(LANES[i % len(LANES)], "noop", {"x": i}) for i in range(commands)]
            for h in handles:
                h.result(timeout=120)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            console_cpu = console_threads_cpu_s() - console_cpu
            seen = page.counts()[0] - before if page is not None else 0
            if page is not None and elapsed > 3 * orch.console.interval_s and not seen:
                raise AssertionError(f"the page read no update in {elapsed:.1f}s: the console was not updating")
        finally:
            if page is not None:
                page.close()
        for i, h in enumerate(handles):
            if h.result(timeout=0) != i:
                raise AssertionError(f"command {i} returned {h.result(timeout=0)!r}")
        return commands / elapsed, cpu / commands * 1e6, seen, console_cpu / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commands", type=int, default=30_000, help="commands per run (default 30000)")
    p.add_argument("--rounds", type=int, default=8, help="pairs, each off and console (default 8)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 5000 commands, 3 pairs")
    p.add_argument("--page", metavar="URL", help=argparse.SUPPRESS)  # the page's own process
    args = p.parse_args(argv)
    if args.page:
        return page_main(args.page)
    commands, rounds = (5000, 3) if args.quick else (args.commands, args.rounds)
    runs: dict[str, list[tuple[float, float, int, float]]] = {"off": [], "console": []}
    for r in range(rounds):
        for variant in (("off", "console") if r % 2 == 0 else ("console", "off")):
            runs[variant].append(lane_run(variant, commands))
    off, on = [x[0] for x in runs["off"]], [x[0] for x in runs["console"]]
    ratios = [b / a for a, b in zip(off, on)]
    print(f"lane throughput, {commands} no-op commands over 6 lanes, {rounds} interleaved pairs (order alternating)")
    for name, rates in (("off", runs["off"]), ("console", runs["console"])):
        rate = [x[0] for x in rates]
        print(f"  {name:8} median {statistics.median(rate):9,.0f} cmd/s  (range {min(rate):,.0f}..{max(rate):,.0f}); "
              f"process CPU {statistics.median(x[1] for x in rates):.1f} µs per command")
    print(f"  the page read {statistics.median(x[2] for x in runs['console']):.0f} updates per run "
          f"while the commands ran; the console's threads used "
          f"{statistics.median(x[3] for x in runs['console']) * 100:.1f} % of a core")
    print(f"  ratio console/off: median {statistics.median(ratios):.3f}, range {min(ratios):.3f}..{max(ratios):.3f} "
          f"(goal >= 0.9)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
