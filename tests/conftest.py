import contextlib
import os
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import pytest
from _pytest.doctest import DoctestModule

from .pg_server import throwaway_server, unavailable_reason

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pg_dsn():
    """PostgreSQL for the tests: LANEWAY_PG_DSN (a postgresql:// URL) if set, else a private server
    started from the installed binaries; skipped with the reason when neither is there."""
    dsn = os.environ.get("LANEWAY_PG_DSN")
    if dsn:
        yield dsn
        return
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:
        try:
            dsn = stack.enter_context(throwaway_server())
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            # An installed server this sandbox cannot run is an environment fact, not a
            # store bug: skip, and -ra prints why.
            pytest.skip(f"could not start a private PostgreSQL server: {exc}")
        yield dsn


@pytest.fixture
def pg_database(pg_dsn):
    """A URL of a fresh, empty database on that server, dropped after the test."""
    import psycopg

    name = f"laneway_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield urllib.parse.urlunsplit(urllib.parse.urlsplit(pg_dsn)._replace(path=f"/{name}"))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_location(request, tmp_path):
    """What ``Orchestrator(store=...)`` takes, on each backend: a SQLite file path or a fresh PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return request.getfixturevalue("pg_database")


class LanewayWorkers:
    """``laneway worker`` processes a test starts (pool workers, or actor hosts with ``--actors``).

    Each runs this checkout's code, heartbeats every 0.1 s, writes its log (stderr)
    to a file, and is killed and reaped when the test ends, whatever happened.
    """

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self, endpoint: str, *args: str) -> subprocess.Popen:
        """Start ``laneway worker --connect endpoint --heartbeat 0.1 *args``; returns the process."""
        log_path = self._log_dir / f"worker-{len(self._procs)}.log"
        cmd = [sys.executable, "-m", "laneway", "worker", "--connect", endpoint, "--heartbeat", "0.1", *args]
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=log_file)
        self._procs.append((proc, log_path))
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        """What ``proc`` has logged so far."""
        return next(path for p, path in self._procs if p is proc).read_text()

    def kill_all(self) -> None:
        for proc, _ in self._procs:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def laneway_workers(tmp_path):
    """Starts ``laneway worker`` processes: ``laneway_workers.start(endpoint, *args)``; all killed at the end."""
    workers = LanewayWorkers(tmp_path)
    yield workers
    workers.kill_all()


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path, parent):
    """Docstring examples are collected from laneway/ only: test helpers such as
    ``workflow/crash_child.py`` are scripts that read ``sys.argv`` when imported."""
    collected = yield
    return [c for c in collected if not isinstance(c, DoctestModule)]
