"""Chaos: SIGKILL worker processes under load; every task must end exactly once, accounted for."""

from __future__ import annotations

import os
import random
import signal
import threading

import pytest

from laneway.actors import Backoff, OneForOne, RestForOne
from laneway.errors import PoolDown, SystemShutdown, WorkerDied
from laneway.pool import WorkerState

from . import tasks
from .conftest import wait_until

pytestmark = [pytest.mark.multiprocess, pytest.mark.chaos]

#: Chaos tolerates many restarts; the default intensity would (rightly) give up.
CHAOS_SUPERVISION = OneForOne(max_restarts=10_000, within_s=10, backoff=Backoff(initial_s=0.01, max_s=0.1))


def live_pids(pool):
    return [w.pid for w in pool.workers() if w.pid and w.state in (WorkerState.IDLE, WorkerState.BUSY)]


def _kill(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGKILL)
        return 1
    except ProcessLookupError:
        return 0


def account(orch, pool, futs, expected):
    """Every future ends once: with its value, or with WorkerDied and exactly one dead letter."""
    letters = {l.work_id: l for l in orch.dead_letters.list("pool")}
    ok = dead = 0
    for i, fut in enumerate(futs):
        try:
            value = fut.get(120)
        except WorkerDied as exc:
            dead += 1
            assert "killed by SIGKILL" in str(exc)
        else:
            ok += 1
            assert value == expected(i)
    assert len(letters) == dead, (len(letters), dead)
    assert all(l.reason.startswith("worker pid ") and l.reason.endswith("killed by SIGKILL") for l in letters.values())
    stats = pool.statistics()
    assert (stats.completed, stats.dead_lettered, stats.submitted) == (ok, dead, len(futs))
    assert stats.queued == 0 and stats.in_flight == 0
    return ok, dead


def test_repeated_sigkills_during_a_2000_task_run(make_pool, orch):
    pool = make_pool(workers=3, supervision=CHAOS_SUPERVISION)
    rng = random.Random(1)
    futs = [pool.submit(tasks.sleep_then, 0.001, i) for i in range(2000)]
    killed = set()
    for milestone in range(150, 2000, 150):  # a kill each time the run gets 150 tasks further
        try:
            futs[milestone].get(120)
        except WorkerDied:
            pass
        pids = [p for p in live_pids(pool) if p not in killed]
        if pids and _kill(pid := rng.choice(pids)):
            killed.add(pid)
    ok, dead = account(orch, pool, futs, expected=lambda i: i)
    assert len(killed) >= 6 and ok + dead == 2000 and ok > 1900
    assert pool.statistics().worker_deaths == len(killed)
    assert pool.wait_ready(3, timeout=60) and len(live_pids(pool)) == 3


def test_kill_during_a_submit_burst(make_pool, orch):
    pool = make_pool(workers=2, supervision=CHAOS_SUPERVISION, max_queue=500)
    futs = []
    burst = threading.Thread(target=lambda: futs.extend(pool.submit(tasks.inc, i) for i in range(3000)))
    burst.start()
    killed = 0
    while burst.is_alive() and killed < 6:
        pids = live_pids(pool)
        if pool.statistics().completed > 100 * (killed + 1) and pids:
            killed += _kill(pids[0])
    burst.join(120)
    ok, dead = account(orch, pool, futs, expected=lambda i: i + 1)
    assert ok + dead == 3000 and killed >= 1
    assert pool.wait_ready(2, timeout=60)


def test_kill_every_worker_at_once(make_pool, orch, backend, tmp_path):
    n = 2 if backend == "ray" else 3  # the test's Ray has 2 CPUs, one per actor
    pool = make_pool(workers=n, supervision=CHAOS_SUPERVISION)
    go = tmp_path / "go"
    futs = [pool.submit(tasks.wait_for_file, str(go), i) for i in range(3 * n)]
    wait_until(lambda: all(w.current_task for w in pool.workers()), what="every worker to hold a task")
    before = live_pids(pool)
    assert len(before) == n
    with orch.events.subscribe("pool.worker.lost") as sub:
        for pid in before:
            _kill(pid)
        for _ in before:
            sub.get(timeout=30)
    assert pool.wait_ready(n, timeout=60)
    go.touch()
    assert [f.get(60) for f in futs] == list(range(3 * n))
    stats = pool.statistics()
    assert stats.worker_deaths == n and stats.retried == n and not set(live_pids(pool)) & set(before)


def test_supervisor_that_gives_up_dead_letters_what_is_left(make_pool, orch, tmp_path):
    # The pool root gives up on the first failure of the workers' supervisor: down for good.
    pool = make_pool(workers=1, supervision=OneForOne(max_restarts=1, within_s=60),
                     root_supervision=RestForOne(max_restarts=0))
    fut = pool.options(attempts=5).submit(tasks.wait_for_file, str(tmp_path / "never"))
    queued = pool.submit(tasks.inc, 1)
    for _ in range(2):
        pid = live_pids(pool)[0]
        with orch.events.subscribe("pool.worker.lost") as sub:
            _kill(pid)
            sub.get(timeout=30)
        if _ == 0:
            assert pool.wait_ready(1, timeout=30)
    for future in (fut, queued):
        with pytest.raises(PoolDown, match="gave up") as down:
            future.get(30)
        assert down.value.permanent and "last failure in pool/workers/w1: WorkerDied" in str(down.value)
    assert {l.work_id for l in orch.dead_letters.list("pool")} == {"pool-task-1", "pool-task-2"}
    with pytest.raises(PoolDown, match="gave up"):
        pool.submit(tasks.inc, 2)
    with pytest.raises(PoolDown, match="down for good"):  # at once, not after its timeout
        pool.wait_ready(timeout=600)
    assert isinstance(down.value, SystemShutdown)


@pytest.mark.timeout(120)
def test_the_pool_comes_back_after_its_worker_supervisor_gives_up(make_pool, orch, tmp_path):
    """OTP: the workers' supervisor is a child of the pool root, which restarts it after a backoff."""
    pool = make_pool(workers=1, supervision=OneForOne(max_restarts=0, within_s=60),
                     root_supervision=RestForOne(max_restarts=2, within_s=60, backoff=Backoff(initial_s=3.0)))
    go = tmp_path / "go"
    running = pool.options(attempts=3).submit(tasks.wait_for_file, str(go), "ran")
    wait_until(running.running, what="the task to start")
    queued = pool.submit(tasks.inc, 1)
    with orch.events.subscribe("supervisor.child.restarted") as restarted:
        with orch.events.subscribe("supervisor.escalated") as escalated:
            _kill(live_pids(pool)[0])
            assert escalated.get(timeout=30).source == "pool/workers"
        # Down while the root waits out its backoff: fail fast, naming the cause.
        with pytest.raises(PoolDown, match="killed by SIGKILL") as down:
            pool.wait_ready(timeout=600)
        assert not down.value.permanent
        with pytest.raises(PoolDown, match="killed by SIGKILL"):
            pool.submit(tasks.inc, 2)
        event = restarted.get(timeout=60)
        assert (event.source, event.data["child"]) == ("pool", "workers")
    assert pool.wait_ready(timeout=60)
    go.touch()
    assert running.result(timeout=60) == "ran"  # retried on the replacement (attempt 2 of 3)
    assert queued.result(timeout=60) == 2
    assert pool.submit(tasks.inc, 2).result(timeout=60) == 3
    assert orch.dead_letters.list("pool") == []
