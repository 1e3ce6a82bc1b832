"""Sync, async and cpu-bound tools; tokens; events on the system stream, read sync and async."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from laneway.lanes import current_token
from tests.lanes.support import WAIT, lane, start_lanes


def square(x: int) -> int:
    return x * x


def pid_of_worker(x: int) -> int:
    return os.getpid()


def test_sync_and_async_tools_both_run_async_ones_on_one_loop_thread(orch):
    lanes = start_lanes(orch, [lane("work", max_concurrency=8)])
    loop_threads = set()

    async def fetch(n: int) -> int:
        loop_threads.add(threading.current_thread().name)
        await asyncio.sleep(0.01)
        return n * 2

    lanes.tools.register(fetch)
    lanes.tools.register(square)
    handles = [lanes.submit("work", "fetch", {"n": i}) for i in range(8)]
    assert [h.result(timeout=WAIT) for h in handles] == [i * 2 for i in range(8)]
    assert loop_threads == {"laneway-lanes-async"}
    assert lanes.call("work", "square", {"x": 7}) == 49


def test_await_a_handle_and_call_async_from_a_coroutine(orch):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(square)

    async def main():
        h = lanes.submit("work", "square", {"x": 3})
        return await h, await lanes.call_async("work", "square", {"x": 4})

    assert asyncio.run(main()) == (9, 16)


def test_tools_get_their_token_as_an_argument_or_from_current_token(orch):
    lanes = start_lanes(orch, [lane("work")])
    seen = []

    def both(cancel_token) -> bool:
        seen.append(cancel_token)
        return current_token() is cancel_token

    lanes.tools.register(both)
    assert lanes.call("work", "both") is True
    assert not seen[0].cancelled and current_token() is None


def test_plain_callables_run_too(orch):
    lanes = start_lanes(orch, [lane("work")])
    assert lanes.call("work", lambda a, b=2: a + b, {"a": 1}) == 3


def test_events_of_a_command_in_order_sync_and_async(orch):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(square)
    with orch.events.subscribe("queue.command") as sub:
        h = lanes.submit("work", "square", {"x": 2}, caller="alice")
        h.result(timeout=WAIT)
        events = [sub.get(timeout=WAIT) for _ in range(3)]
    assert [e.key for e in events] == ["queue.command.submitted", "queue.command.started", "queue.command.completed"]
    assert all(e.source == "work" and e.data["command_id"] == h.command_id and e.data["caller"] == "alice" for e in events)
    done = events[2].data
    assert done["latency_s"] >= done["run_s"] >= 0 and done["attempts"] == 1

    async def read_async():
        sub = orch.events.subscribe(lambda e: e.key == "queue.command.completed")
        lanes.submit("work", "square", {"x": 3})
        async for event in sub:
            sub.close()
            return event

    assert asyncio.run(read_async()).data["tool"] == "square"



def test_each_command_of_a_burst_is_told_once_in_order_with_its_own_figures_while_someone_listens(orch):
    # Completions that nobody waits on are recorded in batches, and so are their events: each
    # command's completion is told once, last, with its own figures; a retry is told before the
    # attempt it leads to starts.
    from laneway.lanes import RetryPolicy

    from tests.waiting import wait_until

    lanes = start_lanes(orch, [lane("a", max_concurrency=4, retry=RetryPolicy.fixed(2, 0.0)),
                               lane("b", priority=1, max_concurrency=2, retry=RetryPolicy.fixed(2, 0.0))])
    failed_once: set[int] = set()

    def flaky(x: int) -> int:
        if x % 5 == 0 and x not in failed_once:
            failed_once.add(x)
            raise RuntimeError(f"first try of {x}")
        return x

    lanes.tools.register(flaky)
    events: list = []
    orch.events.add_listener(events.append, "queue.command")
    handles = [lanes.submit("ab"[i % 2], "flaky", {"x": i}) for i in range(400)]
    assert [h.result(timeout=WAIT) for h in handles] == list(range(400))
    ids = {h.command_id: i for i, h in enumerate(handles)}
    done = wait_until(lambda: (lambda d: d if len(d) >= 400 else None)(
        [e for e in list(events) if e.key == "queue.command.completed"]), what="400 completion events")
    assert sorted(ids[e.data["command_id"]] for e in done) == list(range(400))  # each once
    for e in done:
        x = ids[e.data["command_id"]]
        assert e.source == "ab"[x % 2] and e.data["tool"] == "flaky" and e.data["caller"] == "default"
        assert e.data["attempts"] == (2 if x % 5 == 0 else 1)
        assert e.data["latency_s"] >= e.data["run_s"] >= 0
    order = [(e.key.rsplit(".", 1)[1], ids[e.data["command_id"]]) for e in list(events)]
    for x in range(400):
        mine = [key for key, y in order if y == x]
        assert mine == (["submitted", "started", "retry", "started", "completed"] if x % 5 == 0
                        else ["submitted", "started", "completed"]), (x, mine)
    assert sum(s.completed for s in lanes.statistics().lanes) == 400

@pytest.mark.multiprocess
def test_cpu_bound_tools_run_on_the_process_pool(orch):
    pool_mod = pytest.importorskip("laneway.pool")
    if not hasattr(pool_mod, "Pool"):
        pytest.skip("laneway.pool.Pool is not there yet")
    orch.start_pool(workers=1)
    lanes = start_lanes(orch, [lane("work", max_concurrency=2)])
    lanes.tools.register(pid_of_worker, cpu_bound=True)
    lanes.tools.register(square, cpu_bound=True)
    assert lanes.call("work", "square", {"x": 9}, wait_timeout=60) == 81
    assert lanes.call("work", "pid_of_worker", {"x": 0}, wait_timeout=60) != os.getpid()


def test_a_usually_fast_tool_that_blocks_does_not_hold_up_the_queue(orch, rec):
    # Fast tools are served by as few threads as possible; a fast tool that blocks must
    # still let the next command start on another thread (the real-time fallback).
    lanes = start_lanes(orch, [lane("work", max_concurrency=2)])
    gate = threading.Event()

    def mostly_fast(block: bool) -> bool:
        if block:
            gate.wait(WAIT)
        return block

    lanes.tools.register(mostly_fast)
    for _ in range(30):
        lanes.call("work", "mostly_fast", {"block": False})
    blocked = lanes.submit("work", "mostly_fast", {"block": True})
    assert lanes.submit("work", "mostly_fast", {"block": False}).result(timeout=WAIT) is False
    assert not blocked.done()
    gate.set()
    assert blocked.result(timeout=WAIT) is True


def test_a_token_can_be_awaited_checked_and_waited_on():
    from laneway.errors import CommandCancelled, Preempted
    from laneway.lanes import CancellationToken

    token = CancellationToken()
    token.raise_if_cancelled()  # nothing yet

    async def waiter():
        threading.Timer(0.01, token.cancel, args=("stop now",)).start()
        return await token.wait_async()

    assert asyncio.run(waiter()) == "stop now"
    assert token.wait(0) and not token.cancel("again") and token.reason == "stop now"
    with pytest.raises(CommandCancelled, match="stop now"):
        token.raise_if_cancelled()
    preempted = CancellationToken()
    calls = []
    preempted.add_callback(calls.append)
    preempted.cancel("make room", preempted=True)
    preempted.add_callback(calls.append)  # already cancelled: runs at once
    assert calls == ["make room", "make room"]
    with pytest.raises(Preempted):
        preempted.raise_if_cancelled()


def kill_own_worker(x: int) -> int:
    os.kill(os.getpid(), 9)
    return x


@pytest.mark.multiprocess
@pytest.mark.chaos
def test_a_cpu_bound_command_whose_workers_die_is_dead_lettered_once_by_its_lane(orch):
    from laneway import errors
    from laneway.lanes import RetryPolicy

    orch.start_pool(workers=1)
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)])
    lanes.tools.register(kill_own_worker, cpu_bound=True)
    handle = lanes.submit("work", "kill_own_worker", {"x": 1}, retry=RetryPolicy.none())
    with pytest.raises(errors.WorkerDied, match="SIGKILL"):
        handle.result(timeout=WAIT * 4)
    # The lane owns the outcome: one letter, under the lane, naming the signal; no pool letter.
    letters = orch.dead_letters.list()
    assert [x.source for x in letters] == ["lane:work"]
    assert letters[0].work_id == handle.command_id and "SIGKILL" in letters[0].error


def test_a_listener_on_other_keys_costs_commands_no_event_data(orch):
    # A console or alert listener on rare keys must not make every command build its events.
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(lambda x: x, name="echo")
    built: list[str] = []
    publish_dict = orch.events.publish_dict

    def counting(key, source, data):
        built.append(key)
        publish_dict(key, source, data)

    orch.events.publish_dict = counting
    seen: list[str] = []
    remove = orch.events.add_listener(lambda e: seen.append(e.key), "alert")
    try:
        for h in [lanes.submit("work", "echo", {"x": i}) for i in range(20)]:
            h.result(timeout=WAIT)
        assert [k for k in built if k.startswith("queue.command")] == [] and seen == []
        wanted = orch.events.add_listener(lambda e: seen.append(e.key), "queue.command.completed")
        lanes.submit("work", "echo", {"x": 0}).result(timeout=WAIT)
        wanted()
        assert "queue.command.completed" in built and seen.count("queue.command.completed") == 1
    finally:
        remove()


def test_a_call_returns_with_its_run_already_recorded(orch):
    # The caller is woken inside the critical section that records the run's end: whatever it
    # reads next (under the lock) shows that end, never a run still active or not yet counted.
    lanes = start_lanes(orch, [lane("work", max_concurrency=2)])
    lanes.tools.register(square)
    for i in range(300):
        assert lanes.call("work", "square", {"x": i}) == i * i
        stats = lanes.lane_stats("work")
        assert (stats.active, stats.completed) == (0, i + 1)
    handle = lanes.submit("work", "square", {"x": 3})
    assert handle.result(timeout=WAIT) == 9
    assert lanes.state(handle.command_id) is None
