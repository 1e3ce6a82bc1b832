"""The pool's lazily-conditioned task future behaves like any concurrent.futures.Future."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from laneway.errors import LanewayTimeout
from laneway.pool._future import TaskFuture


def test_settled_before_anyone_waits_needs_no_condition() -> None:
    f = TaskFuture(1, "inc")
    assert f.settle(5)
    assert f._cond is None
    assert f.get(0) == 5 and f.done() and not f.cancelled()
    assert not f.settle(6)  # first settle wins
    assert f.exception() is None


def test_error_and_timeout_wording() -> None:
    f = TaskFuture(7, "work")
    with pytest.raises(LanewayTimeout, match=r"result of pool task 7 \(work\)"):
        f.get(0.01)
    f._what = "named by the caller"
    with pytest.raises(LanewayTimeout, match="named by the caller"):
        f.get(0.01)
    assert f.settle(error=ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        f.get(1)


def test_waiter_and_callbacks_see_a_settle_from_another_thread() -> None:
    for _ in range(200):
        f = TaskFuture(1, "x")
        seen: list[int] = []
        f.add_done_callback(lambda fut: seen.append(fut.result()))
        t = threading.Thread(target=f.settle, args=(3,))
        t.start()
        assert f.get(5) == 3
        t.join()
        assert seen == [3]


def test_race_between_settle_and_wait_never_hangs() -> None:
    futures = [TaskFuture(i, "x") for i in range(2000)]
    t = threading.Thread(target=lambda: [f.settle(i) for i, f in enumerate(futures)])
    t.start()
    assert [f.get(5) for f in futures] == list(range(2000))
    t.join()


def test_cancel_wait_as_completed_and_await() -> None:
    f = TaskFuture(1, "x")
    assert f.cancel() and f.cancelled()
    assert not f.settle(1)
    g, h = TaskFuture(2, "x"), TaskFuture(3, "x")
    threading.Timer(0.02, g.settle, args=(2,)).start()
    done, _ = concurrent.futures.wait([g, h], timeout=5, return_when=concurrent.futures.FIRST_COMPLETED)
    assert done == {g}
    threading.Timer(0.02, h.settle, args=(4,)).start()
    assert [x.result() for x in concurrent.futures.as_completed([h], timeout=5)] == [4]

    async def main() -> int:
        k = TaskFuture(4, "x")
        asyncio.get_running_loop().call_later(0.01, k.settle, 9)
        return await k

    assert asyncio.run(main()) == 9
