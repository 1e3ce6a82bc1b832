"""The dashboard: plain log lines off a terminal (CI), the rich screen's content, progress and ETA."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from laneway.errors import ConfigError
from laneway.observe import AgentView, AlertThresholds, Dashboard, LaneView, Monitor, SystemView, WorkerView


def poll(clock, monitor, n):
    assert clock.wait_for_timers(1, timeout=10)
    clock.advance(monitor.interval_s)
    assert monitor.wait_for_polls(n, timeout=10)


def test_plain_mode_when_the_stream_is_not_a_terminal(orch, clock):
    out = io.StringIO()
    dash = Dashboard(orch, title="swarm", total=10, interval_s=1.0, stream=out)
    assert dash.live_mode is False
    dash.start()
    dash.advance(4)
    dash.set_status("analyzing")
    poll(clock, dash._monitor, 1)
    dash.advance(6)
    poll(clock, dash._monitor, 2)
    dash.stop()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[    1.0s] swarm | 4/10 (40%) eta 00:02 | analyzing | pending 0 active 0"
    assert lines[1].startswith("[    2.0s] swarm | 10/10 (100%) eta 00:00")
    assert len(lines) == 3  # one per poll plus the final line at stop
    assert "\x1b[" not in out.getvalue()  # no escape codes in logs


def test_plain_lines_show_lanes_breakers_alerts_and_counts(orch, clock):
    orch.metrics  # counts show once metrics run
    orch.events.publish("queue.command.retry", "lanes", lane="prompt")

    def source(o):
        return SystemView(o.clock.now(), lanes=(LaneView("control", 1, 0, 1, 3), LaneView("prompt", 5, 150, 2, 2)))

    monitor = Monitor(orch, interval_s=1.0, thresholds=AlertThresholds(queue_depth=(100, 1000)), source=source)
    orch.events.publish("agent.circuit.state", "a1", agent_id="a1", to="open")
    out = io.StringIO()
    dash = Dashboard(orch, monitor=monitor, stream=out, live=False).start()
    poll(clock, monitor, 1)
    line = out.getvalue().splitlines()[0]
    assert "0 done" in line
    assert "pending 150 active 3" in line
    assert "lanes control=0/1 prompt=150/2" in line
    assert "WARNING lane:prompt" in line and "WARNING breakers" in line
    assert "retries 1 restarts 0 breaker trips 1" in line
    dash.stop()
    assert monitor.check()  # a monitor the dashboard did not create keeps running


def test_nothing_is_printed_before_start(orch, clock):
    out = io.StringIO()
    dash = Dashboard(orch, interval_s=1.0, stream=out)
    poll(clock, dash._monitor, 1)
    assert out.getvalue() == ""
    dash.stop()


def test_eta_follows_the_average_rate(orch, clock):
    dash = Dashboard(orch, total=100, stream=io.StringIO())
    assert dash.progress() == (0, 100, 0.0, None)
    clock.advance(10)
    dash.advance(25)
    done, total, elapsed, eta = dash.progress()
    assert (done, elapsed, eta) == (25, 10.0, pytest.approx(30.0))
    dash.set_total(None)
    assert dash.progress()[3] is None
    with pytest.raises(ConfigError):
        dash.set_total(-1)
    dash.stop()


def test_live_screen_shows_every_table(orch, clock):
    dash = Dashboard(orch, title="swarm", total=4, stream=io.StringIO(), live=False)
    dash.advance(1)
    dash._monitor.check()
    console = Console(record=True, width=140, file=io.StringIO())
    console.print(dash.render())
    text = console.export_text()
    for heading in ("swarm", "1/4", "ETA", "lanes", "pending", "workers", "RSS MB", "CPU %"):
        assert heading in text
    dash.stop()


def test_live_mode_draws_frames_on_a_terminal(orch, clock):
    out = io.StringIO()
    with Dashboard(orch, title="swarm", total=2, interval_s=1.0, stream=out, live=True) as dash:
        assert dash.live_mode
        dash.advance(2)
        poll(clock, dash._monitor, 1)
    assert "2/2" in out.getvalue() and "\x1b[" in out.getvalue()


def demo_view(o):
    """What the code swarm's screen shows mid-run: six lanes, two workers, seven agents."""
    lanes = tuple(
        LaneView(name, prio, pending, active, mx, done, 0)
        for name, prio, pending, active, mx, done in [
            ("system", 0, 0, 0, 5, 0), ("control", 1, 0, 0, 3, 2), ("query", 2, 0, 0, 10, 0),
            ("session", 3, 0, 0, 5, 0), ("skill", 4, 0, 0, 3, 0), ("prompt", 5, 1436, 4, 4, 12345),
        ]
    )  # fmt: skip
    workers = tuple(WorkerView(f"pool/w{i}", 371100 + i, "busy", 97 * 2**20, 99.0, 12000) for i in (1, 2))
    agents = tuple(
        AgentView(agent_id, role, 2, 2, 1234, 0, "closed")
        for agent_id, role in [
            ("aggregator", "α8 aggregator"), ("analyzer-1", "α5 analyzer"), ("analyzer-2", "α5 analyzer"),
            ("observer-1", "α1 observer"), ("observer-2", "α1 observer"), ("validator-1", "α3 validator"),
            ("validator-2", "α3 validator"),
        ]
    )  # fmt: skip
    return SystemView(o.clock.now(), lanes=lanes, workers=workers, agents=agents)


