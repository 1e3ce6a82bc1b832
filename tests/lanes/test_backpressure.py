"""Bounded queues, the max_wait estimate, positions and ETAs, shutdown, drain and close."""

from __future__ import annotations

import threading
import time

import pytest

from laneway.errors import LaneBusy, LaneFull, LaneShutdown
from tests.lanes.support import WAIT, lane, start_lanes


def test_a_full_lane_blocks_submit_then_raises_lane_full(orch, rec):
    lanes = start_lanes(orch, [lane("work", max_pending=2)])
    lanes.tools.register(rec.held(), name="held")
    lanes.submit("work", "held", {"tag": "running"})
    rec.wait_started(1)
    lanes.submit("work", "held", {"tag": "q1"})
    lanes.submit("work", "held", {"tag": "q2"})
    with pytest.raises(LaneFull, match="full"):
        lanes.submit_nowait("work", "held", {"tag": "refused"})
    t0 = time.monotonic()
    with pytest.raises(LaneFull, match="stayed full"):
        lanes.submit("work", "held", {"tag": "refused"}, block_timeout=0.2)
    assert time.monotonic() - t0 >= 0.2
    assert lanes.lane_stats("work").pending == 2

    # A blocked submit goes through as soon as a queued command starts.
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(lanes.submit("work", "held", {"tag": "q3"}, block_timeout=WAIT)))
    waiter.start()
    rec.release("running")
    waiter.join(WAIT)
    assert got and got[0].lane == "work"
    rec.release_all()
    assert got[0].result(timeout=WAIT) == "q3"


def test_max_wait_refuses_when_the_estimated_wait_is_longer(orch, rec):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)])

    def sleepy(s: float) -> float:
        time.sleep(s)
        return s

    lanes.tools.register(sleepy)
    lanes.tools.register(rec.held(), name="held")
    sleepy_h = lanes.submit("work", "sleepy", {"s": 0.05})
    assert sleepy_h.eta_s == 0.0 and sleepy_h.position == 0
    sleepy_h.result(timeout=WAIT)  # the lane now knows its runs take about 50 ms
    lanes.submit("work", "held", {"tag": "busy"})
    rec.wait_started(1)
    handles = [lanes.submit("work", "sleepy", {"s": 0.0}) for _ in range(3)]
    assert [h.position for h in handles] == [0, 1, 2]
    assert handles[2].eta_s == pytest.approx(3 * lanes.lane_stats("work").latency_p50_s, rel=0.5)
    with pytest.raises(LaneBusy, match="exceeds max_wait"):
        lanes.submit("work", "sleepy", {"s": 0.0}, max_wait=0.01)
    assert lanes.submit("work", "sleepy", {"s": 0.0}, max_wait=60).position == 3
    rec.release_all()


def test_shutdown_refuses_new_work_and_drain_reports_what_is_left(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.held(), name="held")
    running = lanes.submit("work", "held", {"tag": "running"})
    queued = [lanes.submit("work", "held", {"tag": f"q{i}"}) for i in range(3)]
    rec.wait_started(1)
    with orch.events.subscribe("queue.shutdown") as sub:
        lanes.shutdown()
        assert sub.get(timeout=WAIT).data == {"pending": 3, "running": 1}
    with pytest.raises(LaneShutdown):
        lanes.submit("work", "held", {"tag": "late"})
    report = lanes.drain(0.05)
    assert not report.drained
    assert report.running == (running.command_id,) and report.queued == tuple(h.command_id for h in queued)
    rec.release("running", "q0")
    rec.wait_started(3)
    # close() ends what is left: without a store, in the dead-letter queue, never dropped.
    report = lanes.close(0.05)
    left = (queued[1].command_id, queued[2].command_id)
    assert (report.running, report.queued, report.dead_lettered) == (left[:1], left[1:], left)
    for h in queued[1:]:
        with pytest.raises(LaneShutdown, match="dead-lettered"):
            h.result(timeout=WAIT)
    assert [x.work_id for x in lanes.dead_letters()] == list(left)
    assert running.result(timeout=WAIT) == "running" and queued[0].result(timeout=WAIT) == "q0"


def test_drain_waits_for_in_flight_work(orch, rec):
    lanes = start_lanes(orch, [lane("work", max_concurrency=2)])
    lanes.tools.register(rec.held(), name="held")
    handles = [lanes.submit("work", "held", {"tag": f"t{i}"}) for i in range(4)]
    rec.wait_started(2)
    threading.Timer(0.05, rec.release_all).start()
    report = lanes.drain(WAIT)
    assert report.drained and report.queued == () and report.running == ()
    assert all(h.done() for h in handles)
