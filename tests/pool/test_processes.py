"""The pool with real worker processes: results, errors, deaths, timeouts, recycling."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from laneway.errors import RemoteError, SerializationError, TaskTimeout, WorkerDied
from laneway.pool import WorkerState

from . import tasks
from .conftest import wait_gone, wait_until

pytestmark = pytest.mark.multiprocess


def live_pids(pool):
    return {w.pid for w in pool.workers() if w.state in (WorkerState.IDLE, WorkerState.BUSY)}


def test_results_kwargs_lambdas_and_closures_run_in_other_processes(make_pool):
    pool = make_pool(workers=2)
    offset = 10
    assert pool.submit(tasks.add, 1, 2, c=3).get(30) == 6
    assert pool.submit(lambda x: x * offset, 4).get(30) == 40
    pids = {pool.submit(tasks.pid).get(30) for _ in range(20)}
    assert os.getpid() not in pids and pids <= live_pids(pool)


def test_exceptions_come_back_with_the_remote_traceback(make_pool):
    pool = make_pool(workers=1)
    with pytest.raises(RemoteError) as info:
        pool.submit(tasks.boom, "kaputt").get(30)
    err = info.value
    assert err.type_name == "builtins.ValueError" and isinstance(err.__cause__, ValueError)
    assert 'tasks.py", line' in err.remote_traceback and "raise ValueError(text)" in err.remote_traceback
    assert "kaputt" in str(err)


def test_unpicklable_function_argument_or_result_is_a_serialization_error(make_pool):
    pool = make_pool(workers=1)
    lock = threading.Lock()
    with pytest.raises(SerializationError, match="function"):
        pool.submit(lambda: lock)  # the closure captures a lock
    with pytest.raises(SerializationError, match=r"argument #1 \(lock\)"):
        pool.submit(tasks.add, 1, threading.Lock())
    with pytest.raises(SerializationError, match="result"):
        pool.submit(tasks.unpicklable_result).get(30)
    assert pool.statistics().submitted == 1  # the two bad submits never entered the queue


def test_worker_statistics_report_pid_state_tasks_rss_and_cpu(make_pool, backend):
    pool = make_pool(workers=2)
    for f in [pool.submit(tasks.inc, i) for i in range(50)]:
        f.get(30)
    stats = wait_until(lambda: (ws := pool.workers()) and all(w.rss > 0 for w in ws) and ws, what="heartbeats")
    assert [w.name for w in stats] == ["pool/workers/w1", "pool/workers/w2"]
    for w in stats:
        proc = psutil.Process(w.pid)
        if backend == "ray":  # an actor process that Ray's raylet started
            assert proc.name().startswith("ray::"), proc.name()
        else:
            assert "laneway" in " ".join(proc.cmdline()) or proc.ppid() == os.getpid()
        assert w.state is WorkerState.IDLE and w.host and not w.remote and w.current_task is None
    assert sum(w.tasks_done for w in stats) == 50
    s = pool.statistics()
    assert (s.workers, s.completed, s.queued, s.in_flight) == (2, 50, 0, 0)


def test_sigkill_is_detected_at_once_and_the_task_retried_on_another_worker(make_pool, orch, backend, tmp_path):
    # Heartbeats are far too slow here to notice the death: only the pidfd (or Ray's actor death) can.
    pool = make_pool(workers=2, heartbeat_timeout_s=60)
    go = tmp_path / "go"
    fut = pool.submit(tasks.wait_for_file, str(go), "done")
    victim = wait_until(lambda: next((w for w in pool.workers() if w.current_task), None), what="task start")
    with orch.events.subscribe("pool.worker.lost") as sub:
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        event = sub.get(timeout=30)
        detected_in = time.monotonic() - killed_at
    expected = "killed by SIGKILL" if backend == "zmq" else "ray actor died"
    assert event.data["reason"].startswith(expected) and event.data["pid"] == victim.pid, event.data
    assert backend == "ray" or event.data["reason"] == expected
    assert detected_in < 2.0, detected_in  # the issue asks 0.5 s; generous for a loaded CI machine
    go.touch()
    assert fut.get(30) == "done"
    s = pool.statistics()
    assert (s.retried, s.worker_deaths, s.dead_lettered) == (1, 1, 0)
    assert pool.wait_ready(2, timeout=30) and victim.pid not in live_pids(pool)


@pytest.mark.chaos
@pytest.mark.parametrize("task, reason", [
    (tasks.segfault, "killed by SIGSEGV"),
    (tasks.exit_hard, "exited with code 3"),
])
def test_a_task_that_kills_its_worker_is_dead_lettered_after_its_attempts(make_pool, orch, backend, task, reason):
    pool = make_pool(workers=2)
    with pytest.raises(WorkerDied) as info:
        pool.options(attempts=2).submit(task).get(60)
    if backend == "ray":  # Ray reports the death of the actor, not the signal or exit code
        assert info.value.reason.startswith("ray actor died"), info.value.reason
        reason = info.value.reason
    assert info.value.reason == reason and f"worker pid {info.value.pid} {reason}" in str(info.value)
    (letter,) = orch.dead_letters.list("pool")
    assert letter.reason == f"worker pid {info.value.pid} {reason}" and letter.attempts == 2
    assert pool.statistics().worker_deaths == 2
    assert pool.wait_ready(2, timeout=30)
    assert pool.submit(tasks.inc, 1).get(30) == 2  # the pool is whole again


@pytest.mark.chaos
def test_a_hanging_task_times_out_and_its_worker_is_replaced(make_pool):
    pool = make_pool(workers=1)
    before = live_pids(pool)
    with pytest.raises(TaskTimeout):
        pool.options(timeout=0.5).submit(tasks.hang).get(30)
    assert wait_gone(before, 15) == set()
    assert pool.submit(tasks.pid).get(30) not in before
    assert pool.statistics().timed_out == 1


@pytest.mark.chaos
def test_a_stopped_worker_misses_heartbeats_and_is_killed(make_pool, tmp_path):
    pool = make_pool(workers=2, heartbeat_s=0.1, heartbeat_timeout_s=1.0)
    go = tmp_path / "go"
    fut = pool.submit(tasks.wait_for_file, str(go), "ok")
    victim = wait_until(lambda: next((w for w in pool.workers() if w.current_task), None), what="task start")
    os.kill(victim.pid, signal.SIGSTOP)
    try:
        assert wait_gone({victim.pid}, 30) == set()
    finally:
        try:
            os.kill(victim.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    go.touch()
    assert fut.get(30) == "ok" and pool.statistics().retried == 1


def test_workers_are_recycled_after_max_tasks(make_pool):
    pool = make_pool(workers=1, max_tasks_per_worker=3)
    futs = [pool.submit(tasks.pid) for _ in range(7)]  # all at once: recycling must still count exactly
    pids = [f.get(30) for f in futs]
    assert pids == [pids[0]] * 3 + [pids[3]] * 3 + [pids[6]] and len(set(pids)) == 3
    assert pool.statistics().recycled >= 2 and pool.statistics().worker_deaths == 0


def test_workers_above_the_memory_limit_are_recycled(make_pool):
    pool = make_pool(workers=1, max_memory_mb=120, heartbeat_s=0.1)
    fat = pool.submit(tasks.grow_memory, 200).get(30)
    assert wait_gone({fat}, 30) == set()
    assert pool.submit(tasks.pid).get(30) != fat and pool.statistics().recycled == 1


def test_cpu_bound_tasks_run_in_parallel_across_workers(make_pool):
    pool = make_pool(workers=2, window=1)
    futs = [pool.submit(tasks.cpu, 200_000) for _ in range(8)]
    assert len({f.get(60) for f in futs}) == 1
    assert all(w.tasks_done > 0 for w in pool.workers())


def test_done_callbacks_run_off_the_io_thread_and_may_submit_into_a_full_queue(make_pool, tmp_path):
    pool = make_pool(workers=1, max_queue=2)
    chained, seen = [], threading.Event()

    def chain(_):
        chained.append(threading.current_thread().name)
        chained.extend(pool.submit(tasks.inc, i) for i in range(10))  # blocks while the queue is full
        seen.set()

    # The task may end only after its callback is added: a callback added to a finished future
    # runs at once on the adding thread (concurrent.futures' rule), and a tiny task can finish
    # within its own submit call.
    go = tmp_path / "go"
    pool.submit(tasks.wait_for_file, str(go), 0).add_done_callback(chain)
    go.touch()
    assert seen.wait(30)
    assert chained[0].startswith("laneway-pool-results")
    assert [f.get(30) for f in chained[1:]] == list(range(1, 11))
