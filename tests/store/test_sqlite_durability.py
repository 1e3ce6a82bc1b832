"""A committed SQLite write survives a SIGKILL of the writing process."""

import signal
import subprocess
import sys

import pytest

from laneway.store import SQLiteStore

CHILD = """
import sys, threading
from laneway.store import SQLiteStore
s = SQLiteStore(sys.argv[1])
s.put("ns", "k", b"committed")
s.append_version("v", "k", b"v1")
print("WRITTEN", flush=True)
threading.Event().wait()
"""


@pytest.mark.multiprocess
@pytest.mark.chaos
def test_committed_writes_survive_sigkill(tmp_path):
    db = tmp_path / "d.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "WRITTEN"
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
    store = SQLiteStore(db)
    try:
        assert store.get("ns", "k") == b"committed" and store.get_version("v", "k") == (1, b"v1")
    finally:
        store.close()


def test_opening_an_unusable_path_is_a_store_error(tmp_path):
    from laneway.errors import StoreError

    with pytest.raises(StoreError, match="cannot open"):
        SQLiteStore(tmp_path / "missing-dir" / "x.db")
