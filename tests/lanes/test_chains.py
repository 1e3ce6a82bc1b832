"""Fast runs start as a worker thread takes them, and a lane's runs in one thread's batch share a slot.

White-box where it must be: a batch's make-up and the hand-back of a blocked batch are
what these tests are about, and neither shows in results alone.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import pytest

from laneway.errors import CommandCancelled
from laneway.lanes import RetryPolicy

from tests.lanes.support import WAIT, lane, start_lanes
from tests.waiting import wait_until


class Counting:
    """A tool ``tool(x) -> x`` that counts its runs per ``x`` and how many run at once; ``x == blocks``
    waits for ``gate`` (set by default: nothing blocks)."""

    def __init__(self, blocks: int | None = None) -> None:
        self.lock = threading.Lock()
        self.calls: collections.Counter[int] = collections.Counter()
        self.active = self.max_active = 0
        self.blocks = blocks
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()

    def __call__(self, x: int) -> int:
        with self.lock:
            self.calls[x] += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if x == self.blocks:
                self.blocked.set()
                self.gate.wait(WAIT)
            return x
        finally:
            with self.lock:
                self.active -= 1


def _batches_of(lanes, monkeypatch, lane_name: str) -> list[int]:
    """How many runs of ``lane_name`` each batch a worker thread runs holds (patched before any thread starts)."""
    core = lanes._core
    sizes: list[int] = []
    run_batch = core.executors._run_batch

    def recording(worker: Any) -> Any:
        sizes.append(sum(1 for run in worker.batch if run.cmd.lane.name == lane_name))
        return run_batch(worker)

    monkeypatch.setattr(core.executors, "_run_batch", recording)
    return sizes


def _burst_blocked_in_a_chain(lanes, tool: Counting, n: int) -> list[Any]:
    """``n`` commands of ``tool`` (known fast) to lane ``work`` (one slot), queued first, then let go;
    returned once the 10th is blocked. The burst's second batch is a run on the freed slot and a
    chain behind it, and the 10th command is in its middle."""
    for i in range(20):  # fast
        assert lanes.call("work", "tool", {"x": -1 - i}) == -1 - i
    tool.blocks = 10
    tool.gate.clear()
    lanes.pause("work")
    handles = [lanes.submit("work", "tool", {"x": i}) for i in range(n)]
    lanes.resume("work")
    assert tool.blocked.wait(WAIT)
    return handles


def _assert_free(lanes, name: str) -> None:
    assert lanes.drain(WAIT).drained
    stats = lanes.lane_stats(name)
    assert (stats.active, stats.pending) == (0, 0)
    assert lanes.statistics().running == 0


def _attempts_of(orch) -> dict[str, int]:
    attempts: dict[str, int] = {}
    orch.events.add_listener(lambda e: attempts.__setitem__(e.data["command_id"], e.data["attempts"]),
                             "queue.command.completed")
    return attempts


def test_a_lane_with_two_slots_runs_a_burst_in_full_batches_on_its_slots(orch, monkeypatch):
    lanes = start_lanes(orch, [lane("work", max_concurrency=2)])
    tool = Counting()
    lanes.tools.register(tool, name="tool")
    sizes = _batches_of(lanes, monkeypatch, "work")
    for i in range(20):  # the tool is known to be fast
        assert lanes.call("work", "tool", {"x": -1 - i}) == -1 - i
    sizes.clear()
    handles = [lanes.submit("work", "tool", {"x": i}) for i in range(400)]
    assert [h.result(timeout=WAIT) for h in handles] == list(range(400))
    # One thread runs a batch one run after another: a lane with 2 slots fills batches with more
    # than 2 of its runs (without chains, a batch holds at most the lane's started runs: 2).
    assert max(sizes) > 2, sizes
    assert sum(sizes) == 400
    assert tool.max_active <= 2
    assert all(tool.calls[i] == 1 for i in range(400))
    _assert_free(lanes, "work")
    assert lanes.lane_stats("work").completed == 420
    assert lanes.call("work", "tool", {"x": 1000}) == 1000  # no slot is left taken


@pytest.mark.timeout(120)
def test_commands_chained_behind_a_run_that_blocks_go_back_to_their_lane_and_run_once(orch, monkeypatch):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)])
    tool = Counting()
    lanes.tools.register(tool, name="tool")
    core = lanes._core
    handed_back: list[int] = []
    unstart = core.executors._unstart_locked

    def recording(run: Any) -> None:
        handed_back.append(run.cmd.params["x"])
        unstart(run)

    monkeypatch.setattr(core.executors, "_unstart_locked", recording)
    attempts = _attempts_of(orch)
    # The lane's one slot stays with the blocked run: what the chain held behind it must wait in the
    # lane's queue, not run on a helper beside it.
    handles = _burst_blocked_in_a_chain(lanes, tool, 60)
    # The fallback finds the thread blocked and hands back what it held behind the blocked run.
    wait_until(lambda: handed_back, what="the chain behind the blocked run handed back")
    assert 10 not in handed_back and all(x > 10 for x in handed_back)
    # What the thread ran before the blocked run is recorded now, not when that one returns.
    assert [h.result(timeout=WAIT) for h in handles[:10]] == list(range(10))
    tool.gate.set()
    assert [h.result(timeout=WAIT) for h in handles] == list(range(60))
    assert all(tool.calls[i] == 1 for i in range(60)), "a command handed back ran twice"
    assert tool.max_active == 1
    ids = {h.command_id for h in handles}
    assert all(attempts[c] == 1 for c in ids), "a command handed back counted an attempt it did not make"
    _assert_free(lanes, "work")
    assert lanes.call("work", "tool", {"x": 1000}) == 1000


@pytest.mark.timeout(120)
def test_fast_runs_that_wait_for_a_thread_blocked_in_its_tool_are_handed_to_a_helper(orch):
    lanes = start_lanes(orch, [lane("slow", priority=0), lane("work", priority=1, max_concurrency=2)])
    blocking = Counting(blocks=0)
    tool = Counting()
    lanes.tools.register(blocking, name="blocking")
    lanes.tools.register(tool, name="tool")
    for i in range(20):  # both known to be fast
        assert lanes.call("slow", "blocking", {"x": 1 + i}) == 1 + i
        assert lanes.call("work", "tool", {"x": -1 - i}) == -1 - i
    blocking.gate.clear()
    stuck = lanes.submit("slow", "blocking", {"x": 0})
    assert blocking.blocked.wait(WAIT)
    # The thread in its fast batch (of one run) is back soon, as far as the scheduler can tell: these
    # wait in their lane for it, not started, and no submit after the first asks to dispatch them.
    # Only the fallback, armed when they were held back, finds the thread blocked and starts them
    # for a helper; nothing else comes that would.
    handles = [lanes.submit("work", "tool", {"x": i}) for i in range(30)]
    assert [h.result(timeout=WAIT) for h in handles] == list(range(30))
    assert not stuck.future.done()
    blocking.gate.set()
    assert stuck.result(timeout=WAIT) == 0
    _assert_free(lanes, "work")
    _assert_free(lanes, "slow")


def test_a_control_command_submitted_during_a_burst_of_fast_prompts_waits_for_one_batch_at_most(orch):
    # Prefetch must not defeat priority: a thread takes at most one batch of runs ahead (chains
    # included), so a command of a better lane waits for no more than what that batch holds.
    lanes = orch.start_lanes()
    order: list[str] = []
    control: list[Any] = []

    def record(tag: str) -> str:
        order.append(tag)
        if tag == "p100":  # mid-burst, from inside a batch: the thread has taken its runs ahead
            control.append(lanes.submit("control", "record", {"tag": "control"}))
        return tag

    lanes.tools.register(record, name="record")
    for i in range(20):  # fast
        assert lanes.call("prompt", "record", {"tag": f"warm{i}"}) == f"warm{i}"
    order.clear()
    lanes.pause("prompt")
    prompts = [lanes.submit("prompt", "record", {"tag": f"p{i}"}) for i in range(3000)]
    lanes.resume("prompt")
    assert [h.result(timeout=WAIT) for h in prompts] == [f"p{i}" for i in range(3000)]
    assert control[0].result(timeout=WAIT) == "control"
    assert order.index("control") <= order.index("p100") + 16, order.index("control")


@pytest.mark.timeout(120)
def test_cancels_that_race_a_burst_of_chained_runs_leave_every_command_settled_once_and_every_lane_free(orch):
    lanes = orch.start_lanes()
    tool = Counting()
    lanes.tools.register(tool, name="tool")
    names = ["system", "control", "query", "session", "skill", "prompt"]
    for i in range(30):  # fast
        assert lanes.call(names[i % 6], "tool", {"x": -1 - i}) == -1 - i
    handles = [lanes.submit(names[i % 6], "tool", {"x": i}) for i in range(3000)]
    # From another thread while the burst runs: whatever each one finds (queued, chained in a
    # batch not yet run, running, done), every 7th command is cancelled.
    canceller = threading.Thread(target=lambda: [h.cancel("test") for h in handles[::7]])
    canceller.start()
    canceller.join(WAIT)
    assert not canceller.is_alive()
    completed = cancelled = 0
    for i, h in enumerate(handles):
        try:
            assert h.result(timeout=WAIT) == i
            completed += 1
        except CommandCancelled:
            assert i % 7 == 0
            cancelled += 1
    assert all(tool.calls[i] <= 1 for i in range(3000))
    assert sum(tool.calls[i] for i in range(3000)) >= completed  # a cancelled run may have run anyway
    for name in names:
        _assert_free(lanes, name)
    stats = [lanes.lane_stats(name) for name in names]
    assert sum(s.completed for s in stats) == completed + 30
    assert sum(s.cancelled for s in stats) == cancelled


@pytest.mark.timeout(120)
def test_a_run_that_blocks_inside_a_chain_past_its_timeout_is_retried_and_the_lane_ends_free(orch):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1, timeout_s=0.05, retry=RetryPolicy.fixed(1, 0.0))])
    tool = Counting()
    lanes.tools.register(tool, name="tool")
    handles = _burst_blocked_in_a_chain(lanes, tool, 40)
    # The blocked run's timeout fires (its attempt fails and is retried); the runs chained behind it
    # went back to the queue. The lane's one slot stays with the blocked run until it returns, so
    # nothing else runs beside it, and the retry runs once it has.
    wait_until(lambda: lanes.lane_stats("work").timed_out == 1, what="the blocked run's timeout")
    assert tool.active == 1
    tool.blocks = None
    tool.gate.set()
    assert [h.result(timeout=WAIT) for h in handles] == list(range(40))
    assert tool.max_active == 1
    assert tool.calls[10] == 2 and all(tool.calls[i] == 1 for i in range(40) if i != 10)
    _assert_free(lanes, "work")
    assert lanes.lane_stats("work").retried == 1
