"""The pool on Ray: each worker a Ray actor, with laneway's own retries, timeouts and supervision.

One local Ray (2 CPUs) serves the whole module; each test starts its own pool on it.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra: pip install 'laneway[ray]'")

from laneway import Orchestrator  # noqa: E402
from laneway.errors import ConfigError, RemoteError, TaskTimeout, WorkerDied  # noqa: E402
from laneway.lanes import ToolRegistry, tool  # noqa: E402
from laneway.pool import WorkerState  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.multiprocess]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def orch(ray_session):
    o = Orchestrator(name="ray-test", ask_timeout=60)
    yield o
    o.shutdown(timeout=15)


@pytest.fixture
def pool(orch):
    p = orch.start_pool(backend="ray", workers=2, heartbeat_s=0.2)
    assert p.wait_ready(2, timeout=60), p.workers()
    return p


def wait_until(pred, timeout: float = 30.0, what: str = "condition"):
    """Poll ``pred`` until it is truthy (a deadline, not a sleep to let things settle)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def ready_workers(pool):
    return [w for w in pool.workers() if w.state in (WorkerState.IDLE, WorkerState.BUSY)]


def inc(x):
    return x + 1


def fails_deep(x):
    def inner():
        raise ValueError(f"bad input {x}")

    inner()


def exit_process(code):
    os._exit(code)


