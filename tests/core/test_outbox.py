"""The core Outbox: effects queued under its lock run after it, and a failed block can drop its own."""

import threading

import pytest

from laneway.core import Outbox
from laneway.errors import ConfigError


def test_discard_since_drops_only_what_the_block_queued():
    box = Outbox("t")
    seen = []
    with box.locked():
        box.add(lambda: seen.append("before"))
        mark = box.mark()
        box.add(lambda: seen.append("dropped"))
        box.extend([lambda: seen.append("dropped too")])
        box.discard_since(mark)
        box.add(lambda: seen.append("after"))
    assert seen == ["before", "after"]


def test_an_all_or_nothing_block_that_raises_runs_the_effects_queued_before_it():
    box = Outbox("t")
    seen = []
    with pytest.raises(RuntimeError):
        with box.locked():
            box.add(lambda: seen.append("earlier holder's"))
            with box.locked():
                assert box.depth == 2
                mark = box.mark()
                try:
                    box.add(lambda: seen.append("refused call's"))
                    raise RuntimeError("refused")
                except RuntimeError:
                    box.discard_since(mark)
                    raise
    assert seen == ["earlier holder's"]
    assert box.depth == 0


def test_a_mark_from_another_moment_is_refused_by_name():
    box = Outbox("t")
    with box.locked():
        with pytest.raises(ConfigError, match="mark 3"):
            box.discard_since(3)
        with pytest.raises(ConfigError, match="mark -1"):
            box.discard_since(-1)


def test_the_outbox_is_its_own_context_manager_and_drains_after_the_outermost_exit():
    box = Outbox("t")
    seen = []
    with box:
        box.add(lambda: seen.append("outer"))
        with box:  # re-entrant; the inner exit runs nothing
            assert box.depth == 2
            box.add(lambda: seen.append("inner"))
        assert seen == []
        seen.append("still inside")
    assert seen == ["still inside", "outer", "inner"]
    assert box.depth == 0 and not box.lock._is_owned()


def test_the_context_manager_form_drains_also_when_the_block_raised():
    box = Outbox("t")
    seen = []
    with pytest.raises(KeyError):
        with box:
            box.add(lambda: seen.append("ran"))
            raise KeyError("refused")
    assert seen == ["ran"]
    assert box.depth == 0 and not box.lock._is_owned()
    with box:  # and the lock is free for the next holder
        pass


class CountingLock:
    """An RLock that counts how often it is taken (blocking or not)."""

    def __init__(self) -> None:
        self.inner = threading.RLock()
        self.taken = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self.inner.acquire(blocking, timeout)
        self.taken += got
        return got

    def release(self) -> None:
        self.inner.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_block_with_effects_takes_the_lock_once_when_nobody_else_queues():
    lock = CountingLock()
    box = Outbox("t", lock)  # type: ignore[arg-type]
    seen = []
    with box:
        box.add(lambda: seen.append("ran"))
    assert seen == ["ran"]
    assert lock.taken == 1  # the first batch is taken before the lock is released


def _queue_in_a_with_block(box: Outbox, effect) -> None:
    with box:
        box.add(effect)


def _queue_under_the_bare_lock(box: Outbox, effect) -> None:
    box.lock.acquire()
    box.add(effect)
    box.release_and_run()


@pytest.mark.parametrize("queue", [_queue_in_a_with_block, _queue_under_the_bare_lock], ids=["with", "bare-lock"])
def test_effects_queued_while_another_thread_drains_run_after_its_own_in_order(queue):
    box = Outbox("t")
    seen = []
    draining = threading.Event()
    queued = threading.Event()

    def first() -> None:
        seen.append("first")
        draining.set()
        assert queued.wait(10)  # the other thread queues and leaves while this one drains

    def other_holder() -> None:
        assert draining.wait(10)
        queue(box, lambda: seen.append("second"))
        queued.set()  # left without running it: the drainer does

    t = threading.Thread(target=other_holder)
    t.start()
    with box:
        box.add(first)
    t.join(10)
    assert seen == ["first", "second"]
    assert box.depth == 0 and not box.lock._is_owned()


def test_a_contended_entry_waits_for_the_holder_and_gets_the_lock():
    box = Outbox("t")
    holding = threading.Event()
    release = threading.Event()
    got = []

    def holder() -> None:
        with box:
            holding.set()
            assert release.wait(10)  # holds the lock while blocked: the waiter must not spin forever

    t = threading.Thread(target=holder)
    t.start()
    assert holding.wait(10)
    threading.Timer(0.05, release.set).start()
    with box:
        got.append(box.depth)
    t.join(10)
    assert got == [1]


def test_a_block_under_the_bare_lock_runs_its_effects_when_it_leaves_with_release_and_run():
    box = Outbox("t")
    seen = []
    assert box.lock.acquire(False)
    box.add(lambda: seen.append("first"))
    box.add(lambda: seen.append("second"))
    assert len(box.queued) == 2 and seen == []  # nothing runs while the lock is held
    box.release_and_run()
    assert seen == ["first", "second"] and not box.queued
    assert not box.lock._is_owned()


def test_release_and_run_inside_a_with_block_leaves_the_effects_to_its_exit():
    box = Outbox("t")
    seen = []
    with box:
        box.lock.acquire()
        box.add(lambda: seen.append("ran"))
        box.release_and_run()  # the enclosing block still holds the lock: not yet
        assert seen == [] and box.lock._is_owned()
    assert seen == ["ran"] and not box.lock._is_owned()


@pytest.mark.parametrize("count", [1, 3])
def test_release_and_run_logs_a_failing_effect_and_lets_an_interrupt_through_without_wedging(count, caplog):
    box = Outbox("t")
    seen = []

    def fail():
        raise ValueError("effect failed")

    def interrupt():
        raise KeyboardInterrupt

    box.lock.acquire()
    for _ in range(count - 1):
        box.add(lambda: seen.append("ok"))
    box.add(fail)
    box.release_and_run()  # logged, not raised
    assert "effect failed" in caplog.text and seen == ["ok"] * (count - 1)
    box.lock.acquire()
    box.add(interrupt)
    with pytest.raises(KeyboardInterrupt):
        box.release_and_run()
    # Neither left the outbox marked as draining: the next holder's effects run.
    with box:
        box.add(lambda: seen.append("after"))
    assert seen[-1] == "after" and not box.lock._is_owned()
