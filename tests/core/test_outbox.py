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
