"""Supervision semantics, following Erlang/OTP (see shared/STYLE.md)."""

from __future__ import annotations

import threading

import pytest

from laneway import errors
from laneway.actors import (
    Backoff,
    ChildSpec,
    ChildState,
    OneForAll,
    OneForOne,
    RestartType,
    RestForOne,
    supervisor_spec,
)
from tests.actors.support import Block, Counter, Crash, FailingStart, Get, Inc, wait_restarted


def specs(*names, restart="permanent", log=None, placement="thread"):
    return [
        ChildSpec(Counter, name=n, restart=restart, kwargs={"log": log} if log is not None else {}, placement=placement)
        for n in names
    ]


def incarnations(sup):
    return {c.name: c.ref.incarnation for c in sup.which_children()}


def test_children_start_in_order_and_stop_in_reverse(orch):
    log: list = []
    sup = orch.spawn_supervisor("sup", children=specs("a", "b", "c", log=log))
    assert [x for x in log if x[0] == "start"] == [("start", "sup/a"), ("start", "sup/b"), ("start", "sup/c")]
    assert orch.shutdown(timeout=5).clean
    assert [x for x in log if x[0] == "stop"] == [("stop", "sup/c"), ("stop", "sup/b"), ("stop", "sup/a")]
    assert not sup.is_alive()


def test_one_for_one_restarts_only_the_failed_child_behind_the_same_ref(orch, placement):
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(), children=specs("a", "b", placement=placement))
    a, b = sup.child("a"), sup.child("b")
    b.tell(Inc(5))
    with orch.events.subscribe("supervisor") as sub:
        a.tell(Crash())
        wait_restarted(sub, "a")
    assert incarnations(sup) == {"a": 2, "b": 1}
    assert a.ask(Get(), timeout=5) == 0  # fresh state, same reference
    assert b.ask(Get(), timeout=5) == 5  # sibling untouched


def test_one_for_all_restarts_every_child(orch):
    log: list = []
    sup = orch.spawn_supervisor("sup", strategy=OneForAll(), children=specs("a", "b", "c", log=log))
    log.clear()
    with orch.events.subscribe("supervisor") as sub:
        sup.child("b").tell(Crash())
        wait_restarted(sub, "a"), wait_restarted(sub, "b"), wait_restarted(sub, "c")
    assert incarnations(sup) == {"a": 2, "b": 2, "c": 2}
    # Others stopped in reverse start order, then all started in start order.
    assert log == [
        ("stop", "sup/b"),  # the crashed one ran on_stop as it died
        ("stop", "sup/c"),
        ("stop", "sup/a"),
        ("start", "sup/a"),
        ("start", "sup/b"),
        ("start", "sup/c"),
    ]


def test_rest_for_one_restarts_the_failed_child_and_later_ones(orch):
    log: list = []
    sup = orch.spawn_supervisor("sup", strategy=RestForOne(), children=specs("a", "b", "c", log=log))
    log.clear()
    with orch.events.subscribe("supervisor") as sub:
        sup.child("b").tell(Crash())
        wait_restarted(sub, "b"), wait_restarted(sub, "c")
    assert incarnations(sup) == {"a": 1, "b": 2, "c": 2}
    assert log == [("stop", "sup/b"), ("stop", "sup/c"), ("start", "sup/b"), ("start", "sup/c")]


def test_transient_restarted_after_crash_but_not_after_normal_stop(orch, placement):
    sup = orch.spawn_supervisor("sup", children=specs("t", restart="transient", placement=placement))
    t = sup.child("t")
    with orch.events.subscribe("supervisor") as sub:
        t.tell(Crash())
        wait_restarted(sub, "t")
    assert t.stop(timeout=5)
    assert sup.which_children()[0].state is ChildState.STOPPED
    with pytest.raises(errors.ActorDead):
        t.ask(Get(), timeout=5)


def test_permanent_restarted_even_after_normal_stop(orch, placement):
    sup = orch.spawn_supervisor("sup", children=specs("p", placement=placement))
    with orch.events.subscribe("supervisor") as sub:
        sup.child("p").stop(timeout=5)
        wait_restarted(sub, "p")
    assert sup.child("p").ask(Get(), timeout=5) == 0


