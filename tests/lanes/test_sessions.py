"""Session lanes: serial per session, parallel batches, the lane cap and idle clean-up."""

from __future__ import annotations

import pytest

from laneway.errors import LaneFull, ParallelNotAllowed
from tests.lanes.support import WAIT, start_lanes


def test_commands_of_one_session_never_overlap_but_sessions_run_side_by_side(orch, rec):
    lanes = start_lanes(orch)
    lanes.tools.register(rec.held(), name="held")
    alice, bob = lanes.session("alice"), lanes.session("bob")
    a = [alice.submit("held", {"tag": f"a{i}"}) for i in range(3)]
    b = bob.submit("held", {"tag": "b0"})
    assert sorted(rec.wait_started(2)) == ["a0", "b0"]  # one per session at once
    assert lanes.lane_stats("session:alice").pending == 2
    rec.release("a0", "b0")
    assert rec.wait_started(3)[2] == "a1"
    rec.release_all()
    assert [h.result(timeout=WAIT) for h in a] == ["a0", "a1", "a2"] and b.result(timeout=WAIT) == "b0"
    assert rec.max_active == 2 and lanes.sessions() == ["alice", "bob"]
    # Session lanes also take a plain submit by name.
    assert lanes.submit("session:carol", "held", {"tag": "c"}).result(timeout=WAIT) == "c"


def test_execute_parallel_runs_allowed_tools_together_up_to_the_bound(orch, rec):
    lanes = start_lanes(orch)
    lanes.tools.register(rec.held(), name="fetch", parallel_allowed=True)
    lanes.tools.register(rec.held(), name="write")
    chat = lanes.session("s1")
    with pytest.raises(ParallelNotAllowed, match="write"):
        chat.execute_parallel([("fetch", {"tag": "x"}), ("write", {"tag": "y"})], max_concurrent=2)
    assert rec.started == [] and chat.statistics().pending == 0  # nothing of the refused batch ran

    before = chat.submit("write", {"tag": "before"})
    batch = chat.execute_parallel([("fetch", {"tag": f"f{i}"}) for i in range(3)], max_concurrent=2)
    after = chat.submit("write", {"tag": "after"})
    rec.wait_started(1)
    rec.release("before")
    assert sorted(rec.wait_started(3)[1:]) == ["f0", "f1"]  # two batch members at once
    rec.release("f0")
    assert rec.wait_started(4)[3] == "f2"
    rec.release("f1", "f2")
    assert [h.result(timeout=WAIT) for h in batch] == ["f0", "f1", "f2"]
    assert rec.wait_started(5)[4] == "after"  # the batch held the session like one command
    rec.release_all()
    assert before.result(timeout=WAIT) == "before" and after.result(timeout=WAIT) == "after"
    assert rec.max_active == 2


def test_the_session_cap_cleans_up_idle_lanes_and_refuses_when_all_are_busy(orch, rec):
    lanes = start_lanes(orch, max_sessions=2)
    lanes.tools.register(rec.held(), name="held")
    lanes.session("old")
    busy = lanes.session("busy")
    busy.submit("held", {"tag": "b"})
    rec.wait_started(1)
    lanes.session("new")  # "old" is idle: removed to make room
    assert lanes.sessions() == ["busy", "new"]
    lanes.session("new").submit("held", {"tag": "n"})
    rec.wait_started(2)
    with pytest.raises(LaneFull, match="session lanes are busy"):
        lanes.session("third")
    rec.release_all()


def test_idle_session_lanes_are_removed_after_the_idle_time(morch, clock, rec):
    lanes = start_lanes(morch, session_idle_s=60)
    lanes.tools.register(rec.quick(), name="quick")
    with morch.events.subscribe("queue.session.closed") as sub:
        lanes.session("s").submit("quick", {"tag": "t"}).result(timeout=WAIT)
        clock.advance(30)
        lanes.session("s").submit("quick", {"tag": "t"}).result(timeout=WAIT)  # used again: the clock restarts
        clock.advance(59)
        assert lanes.sessions() == ["s"]
        clock.advance(1)
        assert sub.get(timeout=WAIT).data == {"session_id": "s", "reason": "idle"}
    assert lanes.sessions() == []
    assert lanes.session("s").close() is True and lanes.sessions() == []


def test_a_batch_whose_members_were_all_cancelled_is_skipped_for_the_next_command(orch, rec):
    lanes = start_lanes(orch)
    lanes.tools.register(rec.held(), name="fetch", parallel_allowed=True)
    lanes.tools.register(rec.held(), name="write")
    chat = lanes.session("s2")
    before = chat.submit("write", {"tag": "before"})
    batch = chat.execute_parallel([("fetch", {"tag": f"f{i}"}) for i in range(2)], max_concurrent=2)
    after = chat.submit("write", {"tag": "after"})
    rec.wait_started(1)
    assert all(lanes.cancel(h.command_id) for h in batch)  # the batch's queue entry is left empty
    rec.release("before")
    assert rec.wait_started(2)[1] == "after"  # the dispatcher passed over the empty batch
    rec.release_all()
    assert before.result(timeout=WAIT) == "before" and after.result(timeout=WAIT) == "after"
    assert chat.statistics().pending == 0 and rec.started == ["before", "after"]
