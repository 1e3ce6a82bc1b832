"""What an open page costs the system it watches: each tick reads the subsystems once."""

from __future__ import annotations

import urllib.request

import pytest


def _next_snapshot(page) -> None:
    while True:
        line = page.readline()
        assert line, "the event stream ended"
        if line == b"event: snapshot\n":
            return


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