def test_the_screen_fits_80_by_24_without_truncated_cells(orch, clock):
    orch.metrics
    monitor = Monitor(orch, interval_s=1.0, thresholds=AlertThresholds(queue_depth=(100, 10_000)), source=demo_view)
    dash = Dashboard(orch, title="code swarm: Python 3.11 stdlib", total=1790, monitor=monitor,
                     stream=io.StringIO(), live=False)  # fmt: skip
    clock.advance(3)
    dash.advance(345)
    monitor.check()
    console = Console(width=80, height=24, record=True, file=io.StringIO())
    console.print(dash.render())
    text = console.export_text()
    lines = text.rstrip("\n").split("\n")
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert len(lines) <= 24, text
    assert "…" not in text, text
    for cell in ("system", "control", "session", "prompt", "1436", "12345", "pool/w1", "371101", "busy",
                 "aggregator", "validator-2", "α8 aggregator", "α3 validator", "2/2", "closed", "345/1790",
                 "lane:prompt: warning, 1436 pending now"):  # fmt: skip
        assert cell in text, (cell, text)
    dash.stop()


def test_a_wide_screen_keeps_every_column(orch, clock):
    monitor = Monitor(orch, interval_s=1.0, source=demo_view)
    dash = Dashboard(orch, title="swarm", total=10, monitor=monitor, stream=io.StringIO(), live=False)
    monitor.check()
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(dash.render())
    text = console.export_text()
    assert all(heading in text for heading in ("prio", "max", "CPU %")) and "…" not in text
    dash.stop()


def test_the_eta_follows_the_recent_rate_not_the_average_since_the_start(orch, clock):
    dash = Dashboard(orch, total=100, stream=io.StringIO())
    clock.advance(10)
    dash.advance(60)  # a fast start: 6 per second...
    for _ in range(20):
        clock.advance(1)
        dash.advance(1)  # ...then 1 per second
    done, _, elapsed, eta = dash.progress()
    assert (done, elapsed) == (80, 30.0)
    assert eta == pytest.approx(20.0)  # 20 left at the recent 1/s; the average since the start (2.7/s) says 7.5
    clock.advance(5)  # a stall: the ETA grows at once
    assert dash.progress()[3] > 20.0
    dash.stop()


def test_progress_never_shows_more_than_100_percent(orch, clock):
    out = io.StringIO()
    dash = Dashboard(orch, title="swarm", total=10, interval_s=1.0, stream=out).start()
    clock.advance(1)
    dash.advance(13)  # e.g. units retried and counted twice
    assert dash.progress()[0] == 10 and dash.progress()[3] == 0.0
    assert "10/10 (100%)" in dash.line()
    dash.stop()


def test_an_alert_shows_the_reading_the_table_shows(orch, clock):
    pending = [150]

    def source(o):
        return SystemView(o.clock.now(), lanes=(LaneView("prompt", 5, pending[0], 2, 2),))

    monitor = Monitor(orch, interval_s=1.0, thresholds=AlertThresholds(queue_depth=(100, 1000)), source=source)
    dash = Dashboard(orch, monitor=monitor, stream=io.StringIO(), live=False)
    monitor.check()  # raised at 150
    pending[0] = 120  # still a warning: no new alert, but the table now says 120
    monitor.check()
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(dash.render())
    text = console.export_text()
    assert "lane:prompt: warning, 120 pending now (threshold 100)" in text and "150" not in text
    dash.stop()
