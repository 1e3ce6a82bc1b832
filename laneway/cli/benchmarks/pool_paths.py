"""The pool's hot paths against their baselines: round trip, tiny tasks, map, memory, 1 MB payloads, start, USS, CPU.

Run: python -m laneway.cli.benchmarks.pool_paths [--rounds 3] [--rows rt,tiny,...] [--base DIR] [--json]

Every measurement runs in a fresh child process (which imports this module by
name, so every runner pickles the task functions by reference, as it would a
user's module-level function), so runners never share an interpreter, and laneway's code can come
from another checkout: ``--base DIR`` adds a ``laneway@base`` runner whose child
has ``PYTHONPATH=DIR`` (before/after in one run). Runners of a row alternate
(A B A B ...) for ``--rounds`` rounds; each row reports the median of the
per-round ratios and their range. Every child checks every result value it gets
back and fails loudly on a wrong one. Rows (targets from the performance issue):

===== ======================================================= ==========================
rt    one ``inc`` at a time, submit + wait, p50 (µs)           <= 1.1x raw pyzmq; < PPE, mp.Pool
tiny  20,000 ``inc`` tasks, one submit each, wait all, 2 wkrs >= 4x mp.Pool apply_async
map   ``map(inc, chunksize=100)``, 2 workers                  >= 1.0x PPE map(chunksize=100)
mem   300 tasks of 1 MB ``bytes`` queued at once: RSS growth  <= 20 MB
mb    1 MB ``bytes`` argument throughput, 2 workers           >= 0.9x raw pyzmq + cloudpickle
start fresh process: import + pool + first result             <= 1.5x PPE (spawn)
uss   an idle worker's USS                                    <= 1.3x a PPE (spawn) worker's
cpu   200 pure-Python ~20 ms tasks, 2 workers vs 1            >= 1.9x
===== ======================================================= ==========================

``start`` is timed from the moment the parent launches the fresh interpreter (a
``CLOCK_MONOTONIC`` stamp it passes down) to the first result, so interpreter
start-up and imports count for both runners. Its child runs only what a pool-only
user writes (:data:`START`: the README's ``with Orchestrator(...)`` and ``start_pool``
against ``with ProcessPoolExecutor(...)``), not this module, whose own imports
(argparse, statistics, the benchmarks' package) would otherwise count for both; the
task is ``abs``, which no worker has to import a module for. Children run with their bytecode
cached, as any installed package has it (pip compiles on install): this machine's
``PYTHONDONTWRITEBYTECODE=1`` would otherwise have every child compile laneway from
source while the stdlib loads from its ``.pyc`` files. They share a private
``PYTHONPYCACHEPREFIX`` that an untimed warm-up child per runner fills first; the
source trees are not written to.

The raw baseline is a ROUTER in the parent and one DEALER per ``spawn`` worker over
``ipc://``, carrying ``cloudpickle.dumps((id, fn, args), protocol=5)`` with
out-of-band buffers as separate zero-copy frames, and the result back the same way.
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

from laneway.cli.benchmarks._work import calibrate_spin, inc, spin

HERE = os.path.abspath(__file__)
PAYLOAD = 1 << 20


def nbytes(b: bytes) -> int:
    return len(b) + b[-1]


def slow_nbytes(b: bytes) -> int:
    time.sleep(0.005)
    return len(b) + b[-1]


# --- runners (inside a child) ----------------------------------------------------------------


class LanewayRunner:
    def __init__(self, workers: int) -> None:
        from laneway import Orchestrator

        self.orch = Orchestrator(name="bench")
        self.pool = self.orch.start_pool(workers=workers)
        assert self.pool.wait_ready(timeout=120)

    def call(self, fn: Callable, arg: Any) -> Any:
        return self.pool.submit(fn, arg).result(600)

    def many(self, fn: Callable, items: list) -> list:
        futs = [self.pool.submit(fn, x) for x in items]
        return [f.result(600) for f in futs]

    def map(self, fn: Callable, items: list) -> list:
        return list(self.pool.map(fn, items, chunksize=100))

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.pool.workers()]

    def close(self) -> None:
        self.orch.shutdown()


class PPERunner:
    def __init__(self, workers: int) -> None:
        import concurrent.futures
        import multiprocessing

        self.ex = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        list(self.ex.map(abs, range(4 * workers)))  # start every worker

    def call(self, fn: Callable, arg: Any) -> Any:
        return self.ex.submit(fn, arg).result()

    def many(self, fn: Callable, items: list) -> list:
        futs = [self.ex.submit(fn, x) for x in items]
        return [f.result() for f in futs]

    def map(self, fn: Callable, items: list) -> list:
        return list(self.ex.map(fn, items, chunksize=100))

    def worker_pids(self) -> list[int]:
        return list(self.ex._processes)

    def close(self) -> None:
        self.ex.shutdown()


class MPPoolRunner:
    def __init__(self, workers: int) -> None:
        import multiprocessing

        self.mp = multiprocessing.get_context("spawn").Pool(workers)

    def call(self, fn: Callable, arg: Any) -> Any:
        return self.mp.apply_async(fn, (arg,)).get()

    def many(self, fn: Callable, items: list) -> list:
        results = [self.mp.apply_async(fn, (x,)) for x in items]
        return [r.get() for r in results]

    def close(self) -> None:
        self.mp.close()
        self.mp.join()


def raw_worker(endpoint: str) -> None:
    import pickle

    import cloudpickle
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send(b"hi")
    while True:
        frames = sock.recv_multipart(copy=False)
        if not frames[0].bytes:
            break
        tid, fn, args = pickle.loads(frames[0].buffer, buffers=[f.buffer for f in frames[1:]])
        del frames
        bufs: list = []
        head = cloudpickle.dumps((tid, fn(*args)), protocol=5, buffer_callback=bufs.append)
        sock.send_multipart([head, *bufs], copy=False)
    sock.close(linger=0)
    ctx.term()


class RawZmqRunner:
    """The transport's limit: no queue, no futures, no retries; one pickle each way."""

    def __init__(self, workers: int) -> None:
        import multiprocessing
        import tempfile

        import cloudpickle
        import zmq

        self.cp, self.zmq = cloudpickle, zmq
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.dir = tempfile.mkdtemp(prefix="raw-zmq-")
        ep = f"ipc://{self.dir}/s"
        self.sock.bind(ep)
        mpc = multiprocessing.get_context("spawn")
        self.procs = [mpc.Process(target=raw_worker, args=(ep,), daemon=True) for _ in range(workers)]
        for p in self.procs:
            p.start()
        self.idents = [self.sock.recv_multipart()[0] for _ in range(workers)]
        self.next_id = 0

    def _send(self, ident: bytes, fn: Callable, arg: Any) -> int:
        self.next_id += 1
        bufs: list = []
        head = self.cp.dumps((self.next_id, fn, (arg,)), protocol=5, buffer_callback=bufs.append)
        self.sock.send_multipart([ident, head, *bufs], copy=False)
        return self.next_id

    def _recv(self) -> tuple[int, Any]:
        import pickle

        frames = self.sock.recv_multipart(copy=False)
        return pickle.loads(frames[1].buffer, buffers=[f.buffer for f in frames[2:]])

    def call(self, fn: Callable, arg: Any) -> Any:
        self._send(self.idents[0], fn, arg)
        return self._recv()[1]

    def many(self, fn: Callable, items: list) -> list:
        n = len(self.idents)
        ids = [self._send(self.idents[i % n], fn, x) for i, x in enumerate(items)]
        got = dict(self._recv() for _ in items)
        return [got[i] for i in ids]

    def close(self) -> None:
        import shutil

        for ident in self.idents:
            self.sock.send_multipart([ident, b""])
        for p in self.procs:
            p.join(10)
        self.sock.close(linger=0)
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)


