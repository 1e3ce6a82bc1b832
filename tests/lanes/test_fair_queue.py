"""FairQueue: reused caller queues keep nothing stale; every returned value follows the definition."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from laneway.lanes._queue import FairQueue

_seq = iter(range(1, 10**9))


def cmd(caller: str, level: int = 2, batch: object = None) -> SimpleNamespace:
    return SimpleNamespace(caller=caller, level=level, seq=next(_seq), queued=True, batch=batch)


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


class Reference:
    """The queue's definition on plain lists: callers in turn order, each with its queued commands.

    pop: the first caller's best command (lowest level, then lowest seq); that caller goes to the
    back of the turn if it has more. estimate: the caller's own commands at an equal or better
    level, plus, for every other caller, one turn per own command ahead and one more, capped by
    what that caller has queued (with no other caller queued, just the own ones).
    """

    def __init__(self) -> None:
        self.turns: list[list] = []  # [caller, [command, ...]] in turn order

    def __len__(self) -> int:
        return sum(len(items) for _, items in self.turns)

    def _items(self, caller: str) -> list | None:
        return next((items for name, items in self.turns if name == caller), None)

    def estimate(self, caller: str, level: int) -> int:
        own = self._items(caller)
        ahead = 0 if own is None else len([c for c in own if c.level <= level])
        others = [items for name, items in self.turns if name != caller]
        return ahead + sum(min(len(items), ahead + 1) for items in others)

    def push(self, c: SimpleNamespace) -> int:
        ahead = self.estimate(c.caller, c.level)
        items = self._items(c.caller)
        if items is None:
            self.turns.append([c.caller, [c]])
        else:
            items.append(c)
        return ahead

    def pop(self) -> SimpleNamespace | None:
        if not self.turns:
            return None
        caller, items = self.turns.pop(0)
        best = min(items, key=lambda c: (c.level, c.seq))
        items.remove(best)
        if items:
            self.turns.append([caller, items])
        return best

    def remove(self, c: SimpleNamespace) -> None:
        for i, (_, items) in enumerate(self.turns):
            if c in items:
                items.remove(c)
                if not items:
                    del self.turns[i]
                return
        raise AssertionError("not queued")


# Mostly one caller at one level (the queue's fast path), sometimes another caller or level.
_callers = st.sampled_from("aaaab")
_levels = st.sampled_from([2, 2, 2, 2, 0, 1, 3, 4])


class FairQueueMachine(RuleBasedStateMachine):
    """Random push / pop / discard / promote / requeue sequences: every returned value as the reference's."""

    def __init__(self) -> None:
        super().__init__()
        self.q = FairQueue()
        self.ref = Reference()
        self.queued: list[SimpleNamespace] = []
        self.popped: list[SimpleNamespace] = []  # taken by pop: may come back (retry, preemption)

    def _push(self, c: SimpleNamespace) -> None:
        c.queued = True
        expected = self.ref.push(c)
        assert self.q.push(c) == expected
        self.queued.append(c)

    @rule(caller=_callers, level=_levels)
    def push_new(self, caller: str, level: int) -> None:
        self._push(cmd(caller, level))

    @rule()
    def pop(self) -> None:
        got = pop(self.q)
        assert got is self.ref.pop()
        if got is not None:
            self.queued.remove(got)
            self.popped.append(got)

    @rule(caller=_callers, level=_levels)
    def push_placeholder(self, caller: str, level: int) -> None:  # stands for a parallel group
        self._push(cmd(caller, level, batch=object()))

    @rule(limit=st.integers(1, 12))
    def pop_many(self, limit: int) -> None:  # a lane's turn: as many pops, up to a placeholder
        expected = []
        while len(expected) < limit:
            c = self.ref.pop()
            if c is None:
                break
            expected.append(c)
            if c.batch is not None:
                break
        got = self.q.pop_many(limit)
        assert [id(c) for c in got] == [id(c) for c in expected]
        assert not any(c.queued for c in got)
        for c in got:
            self.queued.remove(c)
            self.popped.append(c)

    @precondition(lambda self: self.queued)
    @rule(i=st.integers(0, 10**6))
    def discard(self, i: int) -> None:  # a cancel: accounted for, then marked not queued; never back
        c = self.queued.pop(i % len(self.queued))
        self.q.discard(c)
        c.queued = False
        self.ref.remove(c)

    @precondition(lambda self: self.queued)
    @rule(i=st.integers(0, 10**6), by=st.integers(1, 4))
    def promote(self, i: int, by: int) -> None:  # a deadline boost (the queue sets cmd.level)
        c = self.queued[i % len(self.queued)]
        if c.level:
            level = max(0, c.level - by)
            self.q.promote(c, level)
            assert c.level == level

    @precondition(lambda self: self.popped)
    @rule(i=st.integers(0, 10**6), keep_seq=st.booleans())
    def requeue(self, i: int, keep_seq: bool) -> None:  # preempted (its old seq: out of order) or a retry
        c = self.popped.pop(i % len(self.popped))
        if not keep_seq:
            c.seq = next(_seq)
        self._push(c)

    @precondition(lambda self: self.queued)
    @rule(i=st.integers(0, 10**6))
    def discard_and_push_again(self, i: int) -> None:  # with its old seq: both entries come up at once
        c = self.queued.pop(i % len(self.queued))
        self.q.discard(c)
        c.queued = False
        self.ref.remove(c)
        self._push(c)

    @invariant()
    def same_length_and_estimates(self) -> None:
        assert len(self.q) == self.q.size == len(self.ref)
        for caller in "abc":
            for level in range(5):
                assert self.q.estimate(caller, level) == self.ref.estimate(caller, level), (caller, level)

    def teardown(self) -> None:
        while self.queued:  # drains in the reference's order, then stays empty
            got = pop(self.q)
            assert got is self.ref.pop()
            self.queued.remove(got)
        assert pop(self.q) is None and len(self.q) == 0


TestFairQueueMachine = FairQueueMachine.TestCase
TestFairQueueMachine.settings = settings(max_examples=400, stateful_step_count=60, deadline=None)
