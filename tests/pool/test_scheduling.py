"""The pool's scheduling and accounting, driven through a fake backend (no processes, manual clock)."""

from __future__ import annotations

import random
import threading

import pytest

from laneway.actors import OneForOne

from laneway.errors import ConfigError, PoolFull, RemoteError, SystemShutdown, TaskTimeout, WorkerDied
from laneway.pool import Assignment, Pool, TaskPayload, WorkerState
from laneway.pool._window import PREFETCH_S, SLOW_WINDOW

from .fake_backend import FakeBackend
from .tasks import add, boom, inc


def start(orch, backend=None, **config):
    backend = backend or FakeBackend()
    config.setdefault("workers", 2)
    config.setdefault("supervision", OneForOne(max_restarts=100))  # restart at once: the manual clock stands still
    pool = Pool(orch, backend=backend, **config) if "name" in config else orch.start_pool(backend=backend, **config)
    assert pool.wait_ready(config.get("min_workers", config["workers"]) if backend.auto_ready else 0, timeout=10)
    return pool, backend


def wids(backend):
    return [w for w in backend.started if w not in {k for k, _ in backend.killed} and w not in backend.stopped]


def test_results_errors_and_kwargs_travel_through_the_backend(manual_orch):
    pool, be = start(manual_orch, workers=1)
    f1 = pool.submit(add, 1, 2, c=4)
    f2 = pool.submit(boom, "nope")
    (wid,) = be.pump()
    be.finish(wid, 2)
    assert f1.get(1) == 7
    with pytest.raises(RemoteError) as info:
        f2.get(1)
    assert info.value.type_name == "builtins.ValueError"
    assert "nope" in info.value.remote_traceback and "in boom" in info.value.remote_traceback
    assert isinstance(info.value.__cause__, ValueError)
    stats = pool.statistics()
    assert (stats.submitted, stats.completed, stats.failed, stats.backend) == (2, 1, 1, "fake")


def test_window_starts_small_and_grows_once_tasks_prove_fast(manual_orch):
    pool, be = start(manual_orch, workers=2, window=6)
    futs = [pool.submit(inc, i) for i in range(20)]
    first = be.pump()
    assert sorted(len(v) for v in first.values()) == [SLOW_WINDOW, SLOW_WINDOW]
    w1 = next(iter(first))
    be.finish(w1, 1)  # the manual clock stands still: the task took 0 s, so w1 is fast now
    assert len(be.pump()[w1]) == 6 - (SLOW_WINDOW - 1)
    assert len(be.in_flight(w1)) == 6
    for w in list(be.sent):
        be.finish(w, len(be.in_flight(w)))
    while any(be.pump().values()) or any(be.in_flight(w) for w in be.sent):
        for w in list(be.sent):
            be.finish(w, len(be.in_flight(w)))
    assert [f.get(1) for f in futs] == list(range(1, 21))


def test_tiny_tasks_travel_many_to_a_window_and_millisecond_tasks_few(manual_orch):
    pool, be = start(manual_orch, workers=1)  # the default window
    futs = [pool.submit(inc, i) for i in range(4000)]
    (wid,) = be.pump()
    deepest = 0
    for _ in range(20):  # the manual clock stands still: every task takes 0 s, so the worker proves fast
        be.finish(wid, len(be.in_flight(wid)))
        be.pump()
        deepest = max(deepest, len(be.in_flight(wid)))
    assert deepest == 128  # up to 128 tiny tasks in flight (one message), not 16
    for _ in range(200):  # now every task takes 1 ms: the window drains to about PREFETCH_S of them
        manual_orch.clock.advance(0.001)
        be.finish(wid, 1)
        be.pump()
    assert 0.8 * PREFETCH_S / 0.001 <= len(be.in_flight(wid)) <= PREFETCH_S / 0.001
    while be.in_flight(wid) or be.pump():
        be.finish(wid, len(be.in_flight(wid)))
    assert [f.get(1) for f in futs] == [i + 1 for i in range(4000)]


