"""Durable jobs per second on 1, 2 and 3 processes: laneway cluster nodes, Procrastinate and DBOS workers.

Every run gets a fresh database on one PostgreSQL server, starts its worker
processes (``laneway serve`` nodes, Procrastinate workers, DBOS executors),
waits until they are ready, then times: enqueue N no-op jobs one call at a
time from this process, and wait until all are done. Afterwards it checks the
database: exactly N jobs, all done, none run twice. The systems run
interleaved in rounds (laneway, procrastinate, dbos, laneway, ...) and the
table gives the median and range over the rounds, and laneway's median over
the best peer's. Then the failover time: SIGKILL one of two nodes and time
until the other adopted its commands.

Procrastinate and DBOS are not dependencies of laneway: install them in the
environment that runs this script (``pip install procrastinate dbos``); a
missing one's row says so and the others still run.

Needs PostgreSQL: ``--dsn URL`` or ``LANEWAY_PG_DSN`` (a server where the
script may create and drop databases); from a checkout it can also start a
private server with ``tests/pg_server.py``. Without one it prints why and exits 0.

Example:
    $ python -m laneway.cli.benchmarks.cluster_throughput --dsn postgresql://postgres@/postgres?host=/tmp/sock
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from laneway.cli.benchmarks import cluster_peers

APP = textwrap.dedent("""
    def setup(orch):
        orch.lanes.tools.register(lambda n: n, name="noop")
""")


@contextlib.contextmanager
def server(dsn: str | None) -> Iterator[str | None]:
    """The given server URL, or a private server started from a checkout's tests/pg_server.py, or None."""
    if dsn is not None:
        yield dsn
        return
    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root))
    try:
        from tests.pg_server import throwaway_server, unavailable_reason
    except ImportError:
        yield None
        return
    if unavailable_reason():
        yield None
        return
    with throwaway_server() as url:
        yield url


