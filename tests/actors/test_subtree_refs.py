"""References into a subtree survive restarts of the subtree, at any depth."""

from __future__ import annotations

import pytest

from laneway import errors
from laneway.actors import ChildSpec, OneForAll, OneForOne, RestForOne, supervisor_spec
from tests.actors.support import Counter, Crash, Get, Inc, wait_restarted


def _trip(orch, sub, ref, supervisor: str) -> None:
    """Crash ``ref`` until its supervisor (max_restarts=1) gives up."""
    ref.tell(Crash())
    wait_restarted(sub, ref.name.rsplit("/", 1)[1])
    ref.tell(Crash())
    sub.wait_for(lambda e: e.key == "supervisor.escalated" and e.source == supervisor, 10)


def test_a_grandchild_ref_taken_before_its_supervisor_restarts_works_after(orch):
    inner = supervisor_spec("inner", OneForOne(max_restarts=1, within_s=60), [ChildSpec(Counter, name="x")])
    orch.spawn_supervisor("outer", strategy=OneForOne(max_restarts=5, within_s=60), children=[inner])
    x = orch.lookup("outer/inner/x")
    inner_ref = orch.lookup("outer/inner")
    with orch.events.subscribe("supervisor") as sub:
        _trip(orch, sub, x, "outer/inner")
        wait_restarted(sub, "inner")
    assert orch.lookup("outer/inner/x") is x
    assert orch.lookup("outer/inner") is inner_ref and inner_ref.child("x") is x
    assert x.ask(Inc(2), timeout=5) == 2
    assert x.incarnation == 3


@pytest.mark.parametrize("strategy", [OneForAll, RestForOne], ids=["one_for_all", "rest_for_one"])
def test_refs_into_a_subtree_restarted_by_its_siblings_failure_survive(orch, strategy):
    """The sibling ``first`` fails; the outer strategy restarts the ``mid`` subtree, two levels deep."""
    deep = supervisor_spec("deep", OneForOne(), [ChildSpec(Counter, name="y")])
    mid = supervisor_spec("mid", OneForOne(), [ChildSpec(Counter, name="x"), deep])
    orch.spawn_supervisor(
        "outer", strategy=strategy(max_restarts=5, within_s=60), children=[ChildSpec(Counter, name="first"), mid]
    )
    x, y = orch.lookup("outer/mid/x"), orch.lookup("outer/mid/deep/y")
    x.tell(Inc(1))
    with orch.events.subscribe("supervisor") as sub:
        orch.lookup("outer/first").tell(Crash())
        wait_restarted(sub, "first"), wait_restarted(sub, "mid")
    assert orch.lookup("outer/mid/x") is x and orch.lookup("outer/mid/deep/y") is y
    assert x.ask(Get(), timeout=5) == 0  # fresh state, same reference
    assert y.ask(Inc(3), timeout=5) == 3


def test_a_deleted_child_is_gone_for_good(orch):
    sup = orch.spawn_supervisor("sup", children=[ChildSpec(Counter, name="a")])
    a = sup.child("a")
    sup.terminate_child("a")
    sup.delete_child("a")
    with pytest.raises(errors.ActorNotFound):
        orch.lookup("sup/a")
    with pytest.raises(errors.ActorDead):
        a.ask(Get(), timeout=5)
    b = sup.start_child(ChildSpec(Counter, name="a"))
    assert b is not a and orch.lookup("sup/a") is b
