"""Lane throughput and latency: laneway lanes vs a ThreadPoolExecutor (and a3s-lane, raw asks), same run.

Against ``ThreadPoolExecutor(28)`` (28 = the six default lanes' slots), always run first, runners
interleaved (laneway, executor, laneway, executor, ...) for --rounds rounds, every result checked;
prints each round's ratio, the median and the range:
  * burst: 10,000 no-op commands round-robin over the 6 default lanes, submit all then wait all,
    vs ``executor.submit(noop, i)`` for the same 10,000 (ratio: laneway ops/s / executor ops/s);
  * sequential: ``lanes.call`` one at a time, p50 latency, vs ``executor.submit(noop, i).result()``
    (ratio: laneway p50 / executor p50).

With --all, also (a3s-lane's benchmark shapes, see /work/shared/ANCHORS.md):
  * 100 no-op commands round-robin over 10 lanes (priority i, min 1, max 10), and over 1 lane;
    a3s-lane's submit blocks, so 100 threads keep them in flight; laneway's submit returns a
    handle, so one thread submits all 100 then waits for them.
  * 1,000 no-op commands round-robin over the 6 default lanes (system, control, query, session,
    skill, prompt: ``orch.start_lanes()`` / ``PyLane()`` as they come), same drivers as above.
  * steady state: 4 submitter threads, each submitting batches of 100 and waiting, 20,000 in all.
  * latency: sequential submit-and-wait, one at a time; raw laneway and pykka asks for reference.
Managers are built and warmed before timing. Medians of --rounds rounds. Each runner's timing
starts after a full garbage collection (not timed), for every runner alike: the collector takes
about a third of either runner's time in a 10,000-command burst, and a full collection (~25 ms,
a tenth of a burst) falls due about once per burst, in whichever round the survivors of the
runner before it tipped it over; collecting first, each runner pays for its own objects only.

``--base DIR`` (before/after in one run): the two shapes run in two child processes, one
importing laneway from this checkout and one from DIR (this file run as a script with
``--child``, ``PYTHONPATH`` set); each child measures laneway and its own executor, and the
children take turns round by round, the first of a round alternating (here, base; base, here;
...), so both sets of ratios come from the same interleaved run.

Eleven rounds by default: a round's burst ratio swings between ~0.8x and ~1.7x on this machine,
mostly with the executor (its threads convoy in some rounds and not in others), so a median of
five moves by ~0.1x between runs minutes apart.

Run: python -m laneway.cli.benchmarks.lanes_throughput [--rounds 11] [--all] [--skip-a3s] [--base DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from laneway.cli.benchmarks.actor_ask import Echo, PykkaEcho, measure_ask  # the raw-ask baselines

from laneway import Orchestrator
from laneway.lanes import LaneConfig, ToolRegistry


def noop(x: int = 0) -> int:
    return x


def ten_lanes() -> list[LaneConfig]:
    return [LaneConfig(f"lane{i}", priority=i, min_concurrency=1, max_concurrency=10, pressure_threshold=None)
            for i in range(10)]


DEFAULTS = ["system", "control", "query", "session", "skill", "prompt"]  # the default lanes, both libraries


def laneway_manager(orch: Orchestrator, configs: list[LaneConfig] | None):
    tools = ToolRegistry()
    tools.register(noop, name="noop")
    return orch.start_lanes(lanes=configs, tools=tools, store=None)


def burst_laneway(lanes, names: list[str], n: int) -> float:
    start = time.perf_counter()
    handles = [lanes.submit(names[i % len(names)], "noop", {"x": i}) for i in range(n)]
    for h in handles:
        h.result(timeout=60)
    return n / (time.perf_counter() - start)


def burst_threads(submit: Callable[[int], object], n: int, threads: int) -> float:
    """n blocking submits kept in flight by ``threads`` threads; returns ops/s."""
    barrier = threading.Barrier(threads + 1)
    per = n // threads

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(per):
            submit(k * per + i)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in ts:
        t.join()
    return per * threads / (time.perf_counter() - start)


def steady_laneway(lanes, names: list[str], total: int, submitters: int, batch: int = 100) -> float:
    def one(k: int) -> None:
        handles = [lanes.submit(names[(k + i) % len(names)], "noop", {"x": i}, caller=f"c{k % 4}") for i in range(batch)]
        for h in handles:
            h.result(timeout=60)

    return burst_threads(one, total // batch, submitters) * batch


latency = measure_ask  # (call, n) -> (ops/s, p50 µs, p99 µs), one call at a time


def median_of(rounds: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(rounds))


BURST = 10_000
SEQUENTIAL = 2_000


def burst_checked(submit: Callable[[int], Any], result: Callable[[Any], object], n: int) -> float:
    """Submit n no-ops, then wait for each; every result must be its input. Returns ops/s."""
    gc.collect()  # see the module's docstring: no runner pays for the one before it
    start = time.perf_counter()
    pending = [submit(i) for i in range(n)]
    values = [result(p) for p in pending]
    took = time.perf_counter() - start
    bad = [i for i, v in enumerate(values) if v != i]
    if bad:
        raise AssertionError(f"{len(bad)} wrong results, first at {bad[0]}: {values[bad[0]]!r}")
    return n / took


def p50_checked(call: Callable[[int], object], n: int) -> float:
    """Median seconds of n sequential calls; every result must be its input."""
    gc.collect()
    lat = []
    for i in range(n):
        t = time.perf_counter()
        v = call(i)
        lat.append(time.perf_counter() - t)
        if v != i:
            raise AssertionError(f"call {i} returned {v!r}")
    return statistics.median(lat)


class ExecutorRound:
    """Laneway (the six default lanes: 28 slots) and ThreadPoolExecutor(28) in this process, warmed."""

    def __init__(self) -> None:
        self.orch = Orchestrator(name="bench-tpe")
        self.lanes = laneway_manager(self.orch, None)
        self.pool = ThreadPoolExecutor(28)
        self.run()  # warm: threads started, code paths hot

    def run(self) -> dict[str, float]:
        """One round, runners alternating: burst ops/s and sequential p50 seconds, laneway's and the executor's."""
        lanes, pool = self.lanes, self.pool
        out = {"burst_lw": burst_checked(lambda i: lanes.submit(DEFAULTS[i % 6], "noop", {"x": i}),
                                         lambda h: h.result(timeout=60), BURST),
               "burst_tp": burst_checked(lambda i: pool.submit(noop, i), lambda f: f.result(60), BURST),
               "seq_lw": p50_checked(lambda i: lanes.call("query", "noop", {"x": i}), SEQUENTIAL),
               "seq_tp": p50_checked(lambda i: pool.submit(noop, i).result(60), SEQUENTIAL)}
        return out

    def close(self) -> None:
        self.pool.shutdown()
        self.orch.shutdown()


def _report(tag: str, rounds: list[dict[str, float]]) -> tuple[list[float], list[float]]:
    burst = [r["burst_lw"] / r["burst_tp"] for r in rounds]
    seq = [r["seq_lw"] / r["seq_tp"] for r in rounds]
    print(f"{tag}burst {BURST:,} over the 6 default lanes, laneway/executor ops/s: median {statistics.median(burst):.2f}x "
          f"(range {min(burst):.2f}..{max(burst):.2f}; target >= 1.0)")
    print(f"{tag}sequential call p50, laneway/executor: median {statistics.median(seq):.2f}x "
          f"(range {min(seq):.2f}..{max(seq):.2f}; target <= 1.2)")
    return burst, seq


def _print_round(tag: str, k: int, r: dict[str, float]) -> None:
    a, b, c, d = r["burst_lw"], r["burst_tp"], r["seq_lw"], r["seq_tp"]
    print(f"{tag}round {k + 1}: burst laneway {a:,.0f}/s executor {b:,.0f}/s ratio {a / b:.2f}x; "
          f"sequential p50 laneway {c * 1e6:.1f} us executor {d * 1e6:.1f} us ratio {c / d:.2f}x")


def versus_executor(rounds: int) -> None:
    """The two shapes against ThreadPoolExecutor(28), interleaved, ratios per round."""
    bench = ExecutorRound()
    try:
        results = []
        for k in range(rounds):
            results.append(bench.run())
            _print_round("", k, results[-1])
        _report("", results)
    finally:
        bench.close()


def child() -> None:
    """``--child``: one warmed ExecutorRound; each ``round`` line on stdin answers one JSON line."""
    bench = ExecutorRound()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() != "round":
                break
            print(json.dumps(bench.run()), flush=True)
    finally:
        bench.close()


def versus_base(rounds: int, base: str) -> None:
    """The two shapes in a child on this checkout and one on ``base``, taking turns round by round."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    trees = {"now": here, "base": os.path.abspath(base)}
    children = {}
    for tag, tree in trees.items():
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=tree))
        children[tag] = proc
    try:
        for tag, proc in children.items():
            if proc.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise SystemExit(f"the {tag} child ({trees[tag]}) did not start")
        results: dict[str, list[dict[str, float]]] = {tag: [] for tag in children}
        order = list(children.items())
        for k in range(rounds):
            # Which child goes first alternates (A B, B A, ...), so that neither always runs in the
            # wake of the other's round.
            for tag, proc in (order if k % 2 == 0 else order[::-1]):
                proc.stdin.write("round\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                line = proc.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise SystemExit(f"the {tag} child ({trees[tag]}) died")
                results[tag].append(json.loads(line))
                _print_round(f"[{tag}] ", k, results[tag][-1])
        ratios = {tag: _report(f"[{tag}] ", rs) for tag, rs in results.items()}
        (nb, ns), (bb, bs) = ratios["now"], ratios["base"]
        print(f"now/base, per round: burst ratio median {statistics.median(n / b for n, b in zip(nb, bb)):.2f}x, "
              f"sequential p50 ratio median {statistics.median(n / b for n, b in zip(ns, bs)):.2f}x")
    finally:
        for proc in children.values():
            try:
                proc.stdin.close()  # type: ignore[union-attr]
                proc.wait(timeout=60)
            except Exception:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--all", action="store_true", help="also the a3s-lane shapes and raw asks")
    parser.add_argument("--skip-a3s", action="store_true")
    parser.add_argument("--base", default="", help="a checkout whose laneway runs too, in its own child (before/after)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    r = args.rounds
    print(f"laneway lanes vs ThreadPoolExecutor(28), {r} interleaved rounds (2-core machine, shared)")
    if args.base:
        versus_base(r, args.base)
    else:
        versus_executor(r)
    if not args.all:
        return
    rows: dict[str, dict[str, float]] = {}

    orch10 = Orchestrator(name="bench10")
    orch1 = Orchestrator(name="bench1")
    lanes10 = laneway_manager(orch10, ten_lanes())
    lanes1 = laneway_manager(orch1, [LaneConfig("only", priority=0, min_concurrency=1, max_concurrency=10,
                                                pressure_threshold=None)])
    orch6 = Orchestrator(name="bench6")
    lanes6 = laneway_manager(orch6, None)  # None: the six default lanes
    names10 = [f"lane{i}" for i in range(10)]
    for _ in range(3):  # warm: threads started, code paths hot
        burst_laneway(lanes10, names10, 200)
        burst_laneway(lanes1, ["only"], 200)
        burst_laneway(lanes6, DEFAULTS, 1000)
    lw: dict[str, float] = {}
    lw["100 over 10 lanes"] = median_of(r, lambda: burst_laneway(lanes10, names10, 100))
    lw["100 over 1 lane"] = median_of(r, lambda: burst_laneway(lanes1, ["only"], 100))
    lw["1000 over 6 defaults"] = median_of(r, lambda: burst_laneway(lanes6, DEFAULTS, 1000))
    lw["100 over 10, 100 threads"] = median_of(
        r, lambda: burst_threads(lambda i: lanes10.call(names10[i % 10], "noop", {"x": i}), 100, 100))
    lw["steady 20k, 4 submitters"] = median_of(r, lambda: steady_laneway(lanes10, names10, 20_000, 4))
    ops, p50, p99 = latency(lambda i: lanes10.call("lane3", "noop", {"x": i}), 5000)
    lw["sequential submit+wait"] = ops
    rows["laneway lanes"] = lw
    lat_rows = {"laneway lanes": (p50, p99)}
    orch10.shutdown()
    orch1.shutdown()
    orch6.shutdown()

    orch = Orchestrator(name="bench-ask")
    ref = orch.spawn(Echo, name="echo")
    ops, p50, p99 = latency(lambda i: ref.ask(i, timeout=10), 20_000)
    rows["laneway raw ask"] = {"sequential submit+wait": ops}
    lat_rows["laneway raw ask"] = (p50, p99)
    orch.shutdown()
    pref = PykkaEcho.start()
    ops, p50, p99 = latency(lambda i: pref.ask(i), 20_000)
    rows["pykka ask"] = {"sequential submit+wait": ops}
    lat_rows["pykka ask"] = (p50, p99)
    pref.stop()

    if args.skip_a3s:
        print("a3s-lane: skipped (--skip-a3s)")
    else:
        try:
            from _a3s_lane import PyLane, PyLaneConfig
        except ImportError as exc:
            print(f"a3s-lane: column skipped, cannot import _a3s_lane ({exc}); pip install a3s-lane==0.4.0")
        else:
            a10 = PyLane.with_lanes([PyLaneConfig(f"lane{i}", priority=i, min_concurrency=1, max_concurrency=10)
                                     for i in range(10)])
            a1 = PyLane.with_lanes([PyLaneConfig("only", priority=0, min_concurrency=1, max_concurrency=10)])
            a10.start()
            a6 = PyLane()  # its six default lanes, the same names as laneway's
            a1.start()
            a6.start()
            burst_threads(lambda i: a10.submit(f"lane{i % 10}", "noop", {"x": i}), 100, 100)
            burst_threads(lambda i: a6.submit(DEFAULTS[i % 6], "noop", {"x": i}), 100, 100)
            a = {
                "100 over 10 lanes": median_of(r, lambda: burst_threads(
                    lambda i: a10.submit(f"lane{i % 10}", "noop", {"x": i}), 100, 100)),
                "100 over 1 lane": median_of(r, lambda: burst_threads(lambda i: a1.submit("only", "noop", {"x": i}), 100, 100)),
                "1000 over 6 defaults": median_of(r, lambda: burst_threads(
                    lambda i: a6.submit(DEFAULTS[i % 6], "noop", {"x": i}), 1000, 100)),
            }
            ops, p50, p99 = latency(lambda i: a10.submit("lane3", "noop", {"x": i}), 100)
            a["sequential submit+wait"] = ops
            a["100 over 10, 100 threads"] = a["100 over 10 lanes"]
            rows["a3s-lane 0.4.0"] = a
            lat_rows["a3s-lane 0.4.0"] = (p50, p99)
            for lane in (a10, a1, a6):
                lane.shutdown()
                lane.drain(10.0)

    shapes = ["100 over 10 lanes", "100 over 1 lane", "1000 over 6 defaults", "100 over 10, 100 threads",
              "steady 20k, 4 submitters", "sequential submit+wait"]
    print(f"\nops/s (median of {r} rounds; 2-core machine, shared)")
    print(f"{'':26}" + "".join(f"{k:>18}" for k in rows))
    for shape in shapes:
        cells = "".join(f"{v[shape]:>18,.0f}" if shape in v else f"{'-':>18}" for v in rows.values())
        print(f"{shape:26}{cells}")
    print("\nsequential latency    p50 µs   p99 µs")
    for k, (p50, p99) in lat_rows.items():
        print(f"{k:20} {p50:8.1f} {p99:8.1f}")
    lw = rows["laneway lanes"]
    if "a3s-lane 0.4.0" in rows:
        a = rows["a3s-lane 0.4.0"]
        print("\nlaneway / a3s-lane: " + ", ".join(f"{s} {lw[s] / a[s]:.0f}x" for s in shapes if s in a))
    print(f"laneway lanes / pykka ask (sequential): {lw['sequential submit+wait'] / rows['pykka ask']['sequential submit+wait']:.2f}x; "
          f"p50 {lat_rows['laneway lanes'][0] / lat_rows['pykka ask'][0]:.2f}x")
    print(f"laneway lanes / laneway raw ask (sequential): {lw['sequential submit+wait'] / rows['laneway raw ask']['sequential submit+wait']:.2f}x")


if __name__ == "__main__":
    main()
