"""Large arguments: pickled once, sent zero-copy, bounded by bytes in windows and in the queue."""

from __future__ import annotations

import gc
import os

import psutil
import pytest

from laneway.errors import PoolFull

from . import tasks
from .conftest import wait_until

pytestmark = pytest.mark.multiprocess

MB = 1 << 20


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


@pytest.mark.timeout(120)
def test_queued_large_bytes_arguments_are_not_copied_in_the_parent(make_pool, tmp_path):
    # 300 tasks of 1 MB queued at once used to hold a pickled copy each (and another in
    # every batch sent): about 300 MB. The queue now keeps the caller's bytes object.
    pool = make_pool(workers=1)
    gate = str(tmp_path / "go")
    payload = os.urandom(MB - 1) + b"\x05"
    before = _rss()
    futs = [pool.submit(tasks.describe_payload, payload, gate) for _ in range(300)]
    grown = _rss() - before
    assert pool.statistics().queued > 250  # they really are queued, not done
    open(gate, "w").close()
    assert {f.result(timeout=60) for f in futs} == {("bytes", MB, 5, ())}
    assert grown < 64 * MB, f"the parent grew by {grown / MB:.0f} MB"


def test_large_buffers_of_every_kind_arrive_intact(make_pool):
    pool = make_pool(workers=1)
    big = os.urandom(3 * MB - 1) + b"\x01"
    array = bytearray(big[:-1] + b"\x02")
    view = memoryview(bytearray(big[:-1] + b"\x03"))
    assert pool.submit(tasks.describe_payload, big).result(30) == ("bytes", 3 * MB, 1, ())
    assert pool.submit(tasks.describe_payload, array).result(30) == ("bytearray", 3 * MB, 2, ())
    assert pool.submit(tasks.describe_payload, view).result(30)[1:] == (3 * MB, 3, ())
    assert pool.submit(tasks.describe_payload, b"small", k=big).result(30) == \
        ("bytes", 5, ord("l"), (("k", ("bytes", 3 * MB, 1, ())),))
    assert pool.submit(tasks.echo, [big, big], x=(big,)).result(30) == (([big, big],), {"x": (big,)})
    assert pool.submit(tasks.echo, b"").result(30) == ((b"",), {})


def test_a_mutable_buffer_changed_after_submit_runs_with_the_submitted_value(make_pool, tmp_path):
    pool = make_pool(workers=1)
    gate = str(tmp_path / "go")
    array = bytearray(2 * MB)
    fut = pool.submit(tasks.describe_payload, array, gate)
    array[-1] = 9  # after submit: the task must not see it (a copy was taken at submit)
    open(gate, "w").close()
    assert fut.result(30) == ("bytearray", 2 * MB, 0, ())


def test_the_queue_byte_budget_pushes_back_on_submitters(make_pool, tmp_path):
    pool = make_pool(workers=1, max_queue_mb=4)
    gate = str(tmp_path / "go")
    chunk = bytearray(MB)  # mutable: copied at submit, so it counts against the budget
    futs = []
    with pytest.raises(PoolFull, match="max_queue_mb=4"):
        for _ in range(100):
            futs.append(pool.submit_nowait(tasks.describe_payload, chunk, gate))
    # The worker's window takes 2 (its tasks have not proved fast); once it has them, the
    # queue holds 3 more (each is 1 MB plus its pickle's header) and nothing moves.
    wait_until(lambda: pool.statistics().in_flight == 2, what="a full window")
    with pytest.raises(PoolFull, match="max_queue_mb=4"):
        for _ in range(100):
            futs.append(pool.submit_nowait(tasks.describe_payload, chunk, gate))
    assert len(futs) == 5 and pool.statistics().queued == 3
    with pytest.raises(PoolFull, match="stayed full"):
        pool.options(queue_timeout=0.05).submit(tasks.describe_payload, chunk, gate)
    open(gate, "w").close()
    futs.append(pool.submit(tasks.describe_payload, chunk, gate))  # blocks until there is room, then goes
    assert {f.result(60) for f in futs} == {("bytearray", MB, 0, ())}


def test_a_worker_window_is_bounded_by_bytes(make_pool, tmp_path):
    pool = make_pool(workers=1, window=64)
    gate = str(tmp_path / "go")
    for f in [pool.submit(tasks.inc, i) for i in range(200)]:  # fast tasks: the window opens to 64
        f.result(30)
    payload = os.urandom(MB)
    futs = [pool.submit(tasks.describe_payload, payload, gate) for _ in range(40)]
    stats = pool.statistics()
    assert stats.in_flight <= 9 and stats.queued >= 31  # 8 MB per window, not 64 tasks
    open(gate, "w").close()
    assert all(f.result(60)[1] == MB for f in futs)


@pytest.mark.chaos
def test_a_large_argument_task_whose_worker_dies_is_retried_with_its_arguments(make_pool, tmp_path):
    pool = make_pool(workers=1)
    payload = os.urandom(2 * MB - 1) + b"\x04"
    fut = pool.options(attempts=2).submit(tasks.die_once_then_size, str(tmp_path / "died"), payload)
    assert fut.result(60) == (2 * MB, 4)
    assert pool.statistics().retried == 1