def test_a_window_follows_the_workers_own_time_per_task_not_the_gaps_between_results(manual_orch):
    """Results 20 ms apart (large payloads in transit, a loaded machine) from a worker that says each task
    took it 0.1 ms: its window opens to the full size. Timed by the gaps alone, the same tasks look slow
    and the window stays at SLOW_WINDOW, where the worker waits a round trip for every other task."""
    pool, be = start(manual_orch, workers=2, window=6)
    futs = [pool.submit(inc, i) for i in range(80)]
    told, gaps_only = be.pump()
    deepest = {told: 0, gaps_only: 0}
    for _ in range(12):
        manual_orch.clock.advance(0.02)
        be.finish(told, 1, busy_s=0.0001)
        be.finish(gaps_only, 1)
        be.pump()
        for wid in deepest:
            deepest[wid] = max(deepest[wid], len(be.in_flight(wid)))
    assert deepest == {told: 6, gaps_only: SLOW_WINDOW}
    while any(be.in_flight(w) for w in deepest):
        for wid in deepest:
            be.finish(wid, len(be.in_flight(wid)), busy_s=0.0001)
        be.pump()
    assert [f.get(1) for f in futs] == list(range(1, 81))


def test_round_robin_alternates_and_least_busy_fills_the_emptiest(manual_orch):
    pool, be = start(manual_orch, workers=2, window=2)
    pool.submit(inc, 1)
    pool.submit(inc, 2)
    first = be.pump()
    assert sorted(len(v) for v in first.values()) == [1, 1]  # one each, not both on one worker

    pool2, be2 = start(manual_orch, backend=FakeBackend(), workers=2, window=2, assignment="least_busy", name="lb")
    a, b = wids(be2)
    pool2.submit(inc, 1)
    be2.pump()
    busy = next(w for w in (a, b) if be2.in_flight(w))
    pool2.submit(inc, 2)
    assert list(be2.pump()) == [b if busy == a else a]


def test_random_assignment_uses_every_worker_with_room(manual_orch):
    pool, be = start(manual_orch, workers=3, window=1, assignment=Assignment.RANDOM)
    pool._core._rng = random.Random(7)
    for i in range(3):
        pool.submit(inc, i)
    assert sorted(len(v) for v in be.pump().values()) == [1, 1, 1]  # window 1: each gets exactly one


def test_dead_worker_retries_the_running_task_and_requeues_the_rest_in_order(manual_orch):
    pool, be = start(manual_orch, workers=1, window=4)
    futs = [pool.options(attempts=2).submit(inc, i) for i in range(2)]
    (w1,) = be.pump()
    be.die(w1)
    assert futs[0].done() is False and futs[1].done() is False
    stats = pool.statistics()
    assert (stats.retried, stats.worker_deaths, stats.queued) == (1, 1, 2)
    # The supervisor restarts the worker (a fresh id) and the same tasks go out again, in order.
    w2 = be.wait_started(2)
    assert w2 != w1 and pool._core.wait_ready(1, 10)
    assert be.pump() == {w2: [1, 2]}
    be.finish(w2, 2)
    assert [f.get(1) for f in futs] == [1, 2]


def test_exhausted_attempts_fail_with_worker_died_and_dead_letter_that_resubmits(manual_orch):
    pool, be = start(manual_orch, workers=1)
    fut = pool.options(attempts=2).submit(inc, 41)
    for n in range(2):
        be.wait_started(n + 1)
        assert pool._core.wait_ready(1, 10)
        (wid,) = be.pump()
        pid = next(w.pid for w in pool.workers() if w.worker_id == wid)
        be.die(wid)
    with pytest.raises(WorkerDied) as info:
        fut.get(1)
    assert info.value.pid == pid and info.value.reason == "killed by SIGKILL"
    assert f"worker pid {pid} killed by SIGKILL" in str(info.value)
    (letter,) = manual_orch.dead_letters.list("pool")
    assert letter.reason == f"worker pid {pid} killed by SIGKILL" and letter.attempts == 2
    assert isinstance(letter.payload, TaskPayload) and letter.work_id == "pool-task-1"
    assert pool.statistics().dead_lettered == 1
    again = manual_orch.dead_letters.resubmit(letter.id)
    be.wait_started(3)
    assert pool._core.wait_ready(1, 10)
    (wid,) = be.pump()
    be.finish(wid)
    assert again.get(1) == 42 and manual_orch.dead_letters.list("pool") == []


