"""A throwaway PostgreSQL server for the store tests, when the machine has one installed.

The tests use ``LANEWAY_PG_DSN`` when it is set; otherwise they start a
private server from the installed binaries (``initdb``, ``pg_ctl``) in a
temporary directory, listening only on a Unix socket, and remove it after
the session. Without binaries or psycopg the PostgreSQL tests are skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from typing import Any, Iterator


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None if one can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'laneway[postgres]')"
    if not (_binary("initdb") and _binary("pg_ctl")):
        return "no PostgreSQL server installed (initdb, pg_ctl) and LANEWAY_PG_DSN not set"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a private server; yield its URL; stop it and delete its files."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    assert initdb and pg_ctl
    base = tempfile.mkdtemp(prefix="laneway-pg-")
    data, sock, logfile = os.path.join(base, "data"), os.path.join(base, "sock"), os.path.join(base, "server.log")
    os.mkdir(sock)
    run_as: dict = {}
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        user = pwd.getpwnam("postgres")
        for path in (base, sock):
            os.chown(path, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid}
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "check": True, "timeout": 120}
    try:
        subprocess.run([initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"], **quiet, **run_as)
        options = f"-k {sock} -c listen_addresses='' -F"
        subprocess.run([pg_ctl, "-D", data, "-l", logfile, "-o", options, "-w", "start"], **quiet, **run_as)
        try:
            yield f"postgresql://postgres@/postgres?host={sock}"
        finally:
            subprocess.run([pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"], **quiet, **run_as)
    except subprocess.CalledProcessError as exc:
        log = open(logfile).read() if os.path.exists(logfile) else ""
        raise RuntimeError(f"throwaway PostgreSQL failed: {exc.stderr.decode(errors='replace')}\n{log}") from exc
    finally:
        shutil.rmtree(base, ignore_errors=True)
