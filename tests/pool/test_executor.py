"""The pool through the concurrent.futures.Executor contract, as code written for ProcessPoolExecutor uses it.

Future states, cancel and shutdown are driven through a fake backend (no processes,
manual clock); errors, map, the initializer and asyncio run in real workers on every
backend (``test_ray_backend`` runs them again on Ray).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import multiprocessing
import operator
import os
import pickle
import signal
import threading
import time
import weakref
from concurrent.futures.process import BrokenProcessPool

import pytest

from laneway.actors import OneForOne
from laneway.errors import (
    ConfigError,
    InitializerError,
    RemoteError,
    SerializationError,
    SystemShutdown,
    WorkerDied,
)
from laneway.pool import TaskOptions, WorkerState

from . import tasks
from .conftest import wait_gone, wait_until
from .fake_backend import FakeBackend


def fake_pool(orch, backend=None, *, ready=True, **config):
    backend = backend or FakeBackend()
    config.setdefault("workers", 1)
    config.setdefault("supervision", OneForOne(max_restarts=100))  # restart at once: the manual clock stands still
    pool = orch.start_pool(backend=backend, **config)
    if ready:
        assert pool.wait_ready(timeout=10)
    return pool, backend


# --- submit, options, future states (fake backend) -----------------------------------------


def test_the_pool_is_an_executor_and_every_keyword_goes_to_the_task(manual_orch):
    pool, be = fake_pool(manual_orch)
    assert isinstance(pool, concurrent.futures.Executor)
    fut = pool.submit(tasks.echo, 1, timeout=5, attempts=2, kwargs={"k": 1}, fn="f", dead_letter=False)
    quick = pool.options(timeout=5, attempts=1)
    assert quick.task_options == TaskOptions(timeout=5, attempts=1)
    opt = quick.submit(tasks.echo, x=1)
    nowait = quick.options(dead_letter=False).submit_nowait(tasks.echo, 2)
    (wid,) = be.pump()
    assert [w.timeout for w in be.sent[wid]] == [None, 5]  # options travel with the task, not as arguments
    be.finish(wid, 2)
    be.pump()
    be.finish(wid)
    assert fut.result(1) == ((1,), {"timeout": 5, "attempts": 2, "kwargs": {"k": 1}, "fn": "f", "dead_letter": False})
    assert opt.result(1) == ((), {"x": 1}) and nowait.result(1) == ((2,), {})


def test_running_means_a_worker_runs_it_and_cancel_works_only_before_a_worker_has_it(manual_orch):
    pool, be = fake_pool(manual_orch, window=4)
    first, second, third = (pool.submit(tasks.inc, i) for i in range(3))
    assert not first.running()
    (wid,) = be.pump()  # a new worker's window holds 2 until its tasks prove fast
    assert [w.task_id for w in be.sent[wid]] == [1, 2]
    assert first.running() and not second.running() and not third.running()
    assert not first.cancel() and not second.cancel()  # with the worker (running, or queued in it): not recallable
    assert third.cancel() and third.cancelled() and not third.running()
    done, _ = concurrent.futures.wait([first, third], timeout=0, return_when=concurrent.futures.FIRST_COMPLETED)
    assert done == {third}  # waiters hear of a cancel at once, not when the queue reaches it
    be.finish(wid)
    assert first.result(1) == 1 and not first.running() and second.running()
    assert be.pump() == {}  # the cancelled task is never sent
    be.finish(wid)
    assert second.result(1) == 2
    with pytest.raises(concurrent.futures.CancelledError):
        third.result(0)


def test_force_cancel_gives_up_on_a_running_task_and_drops_its_late_result(manual_orch):
    pool, be = fake_pool(manual_orch)
    fut = pool.submit(tasks.inc, 1)
    (wid,) = be.pump()
    seen = []
    fut.add_done_callback(seen.append)
    assert fut.running() and not fut.cancel() and not seen
    assert fut.force_cancel() and fut.cancelled() and seen == [fut]
    be.finish(wid)
    wait_until(lambda: pool.statistics().late_results == 1, what="the late result to be counted")
    assert pool.statistics().completed == 0 and fut.force_cancel()  # cancelling again: still cancelled


def test_tasks_put_back_after_their_worker_died_are_pending_and_cancellable_again(manual_orch):
    pool, be = fake_pool(manual_orch, window=4)
    running, prefetched = pool.submit(tasks.inc, 1), pool.submit(tasks.inc, 2)
    (w1,) = be.pump()
    assert running.running() and not prefetched.cancel()
    be.die(w1)
    assert not running.running() and not running.done()
    assert prefetched.cancel()
    w2 = be.wait_started(2)
    assert pool.wait_ready(timeout=10)
    assert be.pump() == {w2: [1]}
    be.finish(w2)
    assert running.result(1) == 2


def test_a_worker_dying_under_a_task_that_must_not_run_twice_is_a_broken_process_pool_error(manual_orch):
    pool, be = fake_pool(manual_orch)
    fut = pool.options(attempts=1, dead_letter=False).submit(tasks.inc, 1)
    (wid,) = be.pump()
    be.die(wid)
    with pytest.raises(BrokenProcessPool) as info:  # what code written for ProcessPoolExecutor catches
        fut.result(5)
    assert isinstance(info.value, WorkerDied) and "after 1 attempt" in str(info.value)
    assert manual_orch.dead_letters.list("pool") == [] and pool.statistics().retried == 0


# --- shutdown (fake backend) -------------------------------------------------------------------


def test_shutdown_waits_for_the_submitted_tasks_and_then_refuses_new_ones(manual_orch):
    pool, be = fake_pool(manual_orch, window=1)
    futs = [pool.submit(tasks.inc, i) for i in range(3)]
    stopper = threading.Thread(target=pool.shutdown)  # wait=True: until the three ran

    def refused():
        try:
            pool.submit(tasks.inc, 9).cancel()
        except RuntimeError as exc:
            return isinstance(exc, SystemShutdown)
        return False

    stopper.start()
    wait_until(refused, what="submit to raise RuntimeError")
    for _ in range(3):
        (wid,) = be.pump()
        assert not be.closed
        be.finish(wid)
    stopper.join(10)
    assert not stopper.is_alive() and [f.result(0) for f in futs] == [1, 2, 3]
    assert be.closed and be.stopped == be.started and manual_orch.dead_letters.list("pool") == []


def test_shutdown_cancel_futures_cancels_only_what_no_worker_has_and_wait_false_returns_at_once(manual_orch):
    pool, be = fake_pool(manual_orch, window=4)
    futs = [pool.submit(tasks.inc, i) for i in range(4)]
    (wid,) = be.pump()  # two in the worker's window, two still queued
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(tasks.inc, 9)
    assert [f.cancelled() for f in futs] == [False, False, True, True]
    be.finish(wid, 2)
    assert [f.result(1) for f in futs[:2]] == [1, 2]
    pool.shutdown(wait=True, timeout=10)  # again: waits for the stop under way
    assert be.closed and manual_orch.dead_letters.list("pool") == []


# --- initializer and configuration -------------------------------------------------------------


def test_a_worker_runs_the_initializer_alone_before_its_first_task(manual_orch):
    tasks._initialized.clear()  # the fake backend runs tasks in this process
    pool, be = fake_pool(manual_orch, ready=False, initializer=tasks.init_worker, initargs=("fake",))
    fut = pool.submit(tasks.read_init)
    (worker,) = wait_until(lambda: [w for w in pool.workers() if w.current_task == "initializer"],
                           what="the initializer to be assigned")
    assert worker.state is WorkerState.STARTING and not pool.wait_ready(timeout=0.05)
    sent = be.pump()
    assert list(sent) == [worker.worker_id] and len(sent[worker.worker_id]) == 1  # alone, no task with it
    be.finish(worker.worker_id)
    assert pool.wait_ready(timeout=10)
    assert be.pump() == {worker.worker_id: [1]}  # task ids are not spent on initializers
    be.finish(worker.worker_id)
    assert fut.result(1) == (os.getpid(), ["fake"]) and pool.statistics().completed == 1


def test_a_failing_initializer_puts_the_pool_down_with_an_error_naming_it(manual_orch):
    pool, be = fake_pool(manual_orch, ready=False, initializer=tasks.bad_init, initargs=("no config",))
    fut = pool.submit(tasks.inc, 1)
    (worker,) = wait_until(lambda: [w for w in pool.workers() if w.current_task == "initializer"],
                           what="the initializer to be assigned")
    be.pump()
    be.finish(worker.worker_id)
    named = r"initializer tests\.pool\.tasks\.bad_init failed .*ValueError: no config"
    with pytest.raises(InitializerError, match=named):
        pool.wait_ready(timeout=10)
    with pytest.raises(InitializerError) as info:
        fut.result(10)
    assert isinstance(info.value, BrokenProcessPool) and isinstance(info.value.__cause__, ValueError)
    with pytest.raises(InitializerError):
        pool.submit(tasks.inc, 2)


@pytest.mark.parametrize("config", [{"workers": 0}, {"min_workers": 0, "max_workers": 0},
                                    {"workers": 0, "backend": "ray"}])
def test_a_pool_with_no_workers_and_no_listen_address_is_refused(orch, config):
    with pytest.raises(ValueError, match="listen=") as info:
        orch.start_pool(**config)
    assert isinstance(info.value, ConfigError)


def test_an_initializer_that_is_not_callable_is_refused(manual_orch):
    with pytest.raises(ConfigError, match="initializer must be callable"):
        manual_orch.start_pool(backend=FakeBackend(), workers=1, initializer="setup")


# --- real workers: errors, results, map, initializer, asyncio ----------------------------------


def test_task_errors_are_raised_as_their_own_type_with_the_remote_traceback(make_pool):
    pool = make_pool(workers=1)
    with pytest.raises(ZeroDivisionError) as info:
        pool.submit(tasks.div, 1, 0).result(30)
    err = info.value
    assert isinstance(err, RemoteError) and err.type_name == "builtins.ZeroDivisionError"
    assert err.args == ("division by zero",) and isinstance(err.__cause__, ZeroDivisionError)
    assert "in div" in err.remote_traceback and str(err).startswith("division by zero\n\nRemote traceback:")
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, ZeroDivisionError) and again.remote_traceback == err.remote_traceback
    with pytest.raises(KeyError) as info:
        pool.submit(operator.getitem, {}, "missing").result(30)
    assert info.value.args == ("missing",) and isinstance(info.value, RemoteError)
    # A task's SystemExit must not exit the caller: a plain RemoteError, the SystemExit only its cause.
    with pytest.raises(RemoteError) as info:
        pool.submit(tasks.exit_task, 3).result(30)
    assert not isinstance(info.value, SystemExit) and isinstance(info.value.__cause__, SystemExit)
    assert pool.submit(tasks.inc, 1).result(30) == 2


@pytest.mark.parametrize("kind", ["ValueError", "SystemExit", "KeyboardInterrupt"])
def test_a_result_that_cannot_be_unpickled_here_fails_its_future_and_never_stalls_the_pool(make_pool, kind):
    # Regression: a BaseException from unpickling used to kill the results thread, and with it
    # every later future of the pool.
    pool = make_pool(workers=1)
    bad = pool.submit(tasks.result_that_explodes_on_load, kind)
    after = [pool.submit(tasks.inc, i) for i in range(3)]
    with pytest.raises(SerializationError, match="cannot be unpickled in the pool's process") as info:
        bad.result(30)
    assert type(info.value.__cause__).__name__ == kind
    assert [f.result(30) for f in after] == [1, 2, 3]
    assert pool.submit(tasks.inc, 9).result(30) == 10
    wait_until(lambda: pool.statistics().failed == 1, what="the failure to be counted")


def test_a_settled_task_s_result_is_referenced_only_by_its_future(make_pool):
    pool = make_pool(workers=1)
    for submitter in (pool, pool.options(timeout=600)):  # a task timeout arms a timer, which must not hold it
        fut = submitter.submit(tasks.make_blob, 1)
        blob = fut.result(30)
        ref = weakref.ref(blob)
        del blob, fut
        wait_until(lambda: ref() is None, timeout=5, what="the pool to let go of the result")


def test_a_with_block_waits_for_the_submitted_tasks_then_stops_the_workers(orch, backend):
    with orch.start_pool(backend=backend, workers=2) as pool:
        assert pool.wait_ready(timeout=60)
        pids = {w.pid for w in pool.workers()}
        futs = [pool.submit(tasks.sleep_then, 0.02, i) for i in range(10)]
    assert [f.result(0) for f in futs] == list(range(10))  # done when the block ends
    with pytest.raises(RuntimeError):
        pool.submit(tasks.inc, 1)
    assert wait_gone(pids, 30) == set()


def test_asyncio_run_in_executor_runs_on_the_pool(make_pool):
    pool = make_pool(workers=2)

    async def main():
        loop = asyncio.get_running_loop()
        values = await asyncio.gather(*(loop.run_in_executor(pool, tasks.inc, i) for i in range(20)))
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(pool, tasks.div, 1, 0)
        return values, await loop.run_in_executor(pool, tasks.pid)

    values, pid = asyncio.run(main())
    assert values == list(range(1, 21)) and pid != os.getpid()


def collect(iterator):
    """The values an iterator gives before its first error, and that error (or None)."""
    values = []
    try:
        for value in iterator:
            values.append(value)
    except Exception as exc:
        return values, exc
    return values, None


MAP_CASES = [
    (tasks.add, range(10), range(10)),
    (tasks.add, range(5), range(3)),  # zip: the shortest input ends the map
    (tasks.div, [2, 4, 1, 8], [1, 2, 0, 4]),  # raises when its result is reached
    (tasks.inc, []),
]


@pytest.mark.parametrize("chunksize", [1, 2])
def test_map_gives_what_process_pool_executor_map_gives(make_pool, chunksize):
    pool = make_pool(workers=2)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        expected = [collect(ex.map(fn, *its, chunksize=chunksize)) for fn, *its in MAP_CASES]
    got = [collect(pool.map(fn, *its, chunksize=chunksize)) for fn, *its in MAP_CASES]
    for (want, want_err), (have, have_err) in zip(expected, got):
        assert have == want
        assert (want_err is None) == (have_err is None)
        assert want_err is None or isinstance(have_err, type(want_err))


def test_map_sends_chunksize_calls_per_task_and_reads_its_input_lazily(make_pool):
    pool = make_pool(workers=2)
    assert list(pool.map(tasks.add, range(100), range(100), chunksize=7)) == [2 * i for i in range(100)]
    assert pool.statistics().submitted == 15  # ceil(100 / 7) tasks
    # A raising call ends its chunk, but the results before it in the chunk still come.
    assert collect(pool.map(tasks.div, [2, 4, 1, 8], [1, 2, 0, 4], chunksize=4))[0] == [2.0, 2.0]
    before = pool.statistics().submitted
    endless = pool.map(tasks.inc, itertools.count(), buffersize=8)
    assert [next(endless) for _ in range(50)] == list(range(1, 51))
    assert pool.statistics().submitted - before <= 50 + 8
    endless.close()
    assert pool.options(attempts=1).map(tasks.inc, range(3)).__next__() == 1


def test_map_timeout_counts_from_the_call_and_raises_timeout_error(make_pool, tmp_path):
    pool = make_pool(workers=1)
    go = tmp_path / "go"
    started = time.monotonic()
    results = pool.map(tasks.sleep_then, [0.0, 0.0], ["first", "second"], timeout=1.0)
    results_slow = pool.map(tasks.wait_for_file, [str(go)], ["late"], timeout=1.0)
    assert list(results) == ["first", "second"]
    with pytest.raises(TimeoutError):
        next(results_slow)
    assert 0.9 <= time.monotonic() - started < 30
    go.touch()


def test_closing_the_map_iterator_cancels_the_calls_no_worker_has(make_pool, tmp_path):
    pool = make_pool(workers=1, window=1)
    go = tmp_path / "go"
    ran = [tmp_path / f"ran{i}" for i in range(4)]
    results = pool.map(tasks.record, [str(p) for p in ran], [None, str(go), None, None], range(4))
    assert next(results) == 0
    wait_until(lambda: pool.workers()[0].current_task == "pool-task-2", what="the second call to run")
    results.close()
    go.touch()
    wait_until(lambda: (s := pool.statistics()).in_flight == 0 and s.queued == 0, what="the pool to go idle")
    assert pool.submit(tasks.inc, 1).result(30) == 2
    assert [p.exists() for p in ran] == [True, True, False, False]


def test_the_initializer_runs_once_in_each_worker_and_again_in_a_replacement(make_pool, orch):
    pool = make_pool(workers=2, initializer=tasks.init_worker, initargs=("ready",))
    first = [pool.submit(tasks.read_init).result(30) for _ in range(20)]
    assert all(init == ["ready"] for _, init in first)
    victim = pool.workers()[0].pid
    with orch.events.subscribe("pool.worker.lost") as sub:
        os.kill(victim, signal.SIGKILL)
        sub.get(timeout=30)
    assert pool.wait_ready(2, timeout=60)
    after = [f.result(30) for f in [pool.submit(tasks.read_init) for _ in range(40)]]
    assert all(init == ["ready"] for _, init in after) and victim not in {pid for pid, _ in after}


def test_a_failing_initializer_fails_the_pool_start_with_an_error_naming_it(make_pool):
    pool = make_pool(ready=False, workers=1, initializer=tasks.bad_init, initargs=("no config",))
    fut = pool.submit(tasks.inc, 1)
    with pytest.raises(InitializerError, match=r"tests\.pool\.tasks\.bad_init failed .*ValueError: no config") as info:
        pool.wait_ready(timeout=60)
    assert isinstance(info.value, BrokenProcessPool)
    assert "in bad_init" in info.value.__cause__.remote_traceback
    with pytest.raises(InitializerError):
        fut.result(30)
    with pytest.raises(InitializerError):
        pool.submit(tasks.inc, 2)
