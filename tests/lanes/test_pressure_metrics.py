"""Pressure events are opt-in per lane, idle answers pressure, and lanes report to a pluggable metrics backend."""

from __future__ import annotations

import pytest

from laneway.errors import ConfigError
from laneway.lanes import DEFAULT_LANES, InMemoryLaneMetrics, LaneManager, LaneMetrics, LaneReading
from tests.lanes.support import WAIT, lane, start_lanes

LANE_EVENTS = ("queue.lane.pressure", "queue.lane.idle", "test.sentinel")


def _until_sentinel(orch, sub) -> list[str]:
    orch.events.publish("test.sentinel", "test")
    keys = []
    while (e := sub.get(timeout=WAIT)).key != "test.sentinel":
        keys.append(e.key)
    return keys


def test_pressure_is_off_unless_a_lane_configures_it(orch, rec):
    assert all(c.pressure_threshold is None for c in DEFAULT_LANES)
    lanes = start_lanes(orch, [lane("work", max_concurrency=4)])
    lanes.tools.register(rec.quick(), name="quick")
    with orch.events.subscribe(LANE_EVENTS) as sub:
        lanes.pause("work")
        for i in range(150):  # past the old default threshold of 100
            lanes.submit("work", "quick", {"tag": str(i)})
        lanes.resume("work")
        assert lanes.drain(WAIT).drained
        rec.wait_ended(150)
        assert _until_sentinel(orch, sub) == []


def test_idle_is_published_only_after_a_pressure_event_of_the_lane(orch, rec):
    lanes = start_lanes(orch, [lane("work", max_concurrency=2, pressure_threshold=3)])
    lanes.tools.register(rec.quick(), name="quick")
    with orch.events.subscribe(LANE_EVENTS) as sub:
        lanes.call("work", "quick", {"tag": "alone"}, wait_timeout=WAIT)  # busy then idle, no pressure
        lanes.pause("work")
        for i in range(3):
            lanes.submit("work", "quick", {"tag": str(i)})
        lanes.resume("work")
        assert sub.wait_for(lambda e: e.key == "queue.lane.idle", WAIT).source == "work"
        lanes.call("work", "quick", {"tag": "after"}, wait_timeout=WAIT)  # idle again, no new pressure
        assert lanes.drain(WAIT).drained
        rec.wait_ended(5)
        assert _until_sentinel(orch, sub) == []


class Recording:
    """A backend that keeps what it is told, on top of the in-memory one."""

    def __init__(self) -> None:
        self.inner = InMemoryLaneMetrics()
        self.lengths: dict[str, list[int]] = {}
        self.completions: dict[str, int] = {}

    def recorder(self, name: str, now: float):
        inner = self.inner.recorder(name, now)
        lengths = self.lengths.setdefault(name, [])
        outer = self

        class Rec:
            def queue_length(self, pending: int) -> None:
                lengths.append(pending)
                inner.queue_length(pending)

            def completed(self, latency_s: float, now: float) -> None:
                outer.completions[name] = outer.completions.get(name, 0) + 1
                inner.completed(latency_s, now)

            def read(self, now: float) -> LaneReading:
                return inner.read(now)

        return Rec()

    def reset(self) -> None:
        self.inner.reset()


def test_lanes_report_queue_length_and_completions_to_the_backend_and_reset_clears_it(morch, clock, rec):
    metrics = Recording()
    assert isinstance(metrics, LaneMetrics)
    lanes = start_lanes(morch, [lane("work")], metrics=metrics)
    assert lanes.metrics is metrics
    lanes.tools.register(rec.quick(), name="quick")
    lanes.pause("work")
    handles = [lanes.submit("work", "quick", {"tag": str(i)}) for i in range(3)]
    clock.advance(2)
    lanes.resume("work")
    for h in handles:
        h.result(timeout=WAIT)
    assert lanes.drain(WAIT).drained
    assert metrics.lengths["work"][:3] == [1, 2, 3] and metrics.lengths["work"][-1] == 0
    assert metrics.completions == {"work": 3}
    s = lanes.lane_stats("work")
    assert (s.latency_p50_s, s.peak_pending, s.completed) == (2.0, 3, 3)
    metrics.reset()
    s = lanes.lane_stats("work")
    assert (s.latency_p50_s, s.peak_pending, s.throughput_per_s, s.completed) == (None, 0, 0.0, 3)


def test_session_lanes_get_recorders_and_a_bad_backend_is_refused(orch):
    metrics = Recording()
    lanes = start_lanes(orch, [lane("session")], metrics=metrics)
    lanes.session("s1").call(lambda: 1, wait_timeout=WAIT)
    assert metrics.completions == {"session:s1": 1}
    with pytest.raises(ConfigError, match="LaneMetrics"):
        LaneManager(orch, lanes=[lane("x")], store=None, metrics=object())