RUNNERS: dict[str, Callable[[int], Any]] = {
    "laneway": LanewayRunner, "ppe": PPERunner, "mp.Pool": MPPoolRunner, "raw-zmq": RawZmqRunner,
}


def _check(results: list, expected: list, what: str) -> None:
    if results != expected:
        bad = next(i for i, (a, b) in enumerate(zip(results, expected)) if a != b) if len(results) == len(expected) \
            else f"length {len(results)} != {len(expected)}"
        raise SystemExit(f"{what}: wrong result at {bad}")


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def child(row: str, runner_name: str, n: int) -> dict[str, float]:
    """One measurement in this (fresh) process; returns its figures."""
    workers = 1 if row in ("rt", "uss") else 2
    if row == "cpu1":
        workers = 1
    r = RUNNERS[runner_name.split("@")[0]](workers)
    try:
        if row == "rt":
            for i in range(200):  # warm-up: code shipped, caches hot
                r.call(inc, i)
            lat = []
            for i in range(n):
                t = time.perf_counter()
                v = r.call(inc, i)
                lat.append(time.perf_counter() - t)
                if v != i + 1:
                    raise SystemExit(f"rt: wrong result {v} for {i}")
            return {"value": statistics.median(lat) * 1e6}
        if row == "tiny":
            items = list(range(n))
            r.many(inc, items[:2000])
            t = time.perf_counter()
            out = r.many(inc, items)
            took = time.perf_counter() - t
            _check(out, [x + 1 for x in items], "tiny")
            return {"value": n / took}
        if row == "map":
            items = list(range(n))
            r.map(inc, items[: n // 10])
            t = time.perf_counter()
            out = r.map(inc, items)
            took = time.perf_counter() - t
            _check(out, [x + 1 for x in items], "map")
            return {"value": n / took}
        if row in ("cpu1", "cpu2"):
            k = int(os.environ["BENCH_SPIN"])
            r.many(spin, [k] * 4)
            t = time.perf_counter()
            out = r.many(spin, [k] * n)
            took = time.perf_counter() - t
            _check(out, [spin(k)] * n, "cpu")
            return {"value": n / took}
        if row == "mb":
            payloads: list[bytes] = [os.urandom(PAYLOAD - 1) + bytes([i % 256]) for i in range(8)]
            r.many(nbytes, payloads[:4])
            blobs = [payloads[i % 8] for i in range(n)]
            t = time.perf_counter()
            out = r.many(nbytes, blobs)
            took = time.perf_counter() - t
            _check(out, [len(b) + b[-1] for b in blobs], "mb")
            return {"value": n * PAYLOAD / took / 2**20}
        if row == "mem":
            import gc
            import threading

            payload = os.urandom(PAYLOAD - 1) + b"\x07"
            r.many(slow_nbytes, [payload] * 4)
            gc.collect()
            base = _rss()
            peak = [base]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.002):
                    peak[0] = max(peak[0], _rss())

            th = threading.Thread(target=sample, daemon=True)
            th.start()
            futs = [r.pool.submit(slow_nbytes, payload) if hasattr(r, "pool") else r.ex.submit(slow_nbytes, payload)
                    for _ in range(n)]
            peak[0] = max(peak[0], _rss())
            out = [f.result(600) for f in futs]
            stop.set()
            th.join()
            _check(out, [PAYLOAD + 7] * n, "mem")
            return {"value": (peak[0] - base) / 2**20}
        if row == "uss":
            import psutil

            r.call(inc, 1)
            time.sleep(1.0)  # idle, as a worker waits between bursts (not a timing)
            pids = r.worker_pids()
            return {"value": statistics.mean(psutil.Process(p).memory_full_info().uss for p in pids) / 2**20}
        raise SystemExit(f"unknown row {row}")
    finally:
        r.close()


# --- the parent: rounds, ratios, the table ------------------------------------------------------------

#: row -> (unit, higher is better, runners (first is laneway), [(numerator, denominator, target text)])
ROWS: dict[str, tuple[str, bool, list[str], int]] = {
    "rt": ("µs p50", False, ["laneway", "raw-zmq", "ppe", "mp.Pool"], 2000),
    "tiny": ("tasks/s", True, ["laneway", "mp.Pool", "ppe"], 20_000),
    "map": ("calls/s", True, ["laneway", "ppe"], 200_000),
    "mem": ("MB growth", False, ["laneway", "ppe"], 300),
    "mb": ("MB/s", True, ["laneway", "raw-zmq"], 200),
    "start": ("s", False, ["laneway", "ppe"], 1),
    "uss": ("MB USS", False, ["laneway", "ppe"], 1),
    "cpu": ("tasks/s", True, ["laneway:1", "laneway:2"], 200),
}
TARGETS = {
    "rt": [("laneway", "raw-zmq", "<= 1.1"), ("laneway", "ppe", "< 1"), ("laneway", "mp.Pool", "< 1")],
    "tiny": [("laneway", "mp.Pool", ">= 4"), ("laneway", "ppe", "")],
    "map": [("laneway", "ppe", ">= 1.0")],
    "mem": [],
    "mb": [("laneway", "raw-zmq", ">= 0.9")],
    "start": [("laneway", "ppe", "<= 1.5")],
    "uss": [("laneway", "ppe", "<= 1.3")],
    "cpu": [("laneway:2", "laneway:1", ">= 1.9")],
}


#: A measuring child imports this module by its name rather than running it as ``__main__``: then ``inc`` and the
#: other task functions are ``laneway.cli.benchmarks.pool_paths.inc`` for every runner, and each pickles them by
#: reference, as it would a user's module-level function. (As ``__main__``, cloudpickle would ship them by value on
#: every raw pyzmq call, ~40 µs that the pools, which pickle by reference or cache, never pay.)
CHILD = (
    "import json, sys\n"
    "from laneway.cli.benchmarks import pool_paths\n"
    "print(json.dumps(pool_paths.child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))\n"
)


#: The ``start`` row's children, one per runner: the user's program up to the first checked result.
START = {
    "laneway": (
        "import os, time\n"
        "from laneway import Orchestrator\n"
        "with Orchestrator(name='bench') as orch:\n"
        "    value = orch.start_pool(workers=1).submit(abs, -42).result(60)\n"
        "    took = time.monotonic() - float(os.environ['BENCH_LAUNCHED'])\n"
    ),
    "ppe": (
        "import os, time\n"
        "import concurrent.futures, multiprocessing\n"
        "with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn')) as ex:\n"
        "    value = ex.submit(abs, -42).result(60)\n"
        "    took = time.monotonic() - float(os.environ['BENCH_LAUNCHED'])\n"
    ),
}
START_CHECK = (
    "if value != 42:\n"
    "    raise SystemExit(f'start: wrong result {value!r}')\n"
    "print('{\"value\": %r}' % took)\n"
)


def run_child(row: str, runner: str, n: int, pythonpath: str, spin_n: int) -> float:
    env = dict(os.environ, PYTHONPATH=pythonpath, BENCH_SPIN=str(spin_n))
    sub_row = row
    if row == "cpu":
        sub_row = "cpu1" if runner.endswith(":1") else "cpu2"
        runner = "laneway" + runner.split(":")[0][len("laneway"):]
    code, argv = CHILD, [sub_row, runner, str(n)]
    if row == "start":
        code, argv = START[runner.split("@")[0]] + START_CHECK, []
    env["BENCH_LAUNCHED"] = repr(time.monotonic())
    # cwd: a `-c` child puts its working directory first on sys.path, ahead of PYTHONPATH, so run from
    # another checkout's root it would import that checkout's laneway, whatever tree the runner names.
    out = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=900,
                         cwd=pythonpath)
    if out.returncode != 0:
        raise SystemExit(f"child {row}/{runner} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["value"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows out of {','.join(ROWS)}")
    parser.add_argument("--base", default="", help="a checkout whose laneway runs as the extra runner laneway@base")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row's task count (quick runs)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    here_tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(HERE))))
    trees = {"": here_tree}
    if args.base:
        trees["@base"] = os.path.abspath(args.base)
    spin_n = calibrate_spin()
    import shutil
    import tempfile

    pycache = os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="pool-paths-pycache-")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # for the children (this interpreter already started)
    try:
        for tree in trees.values():  # untimed: compiles what each runner imports, once
            run_child("start", "laneway", 1, tree, spin_n)
        run_child("start", "ppe", 1, here_tree, spin_n)
        run_rows(args, trees, here_tree, spin_n)
    finally:
        shutil.rmtree(pycache, ignore_errors=True)


