"""No worker process outlives its pool: clean shutdown, interrupted parents, SIGKILLed parents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from laneway import Orchestrator
from laneway.errors import SystemShutdown, WorkerDied

from . import tasks
from .conftest import child_pids, wait_gone, wait_until

pytestmark = pytest.mark.multiprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OWNER = textwrap.dedent("""
    import json, signal, sys, threading
    from laneway import Orchestrator
    if __name__ == "__main__":
        # A shell starts background jobs with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: the SIGINT case would not end this parent at all.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        orch = Orchestrator(name="owner")
        pool = orch.start_pool(workers=2)
        assert pool.wait_ready(timeout=60)
        assert pool.submit(pow, 2, 5).get(timeout=60) == 32
        print(json.dumps([w.pid for w in pool.workers()]), flush=True)
        threading.Event().wait()  # until the test ends this parent
""")


def test_orchestrator_shutdown_leaves_no_process_or_thread_behind():
    threads_before = set(threading.enumerate())
    orch = Orchestrator(name="clean")
    pool = orch.start_pool(workers=3)
    assert pool.wait_ready(timeout=60)
    assert [f.get(30) for f in [pool.submit(tasks.inc, i) for i in range(30)]] == list(range(1, 31))
    pids = {w.pid for w in pool.workers()}
    assert len(pids) == 3 and pids <= child_pids()
    report = orch.shutdown(timeout=10)
    assert report.clean, report
    assert wait_gone(pids, 5) == set() and not pids & child_pids()
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.is_alive() and "laneway-pool" in t.name
                or "spawner" in t.name]
    assert leftover == []


def test_shutdown_kills_a_running_task_after_the_grace_period_and_dead_letters_queued_ones(tmp_path):
    orch = Orchestrator(name="grace")
    pool = orch.start_pool(workers=1, window=1)
    assert pool.wait_ready(timeout=60)
    running = pool.submit(tasks.hang)
    queued = pool.submit(tasks.inc, 1)
    assert wait_until(lambda: pool.workers()[0].current_task == "pool-task-1", what="the hang to be sent")
    pid = pool.workers()[0].pid
    orch.shutdown(timeout=0.5)
    with pytest.raises(WorkerDied, match="pool shut down while it ran a task"):
        running.get(10)
    with pytest.raises(SystemShutdown):
        queued.get(10)
    assert {l.work_id for l in orch.dead_letters.list("pool")} == {"pool-task-1", "pool-task-2"}
    assert wait_gone({pid}, 5) == set()


@pytest.mark.chaos
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_die_with_their_parent_however_it_ends(tmp_path, sig):
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    env = dict(os.environ, PYTHONPATH=ROOT)
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = set(json.loads(owner.stdout.readline()))
        assert len(pids) == 2 and not wait_gone(pids, 0.01) == set()
        owner.send_signal(sig)
        owner.wait(timeout=30)
        assert wait_gone(pids, 15) == set(), f"workers outlived a parent ended by {sig.name}"
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()
