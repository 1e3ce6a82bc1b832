"""The core Outbox: effects queued under its lock run after it, and a failed block can drop its own."""

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