def test_timeout_counts_from_the_start_kills_the_worker_and_is_not_retried(manual_orch):
    clock = manual_orch.clock
    pool, be = start(manual_orch, workers=1, window=4)
    slow = pool.options(timeout=5).submit(inc, 1)
    queued_behind = pool.options(timeout=5).submit(inc, 2)
    (wid,) = be.pump()
    clock.advance(4)
    be.finish(wid, 0)
    assert not be.killed
    clock.advance(1.5)
    assert be.killed == [(wid, "task 1 timed out after 5s")]
    with pytest.raises(TaskTimeout, match="ran past its 5s timeout"):
        slow.get(1)
    assert pool.statistics().timed_out == 1
    # The task that was waiting behind it never ran: requeued, its attempt not spent, its clock not started.
    be.wait_started(2)
    assert pool._core.wait_ready(1, 10)
    (w2,) = be.pump()
    clock.advance(4.9)
    be.finish(w2)
    assert queued_behind.get(1) == 3 and len(be.killed) == 1


def test_late_results_are_dropped_and_counted(manual_orch):
    pool, be = start(manual_orch, workers=1)
    fut = pool.submit(inc, 1)
    (wid,) = be.pump()
    wire = be.sent[wid][0]
    be.die(wid)
    be.hub.results(wid, [be.runner.run(wire.task_id, wire.fn_digest, wire.fn_bytes, wire.args_bytes)])
    assert not fut.done() and pool.statistics().late_results == 1


def test_backpressure_blocks_or_raises_pool_full(manual_orch):
    pool, be = start(manual_orch, backend=FakeBackend(auto_ready=False), workers=1, max_queue=2)
    pool.submit_nowait(inc, 1)
    pool.submit(inc, 2)
    with pytest.raises(PoolFull):
        pool.submit_nowait(inc, 3)
    with pytest.raises(PoolFull, match="stayed full"):
        pool.options(queue_timeout=0.05).submit(inc, 3)
    got = []
    blocked = threading.Thread(target=lambda: got.append(pool.submit(inc, 3)))
    blocked.start()
    assert not got
    be.ready(be.started[0])
    be.pump()  # two tasks leave the queue: the blocked submit gets in
    blocked.join(10)
    assert got and pool.statistics().queued == 1


def test_shutdown_dead_letters_queued_tasks_and_refuses_new_ones(manual_orch):
    pool, be = start(manual_orch, backend=FakeBackend(auto_ready=False), workers=1)
    fut = pool.submit(inc, 1)
    pool.shutdown(timeout=1)
    with pytest.raises(SystemShutdown):
        fut.get(1)
    (letter,) = manual_orch.dead_letters.list("pool")
    assert "shut down before it ran" in letter.reason
    with pytest.raises(SystemShutdown):
        pool.submit(inc, 2)
    assert be.closed and be.stopped == be.started


