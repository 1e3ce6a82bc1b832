import contextlib
import os
import subprocess
import urllib.parse
import uuid

import pytest
from _pytest.doctest import DoctestModule

from .pg_server import throwaway_server, unavailable_reason


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


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path, parent):
    """Docstring examples are collected from laneway/ only: test helpers such as
    ``workflow/crash_child.py`` are scripts that read ``sys.argv`` when imported."""
    collected = yield
    return [c for c in collected if not isinstance(c, DoctestModule)]
