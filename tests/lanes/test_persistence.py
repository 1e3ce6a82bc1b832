"""Pending commands and dead letters survive the process: a SIGKILLed child's queue runs exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from laneway import Orchestrator
from laneway.lanes import ToolRegistry, default_registry
from laneway.store import SQLiteStore
from tests.lanes.support import WAIT, lane, start_lanes

ROOT = Path(__file__).resolve().parents[2]

CRASHING_CHILD = textwrap.dedent("""
    import sys, threading
    from laneway import Orchestrator
    from laneway.lanes import LaneConfig
    import tests.lanes.durable_tools  # registers the tools under their names
    db, log = sys.argv[1], sys.argv[2]
    orch = Orchestrator(name="first", store=db)
    lanes = orch.start_lanes(lanes=[LaneConfig("work", priority=0, max_concurrency=2)])
    try:
        lanes.submit("work", "durable_fail", {"tag": "bad"}).result(timeout=30)
    except RuntimeError:
        pass
    lanes.pause("work")
    for i in range(20):
        lanes.submit("work", "durable_echo", {"tag": f"c{i}", "log": log})
    print("READY", flush=True)
    threading.Event().wait()  # hold the queued commands until the parent SIGKILLs us
""")

RECOVERING_CHILD = textwrap.dedent("""
    import sys
    from laneway import Orchestrator
    from laneway.lanes import LaneConfig
    db = sys.argv[1]
    # The tools module is not imported here: recovery imports it from the persisted record.
    orch = Orchestrator(name="second", store=db)
    lanes = orch.start_lanes(lanes=[LaneConfig("work", priority=0, max_concurrency=2)])
    print("recovered", len(lanes.recovered))
    print("drained", lanes.drain(30).drained)
    print("letters", ",".join(sorted(x.error for x in lanes.dead_letters("work"))))
    orch.shutdown()
""")


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.multiprocess
@pytest.mark.chaos
def test_queued_commands_of_a_sigkilled_process_run_exactly_once_in_the_next(tmp_path):
    db, log = str(tmp_path / "lanes.db"), tmp_path / "runs.log"
    first = _python(CRASHING_CHILD, db, str(log))
    try:
        line = first.stdout.readline()
        assert line.strip() == "READY", first.stderr.read()
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(WAIT)
    assert first.returncode == -signal.SIGKILL and not log.exists()

    second = _python(RECOVERING_CHILD, db)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "recovered 20" in out and "drained True" in out
    assert "cannot work" in out  # the dead letter written before the crash survived too
    runs = log.read_text().split()
    assert sorted(runs) == sorted(f"c{i}" for i in range(20))  # every one, each exactly once
    store = SQLiteStore(db)
    try:
        assert store.items("lanes.pending") == []
    finally:
        store.close()


def test_close_leaves_queued_commands_in_the_store_for_the_next_manager(tmp_path):
    db = str(tmp_path / "lanes.db")
    log = tmp_path / "runs.log"
    import tests.lanes.durable_tools  # noqa: F401  - registers durable_echo

    with Orchestrator(name="one", store=db, shutdown_timeout=5) as orch:
        lanes = start_lanes(orch, [lane("work")], store=db, tools=ToolRegistry(parent=default_registry))
        lanes.pause("work")
        handles = [lanes.submit("work", "durable_echo", {"tag": f"t{i}", "log": str(log)}) for i in range(3)]
        report = lanes.close(0.01)
    assert report.persisted == tuple(h.command_id for h in handles) and report.dead_lettered == ()

    with Orchestrator(name="two", store=db) as orch:
        lanes = start_lanes(orch, [lane("work")], store=orch.store, tools=ToolRegistry(parent=default_registry))
        assert [h.command_id for h in lanes.recovered] == [h.command_id for h in handles]
        assert [h.result(timeout=WAIT) for h in lanes.recovered] == ["t0", "t1", "t2"]
    assert log.read_text().split() == ["t0", "t1", "t2"]


def test_a_persisted_command_whose_tool_is_gone_is_dead_lettered_not_dropped(tmp_path):
    db = str(tmp_path / "lanes.db")
    with Orchestrator(name="one", store=db, shutdown_timeout=5) as orch:
        lanes = start_lanes(orch, [lane("work")], store=orch.store)
        lanes.tools.register(lambda: 1, name="ephemeral")
        lanes.pause("work")
        lost = lanes.submit("work", "ephemeral")
        assert lanes.close(0.01).persisted == (lost.command_id,)
    with Orchestrator(name="two", store=db) as orch:
        lanes = start_lanes(orch, [lane("work")], store=orch.store)
        assert lanes.recovered == ()
        [letter] = lanes.dead_letters("work")
        assert letter.work_id == lost.command_id and "could not recover" in letter.reason
        assert orch.store.items("lanes.pending") == []


@pytest.mark.timeout(30)
def test_a_drain_returns_only_after_the_ended_commands_left_the_store(tmp_path, monkeypatch):
    # A slow store: the delete of an ended command's record runs (outside the scheduler's lock)
    # well after the command left the scheduler. "Drained" must still mean the store holds nothing.
    import time

    from laneway.lanes._persist import PendingStore

    real_delete = PendingStore.delete

    def slow_delete(self: PendingStore, command_id: str) -> None:
        time.sleep(0.2)  # a slow disk, not a wait for anything
        real_delete(self, command_id)

    monkeypatch.setattr(PendingStore, "delete", slow_delete)
    db = str(tmp_path / "lanes.db")
    with Orchestrator(name="one", store=db, shutdown_timeout=5) as orch:
        lanes = start_lanes(orch, [lane("work")], store=orch.store, tools=ToolRegistry(parent=default_registry))
        core = lanes._core

        def until_drain_waits() -> str:
            # Ends only once the drain below waits, so its end is what wakes the drain.
            deadline = time.monotonic() + WAIT
            while not core.quiet_waiters and time.monotonic() < deadline:
                threading.Event().wait(0.001)
            return "done"

        lanes.tools.register(until_drain_waits, name="until_drain_waits")
        handle = lanes.submit("work", "until_drain_waits")
        assert lanes.drain(WAIT).drained
        assert orch.store.items("lanes.pending") == []  # the record went before the drain returned
        assert handle.result(timeout=WAIT) == "done"