def test_temporary_never_restarted_even_when_a_sibling_fails(orch, placement):
    sup = orch.spawn_supervisor(
        "sup",
        strategy=OneForAll(),
        children=[
            *specs("a", placement=placement),
            *specs("tmp", restart=RestartType.TEMPORARY, placement=placement),
            *specs("c", placement=placement),
        ],
    )
    with orch.events.subscribe("supervisor") as sub:
        sup.child("a").tell(Crash())
        wait_restarted(sub, "a"), wait_restarted(sub, "c")
    assert [c.name for c in sup.which_children()] == ["a", "c"]
    with pytest.raises(errors.ActorNotFound):
        sup.child("tmp")
    # and its own crash just removes it
    tmp = sup.start_child(ChildSpec(Counter, name="tmp2", restart="temporary", placement=placement))
    with orch.events.subscribe("actor.stopped") as sub:
        tmp.tell(Crash())
        assert tmp._cell.exited.wait(5)
    assert [c.name for c in sup.which_children()] == ["a", "c"]


def test_intensity_trips_on_restart_max_plus_one(orch, placement):
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(max_restarts=2, within_s=60), children=specs("a", placement=placement))
    a = sup.child("a")
    with orch.events.subscribe(("supervisor", "actor.crashed")) as sub:
        for n in (1, 2):
            a.tell(Crash())
            wait_restarted(sub, "a")
        a.tell(Crash())
        escalated = sub.wait_for(lambda e: e.key == "supervisor.escalated", 10)
        crashed = sub.wait_for(lambda e: e.key == "actor.crashed" and e.source == "sup", 10)
    assert "more than 2 restarts within 60" in escalated.data["reason"]
    assert "SupervisorEscalation" in crashed.data["error"]
    assert not sup.is_alive() and not a.is_alive()


def test_intensity_zero_trips_on_first_failure(orch):
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(max_restarts=0), children=specs("a"))
    sup.child("a").tell(Crash())
    assert sup._cell.exited.wait(10)
    assert isinstance(sup.exit.error, errors.SupervisorEscalation)


def test_intensity_window_forgets_old_restarts(manual_orch):
    orch, clock = manual_orch, manual_orch.clock
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(max_restarts=1, within_s=5), children=specs("a"))
    with orch.events.subscribe("supervisor") as sub:
        for _ in range(4):  # one restart per 6 s never exceeds 1 in 5 s
            sup.child("a").tell(Crash())
            wait_restarted(sub, "a")
            clock.advance(6)
    assert sup.is_alive()
    assert sup.which_children()[0].restarts == 4


def test_escalation_through_a_two_level_tree(orch):
    inner = supervisor_spec("inner", OneForOne(max_restarts=1, within_s=60), specs("w"))
    top = orch.spawn_supervisor(
        "top", strategy=OneForOne(max_restarts=1, within_s=60), children=[inner, *specs("other")]
    )
    with orch.events.subscribe(("supervisor", "actor.crashed")) as sub:
        # Each inner escalation restarts the inner subtree once; the second exceeds top's intensity too.
        for round_ in (1, 2):
            w = orch.lookup("top/inner/w")
            w.tell(Crash())
            wait_restarted(sub, "w")
            w.tell(Crash())
            sub.wait_for(lambda e: e.key == "supervisor.escalated" and e.source == "top/inner", 10)
            if round_ == 1:
                wait_restarted(sub, "inner")
        sub.wait_for(lambda e: e.key == "supervisor.escalated" and e.source == "top", 10)
    assert top._cell.exited.wait(10)
    assert isinstance(top.exit.error, errors.SupervisorEscalation)
    assert isinstance(top.exit.error.__cause__, errors.SupervisorEscalation)  # the inner one's


def test_backoff_delays_restart_without_blocking_the_mailbox(manual_orch):
    orch, clock = manual_orch, manual_orch.clock
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=10.0, jitter=0.0)
    sup = orch.spawn_supervisor("sup", strategy=OneForOne(max_restarts=5, within_s=100, backoff=backoff), children=specs("a"))
    a = sup.child("a")
    with orch.events.subscribe("supervisor") as sub:
        a.tell(Crash())
        assert sub.wait_for(lambda e: e.key == "supervisor.child.backoff", 10).data["delay_s"] == 1.0
        assert clock.wait_for_timers(1, timeout=10)
        # The supervisor still answers while the child waits out its backoff.
        assert sup.which_children()[0].state is ChildState.RESTARTING
        with pytest.raises(errors.ActorDead):
            a.ask(Get(), timeout=5)
        clock.advance(0.5)
        assert sup.which_children()[0].state is ChildState.RESTARTING
        clock.advance(0.5)
        wait_restarted(sub, "a")
        a.tell(Crash())
        assert sub.wait_for(lambda e: e.key == "supervisor.child.backoff", 10).data["delay_s"] == 2.0
        clock.wait_for_timers(1, timeout=10)
        clock.advance(2)
        wait_restarted(sub, "a")
    assert a.ask(Get(), timeout=5) == 0


