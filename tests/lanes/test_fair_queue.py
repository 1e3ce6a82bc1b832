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


class Model:
    """The queue's definition: callers take turns (a served caller with more goes to the back),
    inside one caller the best level first, then submission order (``seq``)."""

    def __init__(self) -> None:
        self.callers: dict[str, list[SimpleNamespace]] = {}

    def push(self, c: SimpleNamespace) -> None:
        self.callers.setdefault(c.caller, []).append(c)

    def pop(self) -> SimpleNamespace | None:
        if not self.callers:
            return None
        caller = next(iter(self.callers))
        items = self.callers.pop(caller)
        best = min(items, key=lambda c: (c.level, c.seq))
        items.remove(best)
        if items:
            self.callers[caller] = items
        return best

    def remove(self, c: SimpleNamespace) -> None:
        items = self.callers[c.caller]
        items.remove(c)
        if not items:
            del self.callers[c.caller]


def test_pops_follow_the_definition_through_discards_promotions_and_requeues():
    import random

    rnd = random.Random(11)
    for _ in range(1500):
        q, model = FairQueue(), Model()
        queued: list[SimpleNamespace] = []
        for _ in range(rnd.randrange(1, 60)):
            op = rnd.choice(["push", "push", "push", "pop", "discard", "promote", "promote", "requeue"])
            if op == "push":
                c = cmd(rnd.choice("ab"), rnd.randrange(5))
                q.push(c)
                model.push(c)
                queued.append(c)
            elif op == "pop":
                got = pop(q)
                assert got is model.pop()
                if got is not None:
                    queued.remove(got)
            elif not queued:
                continue
            elif op == "discard":  # cancel: accounted for, then marked not queued
                c = queued.pop(rnd.randrange(len(queued)))
                q.discard(c)
                c.queued = False
                model.remove(c)
            elif op == "promote":  # a deadline boost: one level better, same place in submission order
                c = rnd.choice(queued)
                if c.level > 0:
                    q.promote(c, c.level - 1)
            else:  # preempted with REQUEUE: back in, with its old seq
                c = queued.pop(rnd.randrange(len(queued)))
                q.discard(c)
                c.queued = False
                model.remove(c)
                c.queued = True
                q.push(c)
                model.push(c)
                queued.append(c)
            assert len(q) == len(queued)
        while queued:
            got = pop(q)
            assert got is model.pop()
            queued.remove(got)
        assert pop(q) is None
