"""A transition that fails half-way loses nothing: launches that raise, hooks that raise."""

from __future__ import annotations

import logging
import threading

import pytest

from laneway.errors import LaneError
from laneway.lanes import LaneReading, ToolSpec
from tests.lanes.support import WAIT, lane, start_lanes


def _refuse_threads(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """Make starting a thread whose name starts with ``prefix`` fail, as when the OS is out of threads."""
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name.startswith(prefix):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)


def _assert_lane_is_free(lanes, name: str) -> None:
    assert lanes.drain(WAIT).drained
    stats = lanes.lane_stats(name)
    assert (stats.active, stats.pending) == (0, 0)
    assert lanes.statistics().running == 0


def test_a_worker_thread_that_cannot_start_fails_its_command_not_the_lane(orch, monkeypatch):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)])
    _refuse_threads(monkeypatch, "laneway-lane-")
    handle = lanes.submit("work", lambda: "never")
    with pytest.raises(LaneError, match="could not be launched") as info:
        handle.result(timeout=WAIT)
    assert isinstance(info.value.__cause__, RuntimeError)
    [letter] = lanes.dead_letters("work")
    assert letter.work_id == handle.command_id
    _assert_lane_is_free(lanes, "work")
    monkeypatch.undo()
    assert lanes.call("work", lambda: "ran") == "ran"  # no phantom slot holds the lane


def test_an_event_loop_that_cannot_start_fails_the_async_command(orch, monkeypatch):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)])

    async def fetch() -> int:
        return 1

    _refuse_threads(monkeypatch, "laneway-lanes-async")
    with pytest.raises(LaneError, match="could not be launched"):
        lanes.submit("work", fetch).result(timeout=WAIT)
    _assert_lane_is_free(lanes, "work")
    monkeypatch.undo()
    assert lanes.call("work", fetch) == 1


class _Refuses:
    """A truth value that cannot be read: a tool spec whose executor cannot be chosen."""

    def __bool__(self) -> bool:
        raise RuntimeError("no executor for this spec")


def test_a_tool_spec_whose_launch_raises_fails_that_command_and_frees_its_slot(orch):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)])
    odd = ToolSpec(name="odd", fn=lambda: "never", is_async=_Refuses())  # type: ignore[arg-type]
    handle = lanes.submit("work", odd)
    with pytest.raises(LaneError, match="could not be launched.*no executor"):
        handle.result(timeout=WAIT)
    _assert_lane_is_free(lanes, "work")
    assert lanes.call("work", lambda: "next") == "next"
    assert lanes.lane_stats("work").failed == 1


class _BrokenRecorder:
    def queue_length(self, pending: int) -> None:
        raise RuntimeError("metrics backend down")

    def completed(self, latency_s: float, now: float) -> None:
        raise RuntimeError("metrics backend down")

    def read(self, now: float) -> LaneReading:
        return LaneReading()


class _BrokenMetrics:
    def recorder(self, lane: str, now: float) -> _BrokenRecorder:
        return _BrokenRecorder()

    def reset(self) -> None:
        pass


def test_a_metrics_recorder_that_raises_mid_transition_loses_no_command(orch, caplog):
    lanes = start_lanes(orch, [lane("work", max_concurrency=1)], metrics=_BrokenMetrics())
    with caplog.at_level(logging.ERROR, logger="laneway.lanes"):
        assert [lanes.call("work", lambda i=i: i) for i in range(3)] == [0, 1, 2]
    _assert_lane_is_free(lanes, "work")
    assert lanes.lane_stats("work").completed == 3
    assert "metrics backend down" in caplog.text
