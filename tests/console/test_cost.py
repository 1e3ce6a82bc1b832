"""What an open page costs the system it watches: each tick reads the subsystems once and sends what changed."""

from __future__ import annotations

import json
import urllib.request

import pytest


def _next_update(page) -> tuple[str, dict]:
    """(kind, data) of the next snapshot or delta on the stream."""
    kind = ""
    while True:
        line = page.readline()
        assert line, "the event stream ended"
        if line.startswith(b"event: "):
            kind = line[7:].strip().decode()
        elif line.startswith(b"data: ") and kind in ("snapshot", "delta"):
            return kind, json.loads(line[6:])


def _next_snapshot(page) -> None:
    _next_update(page)


@pytest.mark.timeout(60)
def test_a_tick_reads_the_lanes_once_for_both_the_monitor_and_the_page(orch, lanes, monkeypatch):
    reads = []
    statistics = lanes.statistics
    monkeypatch.setattr(lanes, "statistics", lambda: (reads.append(1), statistics())[1])
    console = orch.console.start(port=0)
    page = urllib.request.urlopen(console.url + "api/stream", timeout=20)
    try:
        _next_snapshot(page)
        _next_snapshot(page)  # a tick's: from here on the monitor ticks with the page watching
        reads_before, ticks_before = len(reads), console.statistics().snapshots
        for _ in range(4):
            _next_snapshot(page)
        ticks = console.statistics().snapshots - ticks_before
        # One read per tick (the ends may each hold a tick read but not yet shown); it was two.
        assert ticks >= 4 and len(reads) - reads_before <= ticks + 1, (len(reads) - reads_before, ticks)
    finally:
        page.close()
    assert lanes.call("query", "add", {"a": 1, "b": 2}, wait_timeout=10) == 3


@pytest.mark.timeout(60)
def test_after_the_first_snapshot_a_page_gets_only_the_sections_that_changed(orch, lanes):
    orch.dead_letters.put("test", "bad", payload={"n": 1}, error="a long traceback " * 100)
    console = orch.console.start(port=0)
    page = urllib.request.urlopen(console.url + "api/stream", timeout=20)
    try:
        kind, first = _next_update(page)
        assert kind == "snapshot" and first["dead_letters"]["total"] == 1 and first["lanes"]
        for _ in range(3):  # a page opened before the first tick gets the first tick whole too
            kind, delta = _next_update(page)
            if kind == "delta":
                break
        # The clock and the lanes' throughput history move every tick; the dead letters did not.
        assert kind == "delta" and "ts" in delta and "lanes" in delta and "dead_letters" not in delta
        orch.dead_letters.put("test", "worse", payload={"n": 2}, error="again")
        for _ in range(10):
            kind, delta = _next_update(page)
            assert kind == "delta"
            if "dead_letters" in delta:
                break
        assert delta["dead_letters"]["total"] == 2
    finally:
        page.close()
    with urllib.request.urlopen(console.url + "api/stream", timeout=20) as again:
        kind, whole = _next_update(again)  # a new page starts from the whole picture
        assert kind == "snapshot" and whole["dead_letters"]["total"] == 2 and whole["lanes"]