def test_recycles_after_max_tasks_and_above_max_memory(manual_orch):
    pool, be = start(manual_orch, workers=1, max_tasks_per_worker=2, max_memory_mb=100)
    with manual_orch.events.subscribe("pool.worker") as sub:
        futs = [pool.submit(inc, i) for i in range(3)]
        (w1,) = be.pump()
        be.finish(w1, 2)
        sub.wait_for(lambda e: e.key == "pool.worker.recycled", 10)
        assert be.stopped == [w1] and futs[1].get(1) == 2
        be.wait_started(2)
        assert pool._core.wait_ready(1, 10)
        (w2,) = be.pump()
        assert w2 != w1
        be.hub.heartbeat(w2, rss=150 * 2**20)
        assert pool.workers()[0].state is WorkerState.DRAINING
        be.finish(w2)  # memory: recycled once its window is empty
        sub.wait_for(lambda e: e.key == "pool.worker.recycled", 10)
    assert be.stopped == [w1, w2] and pool.statistics().recycled == 2 and futs[2].get(1) == 3


def test_grows_under_pressure_and_shrinks_after_idle(manual_orch):
    clock = manual_orch.clock
    pool, be = start(manual_orch, min_workers=1, max_workers=3, window=1, idle_shrink_s=10, workers=None)
    with manual_orch.events.subscribe("pool.worker") as sub:
        futs = [pool.submit(inc, i) for i in range(6)]
        be.pump()  # w1 takes one; the rest wait: pressure
        sub.wait_for(lambda e: e.key == "pool.worker.added" and e.source == "w2", 10)
        assert pool._core.wait_ready(2, 10)
        be.pump()
        sub.wait_for(lambda e: e.key == "pool.worker.added" and e.source == "w3", 10)
        assert pool._core.wait_ready(3, 10)
        be.pump()
        assert len(be.started) == 3  # never above max_workers
        while any(be.pump().values()) or any(be.in_flight(w) for w in list(be.sent)):
            for w in list(be.sent):
                be.finish(w, len(be.in_flight(w)))
        assert all(f.get(5) is not None for f in futs) and len(be.started) == 3
        removed = set()
        for _ in range(20):
            clock.wait_for_timers(1)
            clock.advance(11)
            while (e := sub.get_nowait()) is not None:
                if e.key == "pool.worker.removed":
                    removed.add(e.source)
            if len(removed) == 2:
                break
            try:
                sub.wait_for(lambda e: e.key == "pool.worker.removed" and removed.add(e.source) is None, 0.2)
            except TimeoutError:
                pass
            if len(removed) == 2:
                break
    assert removed == {"w2", "w3"} and pool._core.count() == 1


@pytest.mark.parametrize("config, match", [
    ({"workers": -1}, "min_workers"),
    ({"min_workers": 3, "max_workers": 2}, "must not exceed"),
    ({"window": 0}, "window"),
    ({"assignment": "fastest"}, "assignment must be one of"),
    ({"max_memory_mb": 0}, "max_memory_mb"),
    ({"supervision": "one_for_one"}, "supervision"),
    ({"backend": "carrier-pigeon"}, "backend must be one of"),
    ({"no_such_option": 1}, "bad option"),
])
def test_bad_config_is_a_config_error(manual_orch, config, match):
    with pytest.raises(ConfigError, match=match):
        manual_orch.start_pool(**config)


def test_bad_task_options_are_config_errors(manual_orch):
    pool, _ = start(manual_orch, workers=1)
    for options in ({"timeout": 0}, {"attempts": 0}, {"attempts": 1.5}, {"queue_timeout": -1},
                    {"dead_letter": "yes"}, {"kwargs": {}}):
        with pytest.raises(ConfigError):
            pool.options(**options)
    with pytest.raises(ConfigError, match="unknown task option"):
        pool.options(attempts=2).options(retries=2)


def test_a_task_cancelled_before_it_is_sent_never_runs(manual_orch):
    pool, be = start(manual_orch, workers=1)
    doomed = pool.submit(inc, 1)
    kept = pool.submit(inc, 2)
    assert doomed.cancel()
    (wid,) = be.pump()
    assert [w.task_id for w in be.sent[wid]] == [2]
    be.finish(wid)
    assert kept.get(1) == 3


class _CannotStart(FakeBackend):
    def start_worker(self, worker_id):
        from laneway.errors import PoolError

        super().start_worker(worker_id)
        raise PoolError(f"could not start worker process {worker_id}: no such executable")