def test_backoff_resets_for_a_child_that_ran_healthy_for_backoff_reset_s(manual_orch):
    orch, clock = manual_orch, manual_orch.clock
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=10.0, jitter=0.0)
    strategy = OneForOne(max_restarts=10, within_s=100, backoff=backoff, backoff_reset_s=5.0)
    sup = orch.spawn_supervisor("sup", strategy=strategy, children=specs("a", "b"))
    a, b = sup.child("a"), sup.child("b")
    with orch.events.subscribe("supervisor") as sub:

        def crash(child, name, advance_after_restart=0.0):
            child.tell(Crash())
            delay = sub.wait_for(lambda e: e.key == "supervisor.child.backoff", 10).data["delay_s"]
            assert clock.wait_for_timers(1, timeout=10)
            clock.advance(delay)
            wait_restarted(sub, name)
            clock.advance(advance_after_restart)
            return delay

        assert [crash(a, "a"), crash(a, "a")] == [1.0, 2.0]  # crash-looping: the backoff grows
        assert crash(b, "b") == 1.0  # per child: a's failures do not slow b down
        assert crash(a, "a", advance_after_restart=5.0) == 4.0
        assert crash(a, "a") == 1.0  # it had run 5 s: healthy, so back to the first delay


def test_backoff_is_capped_and_jittered():
    b = Backoff(initial_s=1, factor=3, max_s=5, jitter=0.5)
    delays = [b.delay(n) for n in range(1, 20)]
    assert all(0 <= d <= 5 for d in delays)
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jitter spreads capped delays


def test_failing_child_start_stops_started_siblings_and_fails_supervisor(orch):
    log: list = []
    with pytest.raises(errors.ActorStartError):
        orch.spawn_supervisor("sup", children=[*specs("a", "b", log=log), ChildSpec(FailingStart, name="bad")])
    assert log == [("start", "sup/a"), ("start", "sup/b"), ("stop", "sup/b"), ("stop", "sup/a")]
    with pytest.raises(errors.ActorNotFound):
        orch.lookup("sup")


def test_start_child_that_fails_to_start_is_replied_and_the_supervisor_carries_on(orch, placement):
    sup = orch.spawn_supervisor("sup", children=specs("a", placement=placement))
    with pytest.raises(errors.ActorStartError) as info:
        sup.start_child(ChildSpec(FailingStart, name="bad", placement=placement))
    assert isinstance(info.value.__cause__, ValueError)
    assert sup.is_alive() and sup.incarnation == 1
    assert [c.name for c in sup.which_children()] == ["a"]
    assert sup.child("a").ask(Inc(), timeout=5) == 1
    with pytest.raises(errors.ActorNotFound):
        orch.lookup("sup/bad")


def test_terminate_restart_delete_child(orch, placement):
    sup = orch.spawn_supervisor("sup", children=specs("a", placement=placement))
    sup.terminate_child("a")
    assert sup.which_children()[0].state is ChildState.STOPPED
    ref = sup.restart_child("a")
    assert ref.ask(Inc(), timeout=5) == 1
    with pytest.raises(errors.ConfigError):
        sup.delete_child("a")
    sup.terminate_child("a")
    sup.delete_child("a")
    assert sup.which_children() == []
    with pytest.raises(errors.ActorNotFound):
        sup.terminate_child("a")


def test_bad_specs_are_typed_errors():
    with pytest.raises(errors.ConfigError, match="restart must be one of"):
        ChildSpec(Counter, name="x", restart="sometimes")
    with pytest.raises(errors.ConfigError, match="child name"):
        ChildSpec(Counter, name="")
    with pytest.raises(errors.ConfigError, match="max_restarts"):
        OneForOne(max_restarts=-1)


def test_shutdown_with_a_stuck_actor_reports_it_and_does_not_hang(orch):
    gate = threading.Event()
    sup = orch.spawn_supervisor("sup", children=[ChildSpec(Counter, name="stuck", shutdown_s=0.2), *specs("ok")])
    sup.child("stuck").tell(Block(gate))
    free = orch.spawn(Counter, name="free")
    with orch.events.subscribe("actor.stuck") as sub:
        # The stuck child is given up after its shutdown_s (0.2 s); the system's own
        # timeout only bounds the whole stop, generous for a loaded machine.
        report = orch.shutdown(timeout=30)
        assert sub.get(timeout=10).source == "sup/stuck"
    gate.set()
    assert report.stuck == ("sup/stuck",)
    assert "free" in report.stopped and "sup" in report.stopped
    assert not free.is_alive()
    with pytest.raises(errors.SystemShutdown):
        orch.spawn(Counter, name="late")
