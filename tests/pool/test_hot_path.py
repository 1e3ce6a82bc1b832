"""The ZeroMQ backend's hot path: callers send their own tasks and read their own results (leader/follower)."""

from __future__ import annotations

import threading

import pytest

from laneway.errors import LanewayTimeout, WorkerDied
from laneway.pool.zmq import _backend as zmq_backend
from laneway.pool.zmq import _socket

from . import tasks

pytestmark = pytest.mark.multiprocess


@pytest.fixture
def thread_spy(monkeypatch):
    """Record, per spied method, the threads that called it."""
    seen: dict[str, list[str]] = {}

    def spy(cls, name):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            seen.setdefault(name, []).append(threading.current_thread().name)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    return spy, seen


def test_a_lone_task_is_sent_and_its_result_read_by_the_calling_thread(orch, thread_spy):
    spy, seen = thread_spy
    pool = orch.start_pool(workers=1)
    assert pool.wait_ready(timeout=60)
    assert pool.submit(tasks.inc, 0).get(30) == 1  # the worker has the function now
    spy(_socket.SharedRouter, "send_locked")
    spy(_socket.SharedRouter, "send_datagram_locked")  # before the worker connected over ZeroMQ
    spy(zmq_backend.ZmqBackend, "_handle_frames")
    me = threading.current_thread().name
    for i in range(200):  # under load the I/O thread may win some races: one direct trip is the proof
        seen.clear()
        assert pool.submit(tasks.inc, i).get(30) == i + 1
        sent_by = seen.get("send_locked", []) + seen.get("send_datagram_locked", [])
        if sent_by == [me] and me in seen.get("_handle_frames", []):
            break  # sent and received here, with no hop through the pool's I/O thread
    else:
        pytest.fail(f"every round trip went through another thread: {seen}")


@pytest.mark.timeout(120)
def test_callers_waiting_in_many_threads_all_get_their_results(orch):
    pool = orch.start_pool(workers=2)
    assert pool.wait_ready(timeout=60)
    errors: list[BaseException] = []

    def caller(base: int) -> None:
        try:
            for i in range(150):
                assert pool.submit(tasks.inc, base + i).get(60) == base + i + 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(1000 * n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not any(t.is_alive() for t in threads) and not errors, errors


def test_a_reading_caller_gives_up_at_its_timeout_and_the_task_still_finishes(orch):
    pool = orch.start_pool(workers=1)
    assert pool.wait_ready(timeout=60)
    fut = pool.submit(tasks.sleep_then, 0.5, "late")
    with pytest.raises(LanewayTimeout):
        fut.get(0.05)
    assert not fut.done()
    # nobody reads now: the I/O thread takes the socket back and settles the future itself
    done = threading.Event()
    fut.add_done_callback(lambda f: done.set())
    assert done.wait(30) and fut.result() == "late"


def test_results_nobody_waits_for_arrive_after_a_caller_stopped_reading(orch):
    pool = orch.start_pool(workers=1)
    assert pool.wait_ready(timeout=60)
    assert pool.submit(tasks.inc, 1).get(30) == 2  # a caller read the socket, then left
    got = threading.Event()
    pool.submit(tasks.sleep_then, 0.05, 7).add_done_callback(lambda f: got.set())
    assert got.wait(30)


def test_a_caller_reading_while_its_worker_dies_gets_worker_died(orch):
    pool = orch.start_pool(workers=1)
    assert pool.wait_ready(timeout=60)
    with pytest.raises(WorkerDied):
        pool.options(attempts=1).submit(tasks.kill_self).get(60)
    assert pool.submit(tasks.inc, 41).get(60) == 42  # the replacement serves the next caller


def test_a_caller_reads_no_longer_than_a_slice_without_looking_at_its_future(orch, monkeypatch):
    """A future settled elsewhere (here: cancelled by another thread) releases a reading caller."""
    monkeypatch.setattr(_socket, "WAITER_SLICE_S", 0.01)
    pool = orch.start_pool(workers=1)
    assert pool.wait_ready(timeout=60)
    blocker = pool.submit(tasks.sleep_then, 5)
    fut = pool.submit(tasks.inc, 1)  # queued behind the blocker in the window, or in the queue
    threading.Timer(0.1, fut.force_cancel).start()
    with pytest.raises(Exception) as info:
        fut.get(60)
    assert fut.cancelled(), info.value
    blocker.force_cancel()


@pytest.mark.timeout(120)
def test_every_result_form_in_one_burst_reaches_its_own_future(orch):
    """Values, plain pickles, pickles and large frames share DONE messages; a None value is no missing frame."""
    from laneway.worker.wire import INLINE_MAX

    pool = orch.start_pool(workers=2)
    assert pool.wait_ready(timeout=60)
    values = [None, 0, -1, True, 2.5, "s", b"b", "x" * 2000, [1, None], b"y" * (INLINE_MAX + 1), None, 7]
    expected = values * 50
    futs = [pool.submit(tasks.echo, v) for v in expected]
    assert [f.get(60) for f in futs] == [((v,), {}) for v in expected]
    futs = [pool.submit(tasks.sleep_then, 0, v) for v in expected]
    assert [f.get(60) for f in futs] == expected
    stats = pool.statistics()
    assert (stats.submitted, stats.completed, stats.failed) == (2 * len(expected), 2 * len(expected), 0)
