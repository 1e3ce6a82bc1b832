"""Durable commands per second on 1, 2 and 3 cluster nodes, and the failover time from SIGKILL to adoption.

Each node is a real ``laneway serve`` process on one PostgreSQL database;
this process submits no-op commands as a client node and waits for every
result. The failover run SIGKILLs one of two nodes while it holds claimed
commands and measures the time until another node adopted them.

Baselines: Procrastinate and DBOS running the same no-op jobs on the same
server in the same run, when they are importable here. They are not
dependencies of laneway and are not installed by it: install them in the
environment that runs this script (``pip install procrastinate dbos``).
When one is missing, its row says so.

Needs PostgreSQL: ``--dsn URL`` or ``LANEWAY_PG_DSN`` (a database the script
may create tables in); from a checkout it can also start a private server
with ``tests/pg_server.py``. Without one it prints why and exits 0.

Example:
    $ python -m laneway.cli.benchmarks.cluster_throughput --dsn postgresql://postgres@/bench?host=/tmp/sock
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator

APP = textwrap.dedent("""
    def setup(orch):
        orch.lanes.tools.register(lambda n: n, name="noop")
""")


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str | None]:
    """A fresh database on the given server, or on a private one started from a checkout's tests/pg_server.py."""
    import psycopg

    with contextlib.ExitStack() as stack:
        if dsn is None:
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
            dsn = stack.enter_context(throwaway_server())
        name = f"laneway_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        from urllib.parse import urlsplit, urlunsplit

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


def laneway_rate(url: str, nodes: int, jobs: int, app_dir: str) -> float:
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
            return jobs / (time.perf_counter() - start)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


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
                killed_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]
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


def procrastinate_rate(url: str, jobs: int) -> str:
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        return "not installed here (pip install procrastinate to compare)"
    return "installed, but its runner is not written yet in this benchmark"


def dbos_rate(url: str, jobs: int) -> str:
    try:
        import dbos  # noqa: F401
    except ImportError:
        return "not installed here (pip install dbos to compare)"
    return "installed, but its runner is not written yet in this benchmark"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("LANEWAY_PG_DSN"), help="PostgreSQL server URL")
    parser.add_argument("--jobs", type=int, default=2000, help="no-op commands per run (default 2000)")
    parser.add_argument("--quick", action="store_true", help="200 jobs, for a smoke run")
    args = parser.parse_args(argv)
    jobs = 200 if args.quick else args.jobs
    with database(args.dsn) as url:
        if url is None:
            print("cluster_throughput: skipped: no PostgreSQL (set --dsn or LANEWAY_PG_DSN)")
            return 0
        with tempfile.TemporaryDirectory() as app_dir:
            Path(app_dir, "bench_app.py").write_text(APP)
            print(f"{'system':34s} {'jobs/s':>10s}")
            for n in (1, 2, 3):
                print(f"{f'laneway cluster, {n} node(s)':34s} {laneway_rate(url, n, jobs, app_dir):10.0f}", flush=True)
            print(f"{'procrastinate':34s} {procrastinate_rate(url, jobs)}")
            print(f"{'dbos':34s} {dbos_rate(url, jobs)}")
            for lease in (3.0, 1.0):
                print(f"failover (lease {lease:.0f} s): adopted {failover_time(url, app_dir, lease):.2f} s after SIGKILL",
                      flush=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    raise SystemExit(main())
