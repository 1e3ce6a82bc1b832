"""Lazy futures (lane commands, pool tasks) make their condition only when needed; they must still
behave as concurrent.futures.Futures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from laneway.errors import LanewayTimeout
from laneway.lanes._command import CommandFuture
from laneway.pool._future import TaskFuture


@pytest.fixture(params=["command", "task"])
def make(request):
    """Both lazy futures: the mechanics live in LazyFuture, each must still be wired to them."""
    if request.param == "command":
        return lambda name: CommandFuture(name)
    return lambda name: TaskFuture(len(name), name)


def test_settled_before_anyone_waits_needs_no_condition(make):
    f = make("c-1")
    assert f.settle(5) and not f.settle(6)
    assert f._cond is None
    assert f.done() and f.result(0) == 5 and f.get(0) == 5 and f.exception() is None


def test_error_settled_early_is_raised_and_first_settle_wins(make):
    f = make("c-2")
    assert f.settle(error=ValueError("boom"))
    assert not f.settle(1)
    with pytest.raises(ValueError, match="boom"):
        f.result(0)


def test_waiter_before_settle_is_woken_from_another_thread(make):
    f = make("c-3")
    got = []
    t = threading.Thread(target=lambda: got.append(f.result(10)))
    t.start()
    while f._cond is None:  # the waiter made the condition
        threading.Event().wait(0.001)
    threading.Timer(0.01, lambda: f.settle("late")).start()
    t.join(10)
    assert got == ["late"]


def test_timeout_is_typed_and_names_the_work():
    f = CommandFuture("c-4")
    with pytest.raises(LanewayTimeout, match="result of command c-4"):
        f.get(0.01)
    t = TaskFuture(7, "work")
    with pytest.raises(LanewayTimeout, match=r"result of pool task 7 \(work\)"):
        t.get(0.01)
    t._what = "named by the caller"
    with pytest.raises(LanewayTimeout, match="named by the caller"):
        t.get(0.01)


def test_callbacks_wait_and_cancel_keep_the_stdlib_behaviour(make):
    f = make("c-5")
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    g = make("c-6")
    threading.Timer(0.01, lambda: (f.settle(1), g.settle(2))).start()
    done, _ = concurrent.futures.wait([f, g], timeout=10)
    assert done == {f, g} and seen == [1]
    c = make("c-7")
    assert c.cancel() and c.cancelled() and not c.settle(3)
    with pytest.raises(concurrent.futures.CancelledError):
        c.result(0)


def test_awaitable_settled_before_and_after(make):
    early = make("c-8")
    early.settle("early")
    late = make("c-9")

    async def main():
        asyncio.get_running_loop().call_later(0.01, late.settle, "late")
        return await early, await late

    assert asyncio.run(main()) == ("early", "late")


def test_many_racing_settles_and_waiters_never_lose_a_result(make):
    futures = [make(f"r-{i}") for i in range(2000)]
    results = []
    waiter = threading.Thread(target=lambda: results.extend(f.result(10) for f in futures))
    waiter.start()
    for i, f in enumerate(futures):
        f.settle(i)
    waiter.join(10)
    assert results == list(range(2000))


def test_as_completed_and_late_callbacks_see_every_future(make):
    futures = [make(f"a-{i}") for i in range(20)]
    for f in futures[:10]:
        f.settle(1)  # settled before anyone registers a waiter or callback
    seen = []
    for f in futures:
        f.add_done_callback(lambda fut: seen.append(fut))
    threading.Timer(0.01, lambda: [f.settle(2) for f in futures[10:]]).start()
    done = list(concurrent.futures.as_completed(futures, timeout=10))
    assert set(done) == set(futures) and len(seen) == 20
    assert sum(f.result() for f in futures) == 30


def test_waiter_and_callbacks_see_a_settle_from_another_thread(make):
    for _ in range(200):
        f = make("x")
        seen = []
        f.add_done_callback(lambda fut: seen.append(fut.result()))
        t = threading.Thread(target=f.settle, args=(3,))
        t.start()
        assert f.get(5) == 3
        t.join()
        assert seen == [3]


def test_settle_many_sets_each_future_once_and_tells_its_waiters_and_callbacks():
    from laneway.core import LazyFuture

    futs = [TaskFuture(i, f"t{i}") for i in range(4)]
    seen = []
    futs[1].add_done_callback(lambda f: seen.append(f.result()))
    assert futs[2].cancel()
    got = []
    waiter = threading.Thread(target=lambda: got.append(futs[3].result(10)))
    waiter.start()
    done, _ = concurrent.futures.wait([futs[3]], timeout=0)  # installs a waiter: futs[3] has a condition now
    assert not done
    assert LazyFuture.settle_many(futs, [10, 11, 12, 13]) == 1  # the cancelled one was done already
    waiter.join(10)
    assert [f.result(0) for f in (futs[0], futs[1], futs[3])] == [10, 11, 13] and futs[2].cancelled()
    assert seen == [11] and got == [13] and futs[0]._cond is None
    assert LazyFuture.settle_many(futs[:1], [99]) == 1 and futs[0].result(0) == 10


def test_a_lazy_future_made_without_its_init_starts_from_the_class_defaults():
    # The lanes make a command's future with object.__new__ (no __init__ frame per command).
    f = object.__new__(CommandFuture)
    f.command_id = "c-new"
    assert not f.done() and f._cond is None
    with pytest.raises(LanewayTimeout, match="result of command c-new"):
        f.get(0.01)
    seen = []
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    assert f.settle(3) and f.result(0) == 3 and seen == [3]
    g = object.__new__(CommandFuture)
    assert g.cancel() and g.cancelled()


def test_settle_unwatched_sets_only_what_nobody_waits_on_or_listens_to(make):
    quiet, listened, cancelled = make("c-q"), make("c-l"), make("c-x")
    assert quiet.settle_unwatched(1) and quiet.result(0) == 1 and quiet._cond is None
    assert quiet.settle_unwatched(2) and quiet.result(0) == 1  # the first result stays
    seen = []
    listened.add_done_callback(lambda f: seen.append(f.result()))
    # A callback would have to run: refused, and the future is left for a normal settle.
    assert not listened.settle_unwatched(3) and not listened.done() and seen == []
    assert listened.settle(3) and seen == [3]
    # A cancel may have told waiters: left to the normal settle, which finds it done.
    assert cancelled.cancel() and not cancelled.settle_unwatched(4) and not cancelled.settle(4)
    assert cancelled.cancelled()
    waited = make("c-w")
    done, _ = concurrent.futures.wait([waited], timeout=0)  # a waiter: the future has a condition now
    assert not done and not waited.settle_unwatched(5) and not waited.done()
