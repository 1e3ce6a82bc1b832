"""Worker replacement: time from SIGKILLing a pool worker to a ready replacement.

Run: python -m laneway.cli.benchmarks.worker_replacement [--kills 20] [--workers 2] [--gap 1.0] [--backend zmq]

Kills one worker at a time (round the slots), then polls ``pool.workers()`` until
that slot shows a new pid in a state that takes tasks; runs one task on the
pool before the next kill (so each replacement did work, as in a real pool), then
waits ``--gap`` seconds. The pool runs with its default supervision (20 kills,
about one a second, stay under its intensity). Prints every replacement time,
then the median and the range.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time

from laneway import Orchestrator
from laneway.cli.benchmarks._work import inc
from laneway.pool import WorkerState

_TAKING = (WorkerState.IDLE, WorkerState.BUSY)


def measure(kills: int, workers: int, gap: float, backend: str) -> list[float]:
    """Seconds from each SIGKILL to a ready replacement in the killed worker's slot."""
    times: list[float] = []
    with Orchestrator(name="bench-replace") as orch:
        pool = orch.start_pool(backend=backend, workers=workers)
        assert pool.wait_ready(timeout=120), pool.workers()
        for i in range(kills):
            target = pool.workers()[i % workers]
            if target.state not in _TAKING or not target.pid:
                raise RuntimeError(f"worker {target.name} is not ready before kill {i + 1}: {target}")
            start = time.perf_counter()
            os.kill(target.pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while True:
                now = {w.name: w for w in pool.workers()}
                w = now.get(target.name)
                if w is not None and w.pid and w.pid != target.pid and w.state in _TAKING:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no replacement for {target.name} within 60s: {list(now.values())}")
                time.sleep(0.002)
            times.append(time.perf_counter() - start)
            assert pool.submit(inc, i).result(timeout=60) == i + 1
            time.sleep(gap)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between a replacement's task and the next kill")
    parser.add_argument("--backend", default="zmq")
    args = parser.parse_args(argv)
    times = measure(args.kills, args.workers, args.gap, args.backend)
    print("replacement times (s):", " ".join(f"{t:.3f}" for t in times))
    print(f"kills={len(times)} workers={args.workers} backend={args.backend}: median {statistics.median(times):.3f}s, "
          f"range {min(times):.3f}-{max(times):.3f}s")


if __name__ == "__main__":
    main()