def test_a_pool_whose_workers_cannot_start_fails_its_tasks_fast_with_the_cause(manual_orch):
    from laneway.actors import ChildState
    from laneway.errors import SystemShutdown

    backend = _CannotStart(auto_ready=False)
    with manual_orch.events.subscribe("pool.worker.start_failed") as sub:
        pool = manual_orch.start_pool(backend=backend, workers=1)
        fut = pool.submit(add, 1, 2)
        for failures in (1, 2):
            assert sub.wait_for(lambda e: e.data["failures"] == failures, 10)
            assert manual_orch.clock.wait_for_timers(1, timeout=10)
            manual_orch.clock.advance(5)  # the manager retries after its backoff
        assert sub.wait_for(lambda e: e.data["failures"] == 3, 10)
    with pytest.raises(SystemShutdown, match="workers cannot start: PoolError: .*no such executable"):
        fut.get(timeout=10)
    with pytest.raises(SystemShutdown, match="pool is down"):
        pool.submit(add, 1, 2)
    (letter,) = manual_orch.dead_letters.list("pool")
    assert "no such executable" in letter.reason
    assert all(c.state is not ChildState.RUNNING for c in pool._sup.which_children())


def test_rows_assigned_and_reported_in_the_wire_form_settle_like_records(manual_orch):
    """assign_rows / results_rows: the tuple forms a wire-writing backend uses, one record less per task."""
    from laneway.worker import wire

    pool, be = start(manual_orch, workers=1)
    futs = [pool.submit(inc, i) for i in range(2)] + [pool.submit(boom, "no")]
    late = pool.submit(inc, 10)
    (wid, rows), = pool._core.assign_rows()
    assert [type(r) for r in rows] == [tuple] * len(rows) and rows[0][0] == futs[0]._id
    first = be.runner.run_row(*rows[0][:4])
    assert first[2] == wire.VALUE and first[3] == 1  # the value itself, not a pickle of it
    pool._core.results_rows(wid, [first])
    assert futs[0].get(1) == 1
    (_, more), = pool._core.assign_rows()  # a window of 2 until the worker proves fast; now room for the rest
    pool._core.results_rows(wid, [be.runner.run_row(*r[:4]) for r in rows[1:] + more])
    assert [f.get(1) for f in futs[:2]] == [1, 2] and late.get(1) == 11
    with pytest.raises(RemoteError, match="no"):
        futs[2].get(1)
    stats = pool.statistics()
    assert (stats.submitted, stats.completed, stats.failed, stats.in_flight) == (4, 3, 1, 0)


def test_a_run_of_value_results_settles_together_without_losing_a_force_cancelled_one(manual_orch):
    from laneway.worker import wire

    pool, be = start(manual_orch, workers=1, window=8)
    futs = [pool.submit(inc, i) for i in range(2)]
    (wid, rows), = pool._core.assign_rows()
    assert futs[1].force_cancel()  # given up on while it ran: its result counts as late
    called = []
    told = threading.Event()
    futs[0].add_done_callback(lambda f: (called.append(f.result()), told.set()))
    pool._core.results_rows(wid, [(r[0], True, wire.VALUE, i + 1) for i, r in enumerate(rows)])
    assert futs[0].get(1) == 1 and futs[1].cancelled()
    assert told.wait(5) and called == [1]
    stats = pool.statistics()
    assert (stats.completed, stats.late_results) == (1, 1)



