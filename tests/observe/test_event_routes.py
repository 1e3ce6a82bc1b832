"""The bus resolves key-only filters once per key: joins, leaves and data-dependent filters stay exact."""

from __future__ import annotations

import pytest

from laneway.observe import EventBus


def test_listener_added_after_a_key_was_published_gets_it() -> None:
    bus = EventBus()
    first: list[str] = []
    bus.add_listener(lambda e: first.append(e.key), "queue")
    bus.publish("queue.command.started", "prompt")
    late: list[str] = []
    remove = bus.add_listener(lambda e: late.append(e.key), ("queue.command", "actor"))
    bus.publish("queue.command.started", "prompt")
    bus.publish("queue.commandx", "prompt")
    remove()
    bus.publish("queue.command.started", "prompt")
    assert first == ["queue.command.started", "queue.command.started", "queue.commandx", "queue.command.started"]
    assert late == ["queue.command.started"]


def test_callable_filters_still_see_every_event() -> None:
    bus = EventBus()
    seen: list[int] = []
    bus.add_listener(lambda e: seen.append(e.data["n"]), lambda e: e.data.get("n", 0) % 2 == 0)
    for n in range(5):
        bus.publish("queue.tick", "x", n=n)
    assert seen == [0, 2, 4]


def test_subscription_order_publish_dict_and_closing() -> None:
    bus = EventBus()
    order: list[tuple[str, bool]] = []
    sub = bus.subscribe("queue")
    # Subscriptions are offered an event before listeners: the listener finds it already queued.
    remove = bus.add_listener(lambda e: order.append((e.key, sub.get_nowait() is not None)), None)
    bus.publish_dict("queue.command.completed", "prompt", {"command_id": "c1"})
    bus.publish("other.key", "x")
    sub.close()
    bus.publish("queue.command.completed", "prompt")  # its route was cached with the subscription in it
    remove()
    bus.publish("queue.command.completed", "prompt")
    assert order == [("queue.command.completed", True), ("other.key", False), ("queue.command.completed", False)]
    assert sub.drain() == [], "a closed subscription is no longer routed to"


def test_exclude_leaves_keys_out_and_wants_tells_a_publisher_per_key() -> None:
    bus = EventBus()
    assert not bus.wants("queue.command.completed")
    seen: list[str] = []
    remove = bus.add_listener(lambda e: seen.append(e.key), exclude=("queue.command.completed", "agent.task"))
    for key in ("queue.command.completed", "queue.command.completedx", "agent.task.completed", "agent.taskx",
                "queue.lane.idle"):
        bus.publish(key, "x")
    assert seen == ["queue.command.completedx", "agent.taskx", "queue.lane.idle"]
    assert bus.active and not bus.wants("queue.command.completed") and bus.wants("queue.lane.idle")
    narrow = bus.add_listener(lambda e: None, "queue.command.completed")
    assert bus.wants("queue.command.completed")
    narrow()
    remove()
    assert not bus.wants("queue.lane.idle")


def test_exclude_needs_a_key_filter_and_keys() -> None:
    import pytest

    from laneway.errors import ConfigError

    bus = EventBus()
    with pytest.raises(ConfigError, match="exclude"):
        bus.add_listener(lambda e: None, lambda e: True, exclude="queue")
    with pytest.raises(ConfigError, match="exclude"):
        bus.add_listener(lambda e: None, exclude=("",))
    seen: list[str] = []
    bus.add_listener(lambda e: seen.append(e.key), "queue", exclude="queue.command")
    bus.publish("queue.command.started", "x")
    bus.publish("queue.lane.idle", "x")
    assert seen == ["queue.lane.idle"]


def test_a_filter_or_listener_that_raises_never_fails_the_publisher_or_the_others(caplog) -> None:
    bus = EventBus()
    seen: list[str] = []

    def bad_filter(e: object) -> bool:
        raise RuntimeError("filter bug")

    def bad_listener(e: object) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(lambda e: seen.append("never"), bad_filter)
    bus.add_listener(bad_listener, "work")
    bus.add_listener(lambda e: seen.append(e.key), "work")
    bus.publish("work.done", "x")  # must not raise
    assert seen == ["work.done"]
    assert "filter bug" in caplog.text and "listener bug" in caplog.text


def test_active_is_an_attribute_that_follows_subscribers_and_listeners():
    # Hot paths read it without a call; it must still follow every (un)subscription.
    bus = EventBus()
    assert "active" in vars(bus) and bus.active is False
    remove = bus.add_listener(lambda e: None, "queue.lane.idle")
    assert bus.active is True
    sub = bus.subscribe("pool.")
    remove()
    assert bus.active is True
    sub.close()
    assert bus.active is False


def test_a_published_event_is_the_record_the_class_makes_frozen_and_whole():
    # publish_dict sets the slots itself (a hot path): a field added to Event must be set there too.
    import attrs

    from laneway.core import Event

    bus, seen = EventBus(clock=lambda: 7.0), []
    bus.add_listener(seen.append, "queue")
    bus.publish("queue.lane.idle", "prompt", idle_s=1.5)
    assert [a.name for a in attrs.fields(Event)] == ["key", "source", "data", "ts"]
    assert seen == [Event("queue.lane.idle", "prompt", {"idle_s": 1.5}, 7.0)]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        seen[0].key = "other"  # type: ignore[misc]