@contextlib.contextmanager
def fresh_database(dsn: str) -> Iterator[str]:
    """A new, empty database on the server at ``dsn``, dropped afterwards."""
    import psycopg

    name = f"laneway_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_node(url: str, name: str, app_dir: str, lease: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([app_dir, *sys.path])}
    return subprocess.Popen([sys.executable, "-m", "laneway", "serve", "--store", url, "--node", name,
                             "--app", "bench_app", "--lease", str(lease), "--max-inflight", "256"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_alive(url: str, names: list[str], timeout: float = 60.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute("SELECT node FROM laneway_cluster_nodes WHERE alive AND "
                                    "lease_until > clock_timestamp()").fetchall()
            if set(names) <= {r[0] for r in rows}:
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.1)
    raise SystemExit(f"nodes {names} did not join within {timeout}s")


def laneway_seconds(url: str, nodes: int, jobs: int, app_dir: str, concurrency: int) -> float:
    """Seconds for ``nodes`` laneway serve processes to run ``jobs`` no-op commands submitted from here.

    ``concurrency`` is unused: a node's lane decides its own; the peers get a slot count per process.
    """
    from laneway import Orchestrator

    names = [f"bench{nodes}-{i}" for i in range(nodes)]
    procs = [start_node(url, n, app_dir, 3.0) for n in names]
    try:
        wait_alive(url, names)
        with Orchestrator("bench-client", store=url, node=f"client{nodes}", handle_signals=False) as orch:
            orch.lanes.tools.register(lambda n: n, name="noop")
            cluster = orch.start_cluster(claim=False)
            start = time.perf_counter()
            handles = [cluster.submit("query", "noop", {"n": i}) for i in range(jobs)]
            for h in handles:
                h.result(timeout=300)
            seconds = time.perf_counter() - start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        counts = [(conn.execute(q).fetchone() or (None,))[0] for q in (
            "SELECT count(*) FROM laneway_cluster_commands",
            "SELECT count(*) FROM laneway_cluster_commands WHERE state = 'done'",
            "SELECT count(*) FROM laneway_cluster_commands WHERE claims > 1")]
    if counts != [jobs, jobs, 0]:
        raise cluster_peers.CheckFailed(f"expected {jobs} commands, {jobs} done, 0 claimed twice; "
                                        f"the database has {counts}")
    return seconds


def failover_time(url: str, app_dir: str, lease: float) -> float:
    """Seconds from SIGKILL of a node holding commands to their adoption by the other node."""
    import psycopg

    from laneway import Orchestrator

    victim, other = f"fo-a-{lease:g}", f"fo-b-{lease:g}"
    procs = [start_node(url, n, app_dir, lease) for n in (victim, other)]
    try:
        wait_alive(url, [victim, other])
        with Orchestrator("bench-client", store=url, node=f"client-fo-{lease:g}", handle_signals=False) as orch:
            orch.lanes.tools.register(lambda n: n, name="noop")
            orch.start_cluster(claim=False)
            with psycopg.connect(url, autocommit=True) as conn:
                killed_at = (conn.execute("SELECT clock_timestamp()").fetchone() or (None,))[0]
                procs[0].kill()
                procs[0].wait(timeout=10)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    row = conn.execute("SELECT adopted_at FROM laneway_cluster_adoptions WHERE node = %s",
                                       (victim,)).fetchone()
                    if row:
                        return (row[0] - killed_at).total_seconds()
                    time.sleep(0.02)
            raise SystemExit("the killed node was not adopted within 60 s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)


SYSTEMS: dict[str, Callable[[str, int, int, str, int], float]] = {
    "laneway": laneway_seconds,
    "procrastinate": cluster_peers.procrastinate_seconds,
    "dbos": cluster_peers.dbos_seconds,
}


def machine() -> dict[str, Any]:
    """Date, CPU model, core count and load average, for the record next to the numbers."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu, "cores": os.cpu_count(),
            "loadavg": [round(x, 2) for x in os.getloadavg()], "python": sys.version.split()[0]}


Cells = dict[str, dict[int, Any]]


def run_rounds(dsn: str, jobs: int, rounds: int, node_counts: list[int], systems: list[str], app_dir: str,
               concurrency: int) -> Cells:
    """Jobs per second for each system and process count, interleaved (A B C A B C ...), each run in a fresh database.

    A cell is a list of samples, or a string saying why that system did not run.
    """
    results: Cells = {s: {n: [] for n in node_counts} for s in systems}
    for r in range(rounds):
        for n in node_counts:
            for system in systems:
                if isinstance(results[system][n], str):
                    continue
                with fresh_database(dsn) as url:
                    try:
                        seconds = SYSTEMS[system](url, n, jobs, app_dir, concurrency)
                    except cluster_peers.PeerMissing as exc:
                        results[system] = {m: str(exc) for m in node_counts}
                        print(f"  {system}: {exc}", flush=True)
                        continue
                    except cluster_peers.CheckFailed as exc:
                        raise SystemExit(f"{system}, {n} process(es), round {r + 1}: {exc}") from None
                results[system][n].append(jobs / seconds)
                print(f"  round {r + 1}: {system:13s} {n} process(es): {jobs / seconds:8.0f} jobs/s", flush=True)
    return results


def summarize(results: Cells) -> Cells:
    """Median, min, max and samples per cell (a string cell says why the system did not run)."""
    return {system: {n: v if isinstance(v, str) else
                     {"median": statistics.median(v), "min": min(v), "max": max(v), "samples": v}
                     for n, v in cells.items()}
            for system, cells in results.items()}


def ratios(summary: Cells) -> dict[int, dict[str, Any]]:
    """laneway's median over the best peer's median, per process count."""
    out: dict[int, dict[str, Any]] = {}
    for n, mine in summary.get("laneway", {}).items():
        peers = {s: c[n] for s, c in summary.items() if s != "laneway" and isinstance(c[n], dict)}
        if isinstance(mine, str) or not peers:
            continue
        best = max(peers, key=lambda s: peers[s]["median"])
        out[n] = {"best_peer": best, "ratio": mine["median"] / peers[best]["median"]}
    return out


def print_table(summary: Cells, node_counts: list[int]) -> None:
    print(f"{'jobs/s':15s}" + "".join(f"{f'{n} process(es), median (range)':>34s}" for n in node_counts))
    for system, cells in summary.items():
        row = f"{system:15s}"
        for n in node_counts:
            c = cells[n]
            text = c if isinstance(c, str) else f"{c['median']:.0f} ({c['min']:.0f}-{c['max']:.0f})"
            row += f"{text:>34s}"
        print(row)
    for n, r in ratios(summary).items():
        print(f"laneway / {r['best_peer']} (the best peer) with {n} process(es): {r['ratio']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("LANEWAY_PG_DSN"), help="PostgreSQL server URL")
    parser.add_argument("--jobs", type=int, default=2000, help="no-op jobs per run (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--nodes", default="1,2,3", help="process counts to run (default 1,2,3)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"some of {','.join(SYSTEMS)} (default all)")
    parser.add_argument("--concurrency", type=int, default=16, help="job slots per peer worker process (default 16)")
    parser.add_argument("--no-failover", action="store_true", help="skip the failover measurement")
    parser.add_argument("--quick", action="store_true", help="200 jobs, 1 round, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON object (progress goes to stderr)")
    args = parser.parse_args(argv)
    jobs, rounds = (200, 1) if args.quick else (args.jobs, args.rounds)
    systems = args.systems.split(",")
    try:
        node_counts = [int(n) for n in args.nodes.split(",")]
    except ValueError:
        node_counts = []
    if (set(systems) - set(SYSTEMS) or jobs < 1 or rounds < 1 or args.concurrency < 1 or not node_counts
            or min(node_counts) < 1):
        parser.error(f"--systems takes names from {','.join(SYSTEMS)}; --jobs, --rounds, --concurrency and "
                     f"--nodes (comma-separated) take positive integers; got {args}")
    with server(args.dsn) as dsn:
        if dsn is None:
            print("cluster_throughput: skipped: no PostgreSQL (set --dsn or LANEWAY_PG_DSN)")
            return 0
        with tempfile.TemporaryDirectory() as app_dir:
            Path(app_dir, "bench_app.py").write_text(APP)
            before = machine()
            with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
                results = run_rounds(dsn, jobs, rounds, node_counts, systems, app_dir, args.concurrency)
                failover: dict[str, float] = {}
                if not args.no_failover and "laneway" in systems:
                    for lease in (3.0, 1.0):
                        with fresh_database(dsn) as url:
                            failover[f"lease {lease:g} s"] = failover_time(url, app_dir, lease)
    summary = summarize(results)
    report = {"machine": before, "loadavg_after": [round(x, 2) for x in os.getloadavg()], "jobs": jobs,
              "rounds": rounds, "peer_concurrency": args.concurrency, "dbos_poll_s": cluster_peers.DBOS_POLL_S,
              "results": summary, "ratios": ratios(summary), "failover_s": failover}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    m = before
    print(f"{m['date']}; {m['cpu']} ({m['cores']} cores); load average {m['loadavg']} before, "
          f"{report['loadavg_after']} after; {jobs} jobs per run, {rounds} interleaved rounds")
    print_table(summary, node_counts)
    for what, seconds in failover.items():
        print(f"failover ({what}): adopted {seconds:.2f} s after SIGKILL")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
