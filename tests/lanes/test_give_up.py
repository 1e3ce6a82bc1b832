"""A caller that stops waiting withdraws its command (executus' SubmitWait), unless it asks to keep it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from laneway import Orchestrator
from laneway.errors import CommandCancelled, ConfigError, LanewayTimeout
from laneway.lanes import CommandState, GiveUp, ToolRegistry, default_registry
from tests.lanes.support import WAIT, lane, start_lanes


def test_a_call_that_times_out_withdraws_its_queued_command(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.held(), name="held")
    blocker = lanes.submit("work", "held", {"tag": "blocker"})
    rec.wait_started(1)
    with orch.events.subscribe("queue.command.cancelled") as sub:
        with pytest.raises(LanewayTimeout):
            lanes.call("work", "held", {"tag": "late"}, wait_timeout=0.05, command_id="late")
        event = sub.get(timeout=WAIT)
    assert event.data["command_id"] == "late" and "withdrawn" in event.data["reason"]
    assert lanes.state("late") is None
    rec.release_all()
    assert blocker.result(timeout=WAIT) == "blocker"
    assert lanes.drain(WAIT).drained
    stats = lanes.lane_stats("work")
    assert rec.started == ["blocker"] and stats.cancelled == 1 and stats.pending == 0
    assert lanes.dead_letters() == []


def test_keep_leaves_the_command_queued_to_run_later(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.held(), name="held")
    lanes.submit("work", "held", {"tag": "blocker"})
    rec.wait_started(1)
    with pytest.raises(LanewayTimeout):
        lanes.call("work", "held", {"tag": "kept"}, wait_timeout=0.05, command_id="kept", on_give_up=GiveUp.KEEP)
    assert lanes.state("kept") is CommandState.QUEUED
    rec.release_all()
    assert lanes.drain(WAIT).drained
    assert rec.started == ["blocker", "kept"] and lanes.lane_stats("work").cancelled == 0


def test_on_give_up_must_be_a_give_up(orch):
    lanes = start_lanes(orch, [lane("work")])
    with pytest.raises(ConfigError, match="WITHDRAW or KEEP"):
        lanes.call("work", lambda: 1, on_give_up="keep")
    assert lanes.statistics().lane("work").pending == 0


def test_cancelling_the_awaiting_task_withdraws_a_queued_command(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.held(), name="held")
    lanes.submit("work", "held", {"tag": "blocker"})
    rec.wait_started(1)

    async def main() -> None:
        task = asyncio.ensure_future(lanes.call_async("work", "held", {"tag": "late"}, command_id="late"))
        while lanes.state("late") is None and not task.done():
            await asyncio.sleep(0)  # until the command is queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert lanes.state("late") is None
    rec.release_all()
    assert lanes.drain(WAIT).drained
    assert rec.started == ["blocker"] and lanes.lane_stats("work").cancelled == 1


def test_cancelling_the_awaiting_task_cancels_the_token_of_a_running_command(orch):
    lanes = start_lanes(orch, [lane("work")])
    started, stopped = threading.Event(), threading.Event()

    def long_job(cancel_token) -> str:
        started.set()
        if cancel_token.wait(WAIT):
            stopped.set()
        return "done"

    lanes.tools.register(long_job)

    async def main() -> None:
        task = asyncio.ensure_future(lanes.call_async("work", "long_job"))
        assert await asyncio.get_running_loop().run_in_executor(None, started.wait, WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stopped.wait(WAIT)
    assert lanes.drain(WAIT).drained and lanes.lane_stats("work").cancelled == 1


def test_an_async_call_that_times_out_withdraws_its_command(orch, rec):
    lanes = start_lanes(orch, [lane("work")])
    lanes.tools.register(rec.held(), name="held")
    lanes.submit("work", "held", {"tag": "blocker"})
    rec.wait_started(1)
    with pytest.raises(LanewayTimeout):
        asyncio.run(lanes.call_async("work", "held", {"tag": "late"}, wait_timeout=0.05, command_id="late"))
    assert lanes.state("late") is None
    rec.release_all()
    assert lanes.drain(WAIT).drained and rec.started == ["blocker"]


def test_a_withdrawn_persisted_command_leaves_the_store(tmp_path):
    import tests.lanes.durable_tools  # noqa: F401  - registers durable_echo

    log = tmp_path / "runs.log"
    with Orchestrator(name="give-up", store=str(tmp_path / "lanes.db"), shutdown_timeout=5) as orch:
        lanes = start_lanes(orch, [lane("work")], store=orch.store, tools=ToolRegistry(parent=default_registry))
        lanes.pause("work")
        with pytest.raises(LanewayTimeout):
            lanes.call("work", "durable_echo", {"tag": "t", "log": str(log)}, wait_timeout=0.05, command_id="gone")
        assert orch.store.items("lanes.pending") == []
        lanes.resume("work")
        assert lanes.drain(WAIT).drained and lanes.dead_letters() == []
    assert not log.exists()


def test_a_give_up_after_the_command_ended_changes_nothing(orch):
    lanes = start_lanes(orch, [lane("work")])

    def fails() -> None:
        raise CommandCancelled("its own")

    with pytest.raises(CommandCancelled, match="its own"):
        lanes.call("work", fails, wait_timeout=WAIT)
    assert lanes.lane_stats("work").cancelled == 0
