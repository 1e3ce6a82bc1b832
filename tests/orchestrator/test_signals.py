"""SIGTERM inside ``with Orchestrator(...)`` is a graceful stop; a second SIGTERM is an immediate one."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from laneway import Orchestrator
from laneway.lanes import LaneConfig

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]


class Child:
    """The child program, its stdout read line by line on a thread (select() cannot see a text buffer)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def line(self, timeout: float) -> str:
        try:
            got = self.lines.get(timeout=timeout)
        except queue.Empty:
            got = None
        if got is None:
            self.proc.kill()
            pytest.fail(f"no line from the child within {timeout}s; stderr: {self.proc.stderr.read()[-3000:]}")
        return got


def _start(tmp_path: Path, mode: str) -> tuple[Child, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.orchestrator.sigterm_child", str(tmp_path / "state.db"),
         str(tmp_path / "log.txt"), mode],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    child = Child(proc)
    info = json.loads(child.line(60))
    assert child.line(30) == "ready"
    return child, info


def _gone(pid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def test_sigterm_drains_persists_pending_commands_stops_workers_and_exits_0(tmp_path):
    child, info = _start(tmp_path, "queued")
    child.proc.send_signal(signal.SIGTERM)
    assert child.line(30) == "signal SIGTERM"
    assert child.proc.wait(timeout=60) == 0, child.proc.stderr.read()[-3000:]
    for pid in info["pids"]:
        assert _gone(pid, 10), f"worker {pid} outlived the orchestrator"
    endpoint = info["endpoint"]
    if endpoint.startswith("ipc://"):
        assert not Path(endpoint[len("ipc://"):]).parent.exists(), "the pool's socket folder was left behind"
    # The five commands were queued in a paused lane: they are in the store, and the next
    # orchestrator on it runs each of them once.
    import tests.lanes.durable_tools  # noqa: F401

    with Orchestrator(name="after", store=tmp_path / "state.db", handle_signals=False) as orch:
        lanes = orch.start_lanes(lanes=[LaneConfig("work", priority=1, max_concurrency=1)])
        assert lanes.drain(timeout=30).drained
    assert sorted((tmp_path / "log.txt").read_text().split()) == [f"t{i}" for i in range(5)]


def test_a_second_sigterm_ends_the_process_at_once(tmp_path):
    child, info = _start(tmp_path, "stuck")
    proc = child.proc
    proc.send_signal(signal.SIGTERM)
    assert child.line(30) == "signal SIGTERM"
    # The first signal started a shutdown that waits up to 30 s for the stuck command.
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    assert proc.returncode == -signal.SIGTERM
    for pid in info["pids"]:
        assert _gone(pid, 10), f"worker {pid} outlived its SIGTERMed parent"
    assert time.monotonic() - t0 < 20  # generous: the shutdown alone would take 30 s


def test_the_handler_is_installed_only_inside_the_block_and_a_program_handler_is_kept():
    # Start from the default action whatever an earlier test left (ray.init installs its own handler).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with Orchestrator(name="inside") as orch:
        assert signal.getsignal(signal.SIGTERM) == orch._on_sigterm
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    mine = lambda signum, frame: None  # noqa: E731
    signal.signal(signal.SIGTERM, mine)
    try:
        with Orchestrator(name="kept"):
            assert signal.getsignal(signal.SIGTERM) is mine
        with Orchestrator(name="off", handle_signals=False):
            pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