def exit_once(marker: str):
    """Kill the worker the first time (marker absent), succeed on the retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died once")
        os._exit(1)
    return f"survived in {os.getpid()}"


def my_pid(_=None):
    return os.getpid()


def slow_square(i):
    time.sleep(0.02)
    return i * i


# --- results, errors, statistics ------------------------------------------------------


def test_results_and_remote_tracebacks(pool):
    futures = [pool.submit(inc, i) for i in range(500)]
    assert [f.get(timeout=60) for f in futures] == list(range(1, 501))
    with pytest.raises(RemoteError) as info:
        pool.submit(fails_deep, 7).get(timeout=60)
    err = info.value
    assert isinstance(err.__cause__, ValueError) and "bad input 7" in str(err.__cause__)
    assert "fails_deep" in err.remote_traceback and "inner" in err.remote_traceback
    assert "ValueError: bad input 7" in err.remote_traceback
    stats = pool.statistics()
    assert (stats.backend, stats.completed, stats.failed) == ("ray", 500, 1)


def test_worker_statistics_name_actor_processes_and_node(pool):
    futures = [pool.submit(my_pid) for _ in range(40)]
    ran_in = {f.get(timeout=60) for f in futures}
    workers = wait_until(lambda: [w for w in ready_workers(pool) if w.rss > 0] == ready_workers(pool)
                         and ready_workers(pool), what="heartbeats with memory use")
    assert len(workers) == 2
    pids = {w.pid for w in workers}
    assert ran_in <= pids and os.getpid() not in pids
    driver_node = ray.get_runtime_context().get_node_id()
    for w in workers:
        assert psutil.Process(w.pid).cmdline()[0].startswith("ray::"), "pid is not a Ray worker process"
        assert (w.node, w.host, w.remote) == (driver_node, socket.gethostname(), False)
    wait_until(lambda: sum(w.tasks_done for w in pool.workers()) == 40, what="tasks_done to add up")
    assert pool.backend.describe()["address"] == "local"


# --- failures: timeouts, deaths, retries, dead letters -----------------------------------


def test_timeout_kills_the_actor_and_the_worker_is_replaced(pool):
    before = {w.worker_id: w.pid for w in ready_workers(pool)}
    fut = pool.submit(time.sleep, 60, timeout=0.5)
    with pytest.raises(TaskTimeout, match="timeout"):
        fut.get(timeout=30)
    killed = [wid for wid in before if wid not in {w.worker_id for w in pool.workers()}]
    assert len(killed) == 1, "exactly the worker running the task is replaced"
    psutil.Process(before[killed[0]]).wait(timeout=30) if psutil.pid_exists(before[killed[0]]) else None
    wait_until(lambda: len(ready_workers(pool)) == 2, timeout=60, what="the replacement worker")
    assert pool.submit(inc, 1).get(timeout=60) == 2
    stats = pool.statistics()
    assert stats.timed_out == 1 and stats.restarts >= 1


def test_dead_actor_is_retried_then_dead_lettered_with_the_reason(pool, orch, tmp_path):
    assert pool.submit(exit_once, str(tmp_path / "marker"), attempts=2).get(timeout=90).startswith("survived")
    with pytest.raises(WorkerDied) as info:
        pool.submit(exit_process, 3, attempts=2).get(timeout=90)
    assert "ray actor died" in info.value.reason and "2 attempt" in str(info.value)
    (letter,) = orch.dead_letters.list("pool")
    assert letter.attempts == 2 and "ray actor died" in letter.reason
    stats = pool.statistics()
    assert stats.retried == 2 and stats.worker_deaths == 3 and stats.dead_lettered == 1
    wait_until(lambda: len(ready_workers(pool)) == 2, timeout=60, what="restarted workers")
    assert pool.submit(inc, 41).get(timeout=60) == 42


def test_ray_kill_from_outside_is_a_worker_failure(pool):
    (victim, _) = ready_workers(pool)
    handle = next(s.handle for s in pool.backend._slots.values() if s.wid == victim.worker_id)
    ray.kill(handle)
    wait_until(lambda: victim.worker_id not in {w.worker_id for w in pool.workers()}, what="the death to be seen")
    wait_until(lambda: len(ready_workers(pool)) == 2, timeout=60, what="the replacement worker")
    assert pool.statistics().worker_deaths == 1


def test_shutdown_stops_every_actor_process(orch):
    pool = orch.start_pool(backend="ray", workers=2)
    assert pool.wait_ready(2, timeout=60)
    pids = [w.pid for w in pool.workers()]
    assert pool.submit(inc, 1).get(timeout=60) == 2
    pool.shutdown(timeout=10)
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=30)
    assert not alive, f"actor processes outlived the pool: {alive}"
    assert pool.statistics().worker_deaths == 0, "graceful stops are not deaths"


@pytest.mark.chaos
def test_chaos_sigkill_actor_processes_under_load_accounts_for_every_task(pool, orch):
    n = 300
    # Even tasks may not be retried, so kills under them must end in the dead-letter queue.
    futures = [pool.submit(slow_square, i, attempts=1 if i % 2 == 0 else 3) for i in range(n)]
    kills = 0
    for target in (40, 100, 160, 220):
        wait_until(lambda: pool.statistics().completed >= target, timeout=90, what=f"{target} tasks done")
        busy = wait_until(lambda: [w for w in pool.workers() if w.state is WorkerState.BUSY and w.pid],
                          timeout=60, what="a busy worker")
        os.kill(busy[0].pid, signal.SIGKILL)
        kills += 1
    ok = died = 0
    for i, fut in enumerate(futures):
        try:
            assert fut.get(timeout=120) == i * i
            ok += 1
        except WorkerDied as exc:
            assert "ray actor died" in exc.reason
            died += 1
    letters = orch.dead_letters.list("pool")
    assert ok + died == n and len(letters) == died
    assert all("ray actor died" in letter.reason for letter in letters)
    stats = pool.statistics()
    assert stats.worker_deaths == kills and stats.completed == ok and stats.dead_lettered == died
    wait_until(lambda: len(ready_workers(pool)) == 2, timeout=60, what="restarted workers")
    assert pool.submit(inc, 1).get(timeout=60) == 2


# --- the rest of laneway runs unchanged on Ray ----------------------------------------------


def test_router_and_lanes_run_cpu_bound_work_on_ray_actors(orch):
    pool = orch.start_pool(backend="ray", workers=2)
    assert pool.wait_ready(2, timeout=60)
    actor_pids = {w.pid for w in pool.workers()}
    orch.register_agent("crunch", "optimizer", {"math"}, 2, math.factorial, cpu_bound=True)
    orch.register_agent("where", "executor", {"pid"}, 2, my_pid, cpu_bound=True)
    assert orch.router.run(10, capabilities="math", timeout=60) == 3628800
    assert orch.router.run("x", capabilities="pid", timeout=60) in actor_pids
    registry = ToolRegistry()
    tool(registry=registry, name="where", cpu_bound=True)(my_pid)
    lanes = orch.start_lanes(tools=registry)
    assert lanes.call("query", "where", {}, wait_timeout=60) in actor_pids
    assert pool.statistics().completed >= 3


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("options, match", [
    ({"actor_options": {"max_restarts": 3}}, "max_restarts"),
    ({"actor_options": {"max_task_retries": -1}}, "max_task_retries"),
    ({"address": "auto", "num_cpus": 2}, "num_cpus"),
    ({"heartbeat_s": 0}, "heartbeat_s"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_ray_options_are_config_errors(orch, options, match):
    with pytest.raises(ConfigError, match=match):
        orch.start_pool(backend="ray", workers=1, **options)


def test_recycling_after_max_tasks_stops_actors_gracefully(orch):
    pool = orch.start_pool(backend="ray", workers=1, max_tasks_per_worker=40)
    assert pool.wait_ready(1, timeout=60)
    futures = [pool.submit(my_pid) for _ in range(120)]
    pids = [f.get(timeout=90) for f in futures]
    served = [pids.count(p) for p in dict.fromkeys(pids)]  # per actor, in order
    # An actor is recycled after its 40th task, once the few already sent to it are done.
    assert len(served) >= 2 and all(n >= 40 for n in served[:-1]), served
    stats = pool.statistics()
    assert stats.recycled >= len(served) - 1 and stats.worker_deaths == 0 and stats.completed == 120
