"""FairQueue reuses emptied caller queues: nothing stale may come back out of a reused one."""

from __future__ import annotations

from types import SimpleNamespace

from laneway.lanes._queue import FairQueue

_seq = iter(range(1, 10**9))


def cmd(caller: str, level: int = 2) -> SimpleNamespace:
    return SimpleNamespace(caller=caller, level=level, seq=next(_seq), queued=True)


def pop(q: FairQueue) -> SimpleNamespace | None:
    c = q.pop()
    if c is not None:
        c.queued = False
    return c


def test_discarded_and_promoted_entries_do_not_survive_reuse():
    q = FairQueue()
    a1, a2 = cmd("a"), cmd("a", level=3)
    q.push(a1)
    q.push(a2)
    q.promote(a2, 1)  # leaves a stale (3, seq) entry behind
    q.discard(a1)
    a1.queued = False
    assert pop(q) is a2 and len(q) == 0 and pop(q) is None
    b = cmd("b")  # takes over the emptied queue object
    q.push(b)
    assert q.estimate("b", 2) == 1
    assert pop(q) is b and pop(q) is None and len(q) == 0


def test_callers_still_take_turns_in_arrival_order_after_emptying():
    q = FairQueue()
    for caller in "aab":
        q.push(cmd(caller))
    assert [pop(q).caller for _ in range(3)] == ["a", "b", "a"]
    for caller in "bbca":  # every caller's queue was emptied; new round in arrival order
        q.push(cmd(caller))
    assert [pop(q).caller for _ in range(4)] == ["b", "c", "a", "b"]
    assert len(q) == 0 and pop(q) is None


def test_priority_levels_inside_one_caller_after_reuse():
    q = FairQueue()
    q.push(cmd("x"))
    pop(q)
    low, high = cmd("x", level=4), cmd("x", level=0)
    q.push(low)
    q.push(high)
    assert pop(q) is high and pop(q) is low


def test_push_returns_what_estimate_said_just_before_it():
    # The submit path takes a queued command's position from push instead of asking estimate first.
    import random

    rnd = random.Random(7)
    q = FairQueue()
    for _ in range(400):
        if len(q) and rnd.random() < 0.3:
            pop(q)
            continue
        c = cmd(rnd.choice("abc"), level=rnd.randrange(5))
        expected = q.estimate(c.caller, c.level)
        assert q.push(c) == expected
