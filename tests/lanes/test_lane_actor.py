"""Every named lane is a supervised actor whose mailbox takes the lane's commands and controls."""

from __future__ import annotations

import threading

import pytest

from laneway import Orchestrator, errors
from laneway.lanes import LaneConfig
from laneway.lanes._lane_actor import Cancel, GetStats, Pause, Resume, SetMaxConcurrent, Submit


@pytest.fixture
def orch():
    o = Orchestrator(name="lane-actors", ask_timeout=10)
    yield o
    o.shutdown(timeout=5)


def test_each_named_lane_is_a_registered_actor(orch):
    names = orch.lanes.lane_names()
    assert names == ["system", "control", "query", "session", "skill", "prompt"]
    for name in names:
        ref = orch.lookup(f"lanes/{name}")
        assert ref is orch.lanes.lane_ref(name) and ref.is_alive()


def test_submit_through_the_mailbox_runs_the_command(orch):
    handle = orch.lanes.lane_ref("query").ask(Submit(lambda x: x * 2, {"x": 21}))
    assert handle.result(timeout=10) == 42


def test_controls_through_the_mailbox(orch):
    ref = orch.lanes.lane_ref("prompt")
    gate = threading.Event()
    ref.ask(Pause())
    handle = ref.ask(Submit(lambda: gate.set() or "ran"))
    assert ref.ask(GetStats()).pending == 1 and not gate.is_set()
    ref.ask(SetMaxConcurrent(4))
    assert orch.lanes.lane_config("prompt").max_concurrency == 4
    ref.ask(Resume())
    assert handle.result(timeout=10) == "ran"
    queued = (ref.ask(Pause()), ref.ask(Submit(lambda: "never")))[1]
    assert ref.ask(Cancel(queued.command_id)) is True
    with pytest.raises(errors.CommandCancelled):
        queued.result(timeout=10)


def test_lane_errors_are_replied_and_the_actor_keeps_running(orch):
    ref = orch.lanes.lane_ref("query")
    with pytest.raises(errors.ToolNotFound):
        ref.ask(Submit("no-such-tool"))
    with pytest.raises(errors.ConfigError):
        ref.ask(SetMaxConcurrent(0))
    assert ref.is_alive() and ref.incarnation == 1


def test_added_and_removed_lanes_get_and_lose_their_actor(orch):
    orch.lanes.add_lane(LaneConfig("batch", priority=9, max_concurrency=1))
    assert orch.lookup("lanes/batch").ask(GetStats()).pending == 0
    orch.lanes.remove_lane("batch")
    with pytest.raises(errors.ActorNotFound):
        orch.lookup("lanes/batch")
    with pytest.raises(errors.ConfigError):
        LaneConfig("a/b")


def test_lane_actors_stop_with_the_manager(orch):
    ref = orch.lanes.lane_ref("control")
    orch.shutdown(timeout=5)
    assert not ref.is_alive()
