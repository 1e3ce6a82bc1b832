"""The dead-letter queue is bounded: a full queue evicts its oldest letter, in memory and in the store, and says so."""

from __future__ import annotations

import pytest

from laneway import Orchestrator
from laneway.actors import DeadLetterQueue
from laneway.errors import ConfigError
from laneway.observe import EventBus
from laneway.store import SQLiteStore


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "dlq.db")
    yield s
    s.close()


def test_a_full_queue_evicts_the_oldest_letter_and_publishes_it(store):
    events = EventBus()
    dlq = DeadLetterQueue(store, events, capacity=2)
    with events.subscribe("dead_letter") as sub:
        first = dlq.put("pool", "one", work_id="w1")
        second = dlq.put("pool", "two", work_id="w2")
        third = dlq.put("pool", "three", work_id="w3")
        evicted = sub.wait_for(lambda e: e.key == "dead_letter.evicted", 5)
    assert evicted.data["letter_id"] == first.id and evicted.data["work_id"] == "w1"
    assert evicted.data["evicted_by"] == third.id and evicted.source == "pool"
    assert [x.id for x in dlq.list()] == [second.id, third.id] and len(dlq) == 2
    with pytest.raises(LookupError):
        dlq.get(first.id)
    # The store holds exactly what memory holds: a new queue on it reads the same two back.
    assert [x.id for x in DeadLetterQueue(store).list()] == [second.id, third.id]


def test_a_smaller_capacity_evicts_the_oldest_persisted_letters_on_load(store):
    old = DeadLetterQueue(store, capacity=5)
    letters = [old.put("router", f"r{i}") for i in range(4)]
    events = EventBus()
    with events.subscribe("dead_letter.evicted") as sub:
        dlq = DeadLetterQueue(store, events, capacity=1)
        assert sub.wait_for(lambda e: e.data["letter_id"] == letters[2].id, 5).data["evicted_by"] is None
    assert [x.id for x in dlq.list()] == [letters[3].id]
    assert [x.id for x in DeadLetterQueue(store).list()] == [letters[3].id]


def test_the_default_capacity_is_documented_and_configurable_on_the_orchestrator():
    assert DeadLetterQueue().capacity == 10_000
    with Orchestrator(name="dlq", dead_letter_capacity=1) as orch:
        orch.dead_letters.put("pool", "a")
        b = orch.dead_letters.put("pool", "b")
        assert orch.dead_letters.list() == [b]


@pytest.mark.parametrize("capacity", [0, -1, 1.5, True, "10"])
def test_a_bad_capacity_is_a_config_error(capacity):
    with pytest.raises(ConfigError, match="capacity must be an int >= 1"):
        DeadLetterQueue(capacity=capacity)
