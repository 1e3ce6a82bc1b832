"""Status reports per lane and for the manager; tool priorities as ints on the Priority scale."""

from __future__ import annotations

import attrs
import pytest

from laneway.errors import ConfigError, LaneNotFound, PriorityOutOfRange
from laneway.lanes import LaneStatus, LaneStatusReport, ManagerStatusReport, Priority, ToolRegistry, tool
from tests.lanes.support import WAIT, lane, start_lanes


def test_lane_and_manager_status_through_idle_busy_paused_draining_closed(orch, rec):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1), lane("other", priority=1, max_concurrency=3)])
    lanes.tools.register(rec.held(), name="held")
    report = lanes.status("work")
    assert isinstance(report, LaneStatusReport)
    assert report == LaneStatusReport("work", LaneStatus.IDLE, 0, 0, 1, 0)
    assert lanes.status().status is LaneStatus.IDLE
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        report.pending = 3  # type: ignore[misc]

    lanes.submit("work", "held", {"tag": "a"})
    lanes.submit("work", "held", {"tag": "b"})
    rec.wait_started(1)
    busy = lanes.status()
    assert isinstance(busy, ManagerStatusReport)
    assert (busy.status, busy.pending, busy.running, busy.accepting) == (LaneStatus.BUSY, 1, 1, True)
    assert (busy.lane("work").status, busy.lane("work").pending, busy.lane("work").active) == (LaneStatus.BUSY, 1, 1)
    assert busy.lane("other").status is LaneStatus.IDLE and [r.name for r in busy.lanes] == ["work", "other"]

    lanes.pause("other")
    assert lanes.status("other").status is LaneStatus.PAUSED
    lanes.shutdown()
    draining = lanes.status()
    assert draining.status is LaneStatus.DRAINING and draining.lane("work").status is LaneStatus.DRAINING
    assert draining.lane("other").status is LaneStatus.CLOSED  # shut down with nothing left
    rec.release_all()
    assert lanes.drain(WAIT).drained
    assert lanes.status().status is LaneStatus.CLOSED
    lanes.close()
    assert lanes.status("work").status is LaneStatus.CLOSED
    with pytest.raises(LaneNotFound):
        lanes.status("nope")


def test_manager_is_paused_when_every_named_lane_is(orch):
    lanes = start_lanes(orch, [lane("a"), lane("b", priority=1)])
    lanes.pause("a")
    assert lanes.status().status is LaneStatus.IDLE
    lanes.pause("b")
    assert lanes.status().status is LaneStatus.PAUSED
    lanes.session("s").call(lambda: 1, wait_timeout=WAIT)  # session lanes run regardless; they do not count
    assert lanes.status().status is LaneStatus.PAUSED
    assert lanes.status("session:s").session_id == "s"


def test_tool_priority_takes_ints_on_the_priority_scale():
    reg = ToolRegistry()

    @tool(priority=1, registry=reg)
    def urgent() -> None: ...

    @tool(priority=Priority.LOW, registry=reg)
    def later() -> None: ...

    assert urgent.__laneway_tool__.priority is Priority.HIGH
    assert later.__laneway_tool__.priority is Priority.LOW
    for bad in (5, -1, True, 1.0, "high"):
        with pytest.raises(PriorityOutOfRange, match=r"0 \(CRITICAL\) to 4 \(BACKGROUND\)") as err:
            tool(lambda: None, name=f"bad{bad}", priority=bad, registry=reg)
        assert isinstance(err.value, ConfigError)


def test_submit_priority_out_of_range_names_the_range(orch):
    lanes = start_lanes(orch, [lane("work")])
    assert lanes.call("work", lambda: 1, priority=0, wait_timeout=WAIT) == 1
    with pytest.raises(PriorityOutOfRange, match=r"got 7"):
        lanes.submit("work", lambda: 1, priority=7)