def run_rows(args: argparse.Namespace, trees: dict[str, str], here_tree: str, spin_n: int) -> None:
    report: dict[str, Any] = {}
    for row in args.rows.split(","):
        unit, _, runners, n = ROWS[row]
        n = max(1, int(n * args.scale)) if row not in ("start", "uss") else n
        names = [r + tag if r.startswith("laneway") else r for r in runners for tag in
                 (trees if r.startswith("laneway") else [""])]
        values: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(args.rounds):
            for name in names:  # interleaved: A B A B ...
                base_name, tag = (name.split("@")[0], "@" + name.split("@")[1]) if "@" in name else (name, "")
                values[name].append(run_child(row, base_name, n, trees.get(tag, here_tree), spin_n))
        rows_out: dict[str, Any] = {"unit": unit, "n": n, "values": values, "ratios": {}}
        print(f"\n{row}: {unit} (n={n}, {args.rounds} rounds)")
        for name, vals in values.items():
            print(f"  {name:18s} median {statistics.median(vals):12,.2f}  range {min(vals):,.2f}..{max(vals):,.2f}")
        for num, den, target in TARGETS[row]:
            for tag in trees:
                a = num + tag if num.startswith("laneway") else num
                b = den + tag if den.startswith("laneway") else den
                per_round = [x / y for x, y in zip(values[a], values[b])]
                med = statistics.median(per_round)
                rows_out["ratios"][f"{a} / {b}"] = {"median": med, "min": min(per_round), "max": max(per_round),
                                                    "target": target}
                print(f"  {a + ' / ' + b:30s} {med:6.2f}x  (range {min(per_round):.2f}..{max(per_round):.2f})"
                      f"{'  target ' + target if target else ''}")
                # each round's ratio, in order: a round the machine stalled stands out from a slow runner
                print(f"  {'':30s} per round: {' '.join(f'{r:.2f}' for r in per_round)}")
        if row == "mem":
            for tag in trees:
                vals = values["laneway" + tag]
                print(f"  laneway{tag} RSS growth {statistics.median(vals):.1f} MB  target <= 20 MB")
        report[row] = rows_out
    if args.json:
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
