"""The dashboard: plain log lines off a terminal (CI), the rich screen's content, progress and ETA."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from laneway.errors import ConfigError
from laneway.observe import AlertThresholds, Dashboard, LaneView, Monitor, SystemView


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
