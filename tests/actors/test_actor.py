"""Actor basics: tell/ask, await without blocking the loop, crashes, dead actors, names."""

from __future__ import annotations

import asyncio
import time

import pytest

from laneway import errors
from laneway.actors import Actor, ExitKind, Future
from tests.actors.support import Block, Counter, Crash, FailingStart, Get, Inc, StopSelf


def test_tell_then_ask_sees_effect_in_order(orch, placement):
    ref = orch.spawn(Counter, name="counter", placement=placement)
    for _ in range(100):
        ref.tell(Inc(2))
    assert ref.ask(Get(), timeout=5) == 200


def test_spawn_passes_args_and_kwargs(orch, placement):
    ref = orch.spawn(Counter, 40, name="c", placement=placement)
    assert ref.ask(Inc(2), timeout=5) == 42


def test_ask_future_get_and_timeout(orch, placement, gates):
    ref = orch.spawn(Counter, name="c", placement=placement)
    gate = gates()
    ref.tell(Block(gate))
    fut = ref.ask_future(Get())
    with pytest.raises(errors.AskTimeout) as info:
        fut.get(timeout=0.05)
    assert "reply from c to Get" in str(info.value)
    assert isinstance(info.value, TimeoutError)
    gate.set()
    assert fut.get(timeout=5) == 0


def test_await_ask_does_not_block_the_event_loop(orch, placement, gates):
    ref = orch.spawn(Counter, name="c", placement=placement)
    gate = gates()
    ref.tell(Block(gate))

    async def main() -> tuple[int, int]:
        ticks = 0
        task = asyncio.ensure_future(ref.ask_async(Get(), timeout=10))
        # The loop must keep running other work while the actor is blocked.
        while ticks < 20:
            await asyncio.sleep(0)
            ticks += 1
        assert not task.done()
        gate.set()
        return await task, ticks

    value, ticks = asyncio.run(asyncio.wait_for(main(), 10))
    assert (value, ticks) == (0, 20)


def test_await_future_directly(orch, placement):
    ref = orch.spawn(Counter, 5, name="c", placement=placement)

    async def main() -> int:
        return await ref.ask_future(Get())

    assert asyncio.run(main()) == 5


def test_ask_async_timeout_is_typed(orch, placement, gates):
    ref = orch.spawn(Counter, name="c", placement=placement)
    gate = gates()
    ref.tell(Block(gate))

    async def main() -> None:
        await ref.ask_async(Get(), timeout=0.05)

    with pytest.raises(errors.AskTimeout):
        asyncio.run(main())
    gate.set()


def test_crash_in_ask_fails_the_asker_with_cause_and_stops_actor(orch, placement):
    ref = orch.spawn(Counter, name="c", placement=placement)
    with orch.events.subscribe("actor.crashed") as sub:
        with pytest.raises(errors.ActorCrashed) as info:
            ref.ask(Crash("kaput"), timeout=5)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert isinstance(info.value.error, RuntimeError)
        event = sub.get(timeout=5)
    assert event.source == "c" and "kaput" in event.data["error"]
    assert not ref.is_alive()
    assert ref.exit.kind is ExitKind.CRASH


def test_ask_to_dead_actor_fails_fast(orch, placement):
    ref = orch.spawn(Counter, name="c", placement=placement)
    assert ref.stop(timeout=5)
    started = time.monotonic()
    with pytest.raises(errors.ActorDead):
        ref.ask(Get(), timeout=30)
    with pytest.raises(errors.ActorDead):
        ref.tell(Inc())
    assert time.monotonic() - started < 5


def test_queued_asks_fail_with_actor_dead_when_actor_crashes(orch, placement, gates):
    ref = orch.spawn(Counter, name="c", placement=placement)
    gate = gates()
    ref.tell(Block(gate))
    crash = ref.ask_future(Crash())
    queued = [ref.ask_future(Get()) for _ in range(10)]
    gate.set()
    with pytest.raises(errors.ActorCrashed):
        crash.get(timeout=5)
    for fut in queued:
        with pytest.raises(errors.ActorDead) as info:
            fut.get(timeout=5)
        assert "crashed" in str(info.value)


def test_queued_tells_become_dead_letter_events(orch, placement, gates):
    ref = orch.spawn(Counter, name="c", placement=placement)
    gate = gates()
    ref.tell(Block(gate))
    ref.tell(Crash())
    with orch.events.subscribe("actor.dead_letter") as sub:
        ref.tell(Inc(7))
        gate.set()
        event = sub.get(timeout=5)
    assert event.data["message"] == Inc(7)


def test_unhandled_message_is_typed_and_does_not_crash(orch, placement):
    ref = orch.spawn(Counter, name="c", placement=placement)
    with pytest.raises(errors.UnhandledMessage):
        ref.ask("what is this", timeout=5)
    assert ref.ask(Get(), timeout=5) == 0


def test_failing_on_start_raises_start_error_and_frees_the_name(orch, placement):
    with pytest.raises(errors.ActorStartError) as info:
        orch.spawn(FailingStart, name="bad", placement=placement)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(errors.ActorNotFound):
        orch.lookup("bad")


def test_names_are_unique_and_lookup_works(orch, placement):
    ref = orch.spawn(Counter, name="c", placement=placement)
    assert orch.lookup("c") is ref
    with pytest.raises(errors.NameTaken):
        orch.spawn(Counter, name="c", placement=placement)
    with pytest.raises(errors.ConfigError):
        orch.spawn(Counter, name="a/b")


def test_self_stop_is_a_normal_exit_and_runs_on_stop(orch, placement):
    log: list = []
    ref = orch.spawn(Counter, log=log, name="c", placement=placement)
    ref.tell(StopSelf())
    cell = ref._cell
    assert cell.exited.wait(5)
    assert ref.exit.kind is ExitKind.NORMAL
    if placement == "thread":  # a process actor appends to its own copy of the list
        assert ("stop", "c") in log


def test_handler_lookup_follows_message_subclasses(orch, placement):
    class Special(Inc):
        pass

    ref = orch.spawn(Counter, name="c", placement=placement)
    assert ref.ask(Special(3), timeout=5) == 3


def test_actor_must_be_an_actor(orch, placement):
    with pytest.raises(errors.ActorStartError):
        orch.spawn(lambda: object(), name="x", placement=placement)


def test_future_settle_first_wins():
    fut: Future[int] = Future()
    assert fut.settle(1)
    assert not fut.settle(error=RuntimeError())
    assert fut.get(timeout=1) == 1


def test_actor_context_properties(orch):
    class Introspect(Actor):
        def on_receive(self, message):
            return (self.name, self.ref.name, self.orchestrator.name)

    ref = orch.spawn(Introspect, name="i")
    assert ref.ask("who", timeout=5) == ("i", "i", "test")
