"""Process actors against their baselines, interleaved in one run: raw pyzmq, multiprocessing.Pipe, Ray.

Run: python -m laneway.cli.benchmarks.actor_process [--n 2000] [--rounds 10] [--no-ray]

Measures, round after round so load on the machine hits every contender alike:

* ask p50: a process actor's ``ask`` vs a raw pyzmq ipc round trip (DEALER to an
  echo process, bytes in and out, no pickling); target <= 1.1x; the two take turns
  every 100 asks within each round;
* pipelined tells/s (n tells, then one ask to wait for them): a process actor vs a
  minimal actor on ``multiprocessing.Pipe`` (target >= 1.0x) and vs Ray actor
  method calls (target >= 10x);
* with Ray installed, an actor with ``placement="ray"`` vs raw Ray actor calls:
  pipelined tells/s (n tells then one ask, vs n ``actor.echo.remote`` calls then
  a ``ray.get`` of the last; target >= 0.8x) and ask p50 (``ask`` vs
  ``ray.get(actor.echo.remote(i))``, one at a time, taking turns; target <= 1.25x,
  i.e. >= 0.8x the calls per second), with the median and range of the per-round ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from typing import Any, Callable

import zmq

from laneway import Orchestrator
from laneway.actors import Actor
from laneway.cli.benchmarks.actor_ask import measure_tell  # tells/s: n tells, then one flush

_CTX = multiprocessing.get_context("spawn")


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        return message


# --- baseline 1: raw pyzmq ipc round trip ----------------------------------------


def _zmq_echo(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.bind(endpoint)
    while True:
        frames = sock.recv_multipart()
        if frames == [b"stop"]:
            break
        sock.send_multipart(frames)
    sock.close(linger=0)
    ctx.term()


# --- baseline 2: a minimal actor on multiprocessing.Pipe (~40 lines) --------------


def _pipe_actor(conn: Any) -> None:
    """The child: one mailbox (the pipe), one handler, replies for asks."""
    while True:
        kind, msg = conn.recv()
        if kind == "stop":
            return
        result = msg  # the handler: echo
        if kind == "ask":
            conn.send(result)


class PipeActor:
    """The parent side: tell sends, ask sends and waits for the reply."""

    def __init__(self) -> None:
        self.conn, child = _CTX.Pipe()
        self.proc = _CTX.Process(target=_pipe_actor, args=(child,), daemon=True)
        self.proc.start()

    def tell(self, msg: Any) -> None:
        self.conn.send(("tell", msg))

    def ask(self, msg: Any) -> Any:
        self.conn.send(("ask", msg))
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send(("stop", None))
        self.proc.join(5)


# --- measurements -----------------------------------------------------------------


#: Asks per turn: within a round the two ask runners take turns (A B A B ...) in chunks
#: this size, so a burst of load on the shared machine hits both alike.
CHUNK = 100


def p50s_us(calls: list[Callable[[int], Any]], n: int) -> list[float]:
    """The p50 latency of each of ``calls``, ``n`` calls each, taking turns in chunks of :data:`CHUNK`."""
    lat: list[list[float]] = [[] for _ in calls]
    perf = time.perf_counter
    for start in range(0, n, CHUNK):
        for call, mine in zip(calls, lat):
            for i in range(start, min(n, start + CHUNK)):
                t = perf()
                call(i)
                mine.append(perf() - t)
    return [statistics.median(mine) * 1e6 for mine in lat]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="asks per round (tells: 10x)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (many short ones: load swings hit every contender alike)")
    parser.add_argument("--quick", action="store_true", help="a short run (n=500, 1 round)")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out even if installed")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 500, 1

    tmp = tempfile.mkdtemp(prefix="laneway-bench-")
    endpoint = f"ipc://{tmp}/echo"
    echo_proc = _CTX.Process(target=_zmq_echo, args=(endpoint,), daemon=True)
    echo_proc.start()
    zctx = zmq.Context()
    zsock = zctx.socket(zmq.DEALER)
    zsock.connect(endpoint)

    def zmq_round_trip(i: int) -> None:
        data = i.to_bytes(8, "big")
        zsock.send(data)
        if zsock.recv() != data:
            raise AssertionError(f"raw zmq echo returned a wrong value for {i}")

    def actor_ask(i: int) -> None:
        if ref.ask(i, timeout=30) != i:
            raise AssertionError(f"the process actor's echo of {i} is wrong")

    def ray_call(i: int) -> None:
        if ray.get(ray_actor.echo.remote(i)) != i:
            raise AssertionError(f"the Ray actor's echo of {i} is wrong")

    def ray_placed_ask(i: int) -> None:
        if ray_ref is None or ray_ref.ask(i, timeout=30) != i:
            raise AssertionError(f"the Ray-placed actor's echo of {i} is wrong")

    def flush(ask: Callable[[Any], Any]) -> None:
        if ask("flush") != "flush":
            raise AssertionError("the flush ask came back wrong")

    zmq_round_trip(0)  # connected
    pipe = PipeActor()
    orch = Orchestrator(name="bench")
    ref = orch.spawn(Echo, name="echo", placement="process")

    ray_actor: Any = None  # a Ray actor handle (Ray's stubs give its methods no .remote)
    ray_ref = None
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            pass  # measured without Ray
        else:
            os.environ.setdefault("RAY_ADDRESS", "local")
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

            class RayEcho:
                def echo(self, m: Any) -> Any:
                    return m

            ray_actor = ray.remote(RayEcho).remote()
            ray.get(ray_actor.echo.remote(0))
            try:
                ray_ref = orch.spawn(Echo, name="ray-echo", placement="ray")
            except Exception as exc:
                print(f"(placement='ray' not measured: {exc})")

    rows: dict[str, list[float]] = {k: [] for k in
                                    ("zmq p50", "actor p50", "pipe tells/s", "actor tells/s", "ray tells/s",
                                     "ray-placed tells/s", "ray p50", "ray-placed p50")}
    n = args.n
    try:
        for _ in range(args.rounds):
            zmq_p50, actor_p50 = p50s_us([zmq_round_trip, actor_ask], n)
            rows["zmq p50"].append(zmq_p50)
            rows["actor p50"].append(actor_p50)
            rows["pipe tells/s"].append(measure_tell(pipe.tell, lambda: flush(pipe.ask), n * 10))
            rows["actor tells/s"].append(measure_tell(ref.tell, lambda: flush(lambda m: ref.ask(m, timeout=120)), n * 10))
            if ray_actor is not None:
                import ray

                calls: list[Any] = []
                rows["ray tells/s"].append(
                    measure_tell(lambda i: calls.append(ray_actor.echo.remote(i)), lambda: _check_ray(ray.get(calls), n), n)
                )
                if ray_ref is not None:
                    rows["ray-placed tells/s"].append(
                        measure_tell(ray_ref.tell, lambda: flush(lambda m: ray_ref.ask(m, timeout=120)), n)
                    )
                if ray_ref is not None:  # the two take turns every CHUNK calls, as the zmq pair does
                    ray_p50, placed_p50 = p50s_us([ray_call, ray_placed_ask], n // 5)
                    rows["ray p50"].append(ray_p50)
                    rows["ray-placed p50"].append(placed_p50)
    finally:
        orch.shutdown()
        pipe.stop()
        zsock.send(b"stop")
        zsock.close(linger=0)
        zctx.term()
        echo_proc.join(5)
        if ray_actor is not None:
            import ray

            ray.shutdown()

    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"median of {args.rounds} rounds, n={n} asks, {n * 10} tells (Ray: {n} calls)")
    for k, v in med.items():
        print(f"  {k:20s} {v:12.1f}  (rounds: {', '.join(f'{x:.1f}' for x in rows[k])})")
    print("per-round ratios: median [min-max] (target):")
    _ratio("actor ask p50 / raw zmq round trip", rows["actor p50"], rows["zmq p50"], "<= 1.1x")
    _ratio("actor tells / Pipe actor tells", rows["actor tells/s"], rows["pipe tells/s"], ">= 1.0x")
    if rows["ray tells/s"]:
        _ratio("actor tells / Ray actor calls", rows["actor tells/s"], rows["ray tells/s"], ">= 10x")
    if rows["ray-placed tells/s"]:
        _ratio("ray-placed tells / raw Ray calls", rows["ray-placed tells/s"], rows["ray tells/s"], ">= 0.8x")
    if rows["ray-placed p50"]:
        _ratio("ray-placed ask p50 / raw Ray call p50", rows["ray-placed p50"], rows["ray p50"], "<= 1.25x")


def _ratio(label: str, mine: list[float], base: list[float], target: str) -> None:
    ratios = [a / b for a, b in zip(mine, base)]
    print(f"  {label:38s} {statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]  ({target})")


def _check_ray(values: list[Any], n: int) -> None:
    if values != list(range(n)):
        raise AssertionError("Ray actor calls returned wrong values")

if __name__ == "__main__":
    main()
