"""Procrastinate and DBOS running the same no-op jobs as cluster_throughput, for its comparison rows.

Each runner gets a fresh database on the benchmark's server, starts
``workers`` worker processes of the peer (each with ``concurrency`` job slots),
waits until they are ready, then times: enqueue ``jobs`` no-op jobs one call
at a time from this process, and wait until the database shows all of them
done. It then checks the database: exactly ``jobs`` jobs, all done, none run
twice. Neither peer is a dependency of laneway; a runner whose peer is not
importable raises :class:`PeerMissing` with the install command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The worker module each peer's processes run (written into the benchmark's app directory).
PROCRASTINATE_WORKER = """
import os
import procrastinate

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ["BENCH_DSN"]))


@app.task(name="noop", queue="bench")
def noop(n):
    return n


if __name__ == "__main__":
    app.run_worker(queues=["bench"], concurrency=int(os.environ["BENCH_CONCURRENCY"]), wait=True,
                   name=os.environ["BENCH_WORKER"])
"""

DBOS_WORKER = """
import os
import signal
import threading

from dbos import DBOS

DBOS(config={"name": "bench", "system_database_url": os.environ["BENCH_DSN"],
             "executor_id": os.environ["BENCH_WORKER"], "log_level": "WARNING"})


@DBOS.workflow(name="noop")
def noop(n):
    return n


if __name__ == "__main__":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DBOS.launch()
    DBOS.register_queue("bench", worker_concurrency=int(os.environ["BENCH_CONCURRENCY"]),
                        polling_interval_sec=float(os.environ["BENCH_POLL"]))
    print("ready", flush=True)
    stop.wait()
    DBOS.destroy(workflow_completion_timeout_sec=5)
"""

#: DBOS workers find queued work by polling (default every 1 s); 50 ms keeps that from dominating a 2,000-job run.
DBOS_POLL_S = 0.05


class PeerMissing(Exception):
    """The peer's package is not importable here; the message says what to install."""


class CheckFailed(Exception):
    """The database does not show exactly ``jobs`` jobs done once each."""


def _start(module: str, url: str, app_dir: str, name: str, concurrency: int, **extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([app_dir, *sys.path]), "BENCH_DSN": url,
           "BENCH_WORKER": name, "BENCH_CONCURRENCY": str(concurrency), **extra}
    return subprocess.Popen([sys.executable, "-m", module], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
        if p.stdout:
            p.stdout.close()


def _wait_until(query: str, url: str, ok: Callable[[int], bool], timeout: float, what: str,
                procs: list[subprocess.Popen], poll: float = 0.02) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row is not None and ok(row[0]):
                return
            dead = [p.args for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a worker process exited while waiting for {what}: {dead}")
            time.sleep(poll)
    raise TimeoutError(f"{what}: not within {timeout} s")


def _scalar(conn: Any, query: str) -> Any:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def _check(url: str, jobs: int, total: str, done: str, twice: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        counts = [_scalar(conn, q) for q in (total, done, twice)]
    if counts != [jobs, jobs, 0]:
        raise CheckFailed(f"expected {jobs} jobs, {jobs} done, 0 run twice; the database has {counts}")


def _write(app_dir: str, module: str, text: str) -> None:
    path = Path(app_dir, f"{module}.py")
    if not path.exists():
        path.write_text(text)


def procrastinate_seconds(url: str, workers: int, jobs: int, app_dir: str, concurrency: int) -> float:
    """Seconds for Procrastinate to enqueue and finish ``jobs`` no-op jobs on ``workers`` worker processes."""
    try:
        import procrastinate
    except ImportError:
        raise PeerMissing("not installed: pip install procrastinate") from None
    _write(app_dir, "bench_procrastinate", PROCRASTINATE_WORKER)
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=url))
    with app.open():
        app.schema_manager.apply_schema()
        procs = [_start("bench_procrastinate", url, app_dir, f"pw{i}", concurrency) for i in range(workers)]
        try:
            _wait_until("SELECT count(*) FROM procrastinate_workers", url, lambda n: n >= workers, 60,
                        f"{workers} procrastinate workers registered", procs, poll=0.1)
            deferrer = app.configure_task("noop", queue="bench")
            start = time.perf_counter()
            for i in range(jobs):
                deferrer.defer(n=i)
            _wait_until("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'", url,
                        lambda n: n >= jobs, 600, f"{jobs} procrastinate jobs succeeded", procs)
            seconds = time.perf_counter() - start
        finally:
            _stop(procs)
    _check(url, jobs, "SELECT count(*) FROM procrastinate_jobs",
           "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
           "SELECT count(*) FROM (SELECT job_id FROM procrastinate_events WHERE type = 'started' "
           "GROUP BY job_id HAVING count(*) > 1) t")
    return seconds


def dbos_seconds(url: str, workers: int, jobs: int, app_dir: str, concurrency: int) -> float:
    """Seconds for DBOS to enqueue and finish ``jobs`` no-op workflows on ``workers`` executor processes."""
    try:
        from dbos import DBOSClient
    except ImportError:
        raise PeerMissing("not installed: pip install dbos") from None
    _write(app_dir, "bench_dbos", DBOS_WORKER)
    procs: list[subprocess.Popen] = []
    try:
        # One at a time: the first launch creates DBOS's schema, and concurrent migrations race.
        for i in range(workers):
            procs.append(_start("bench_dbos", url, app_dir, f"dw{i}", concurrency, BENCH_POLL=str(DBOS_POLL_S)))
            line = procs[-1].stdout.readline() if procs[-1].stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"DBOS worker dw{i} did not start (exit code {procs[-1].poll()})")
        client = DBOSClient(system_database_url=url)
        try:
            options: Any = {"workflow_name": "noop", "queue_name": "bench"}  # DBOS's EnqueueOptions TypedDict
            start = time.perf_counter()
            for i in range(jobs):
                client.enqueue(options, i)
            _wait_until("SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'", url,
                        lambda n: n >= jobs, 600, f"{jobs} DBOS workflows succeeded", procs)
            seconds = time.perf_counter() - start
        finally:
            client.destroy()
    finally:
        _stop(procs)
    # recovery_attempts counts starts: a workflow run once has 1.
    _check(url, jobs, "SELECT count(*) FROM dbos.workflow_status",
           "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'",
           "SELECT count(*) FROM dbos.workflow_status WHERE recovery_attempts > 1")
    return seconds