def test_small_scalar_arguments_stay_a_tuple_for_an_inline_backend_and_bytes_everywhere_else(manual_orch):
    """inline_args: no pickle per tiny task; assign() and dead letters still see pickled bytes."""
    import pickle

    class InlineFake(FakeBackend):
        inline_args = True

    pool, be = start(manual_orch, InlineFake(), workers=1, window=8)
    small, big = pool.submit(add, 1, 2), pool.submit(add, [1], [2], c=[3])
    (wid, rows), = pool._core.assign_rows()
    assert rows[0][3] == (1, 2) and type(rows[1][3]) is bytes  # lists and keywords: pickled as before
    pool._core.results_rows(wid, [be.runner.run_row(*r[:4]) for r in rows])
    assert (small.get(1), big.get(1)) == (3, [1, 2, 3])
    task = pool.submit(add, 4, 5)
    (_, wires), = pool._core.assign()  # a backend reading TaskWire gets bytes whatever the task holds
    assert pickle.loads(wires[0].args_bytes) == ((4, 5), None)
    queued = pool._core._workers[wid].window[0]
    assert pickle.loads(queued.payload().args_bytes) == ((4, 5), None)  # what a dead letter resubmits
    w0 = wires[0]
    pool._core.results_rows(wid, [be.runner.run_row(w0.task_id, w0.fn_digest, w0.fn_bytes, w0.args_bytes)])
    assert task.get(1) == 9


def test_a_tiny_submit_never_waits_for_the_lock_the_io_thread_holds_for_a_batch(manual_orch):
    pool, be = start(manual_orch, workers=1)
    core = pool._core
    held, release = threading.Event(), threading.Event()

    def io_thread_busy():
        with core._lock:
            held.set()
            release.wait(30)

    busy = threading.Thread(target=io_thread_busy)
    busy.start()
    assert held.wait(10)
    try:
        got = []
        submitter = threading.Thread(target=lambda: got.append(pool.submit(inc, 1)))
        submitter.start()
        submitter.join(10)  # a deadlock check, not a timing: the lock is held until release
        assert got, "submit waited for the scheduler's lock"
    finally:
        release.set()
        busy.join(10)
    assert pool.statistics().submitted == 1
    (wid,) = be.pump()
    be.finish(wid)
    assert got[0].get(1) == 2


def test_a_submit_racing_close_is_refused_or_failed_never_left_pending(manual_orch):
    import collections

    pool, _ = start(manual_orch, workers=1)
    core = pool._core

    class CloseBeforeAppend(collections.deque):
        def append(self, task):  # the pool shuts down between submit's check and its append
            core.close()
            super().append(task)

    core._inbox = CloseBeforeAppend()
    with pytest.raises(SystemShutdown):
        pool.submit(inc, 1)
    assert not core._inbox and not core._queue and pool.statistics().submitted == 0

    pool, _ = start(manual_orch, workers=1, name="pool2")
    core = pool._core

    class CloseAfterAppend(collections.deque):
        def append(self, task):  # appended just before the shutdown drained the queue
            super().append(task)
            core.close()

    core._inbox = CloseAfterAppend()
    fut = pool.submit(inc, 2)
    with pytest.raises(SystemShutdown):
        fut.result(5)


def test_a_submit_leaves_sending_to_the_next_result_while_every_worker_is_fed(manual_orch):
    """FED_WINDOW tasks in flight everywhere: submits queue without waking the backend; a result wakes it."""
    from laneway.pool._window import FED_WINDOW

    pool, be = start(manual_orch, workers=1, window=64)
    futs = [pool.submit(inc, i) for i in range(FED_WINDOW)]
    (wid,) = be.pump()
    assert len(be.in_flight(wid)) == FED_WINDOW
    wakes = be.wakes
    late = pool.submit(inc, 100)
    assert be.wakes == wakes  # the worker is fed: nothing to send now, the next result will wake
    be.finish(wid)  # a result: its window dropped below FED_WINDOW with a task queued, so it wakes
    assert be.wakes == wakes + 1 and be.pump() == {wid: [late._id]}
    for _ in range(FED_WINDOW):
        be.finish(wid)
    assert [f.get(1) for f in futs] == list(range(1, FED_WINDOW + 1)) and late.get(1) == 101
    wakes = be.wakes
    pool.submit(inc, 0)  # nothing in flight now: a submit wakes the backend at once
    assert be.wakes == wakes + 1
