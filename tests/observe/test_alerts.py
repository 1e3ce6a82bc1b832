"""Alert thresholds, level transitions, and the polling monitor driven by a ManualClock."""

from __future__ import annotations

import threading

import pytest

from laneway.errors import ConfigError
from laneway.observe import (
    AlertKind,
    AlertLevel,
    AlertState,
    AlertThresholds,
    LaneView,
    Monitor,
    SystemView,
    Threshold,
)

DEPTH = AlertKind.QUEUE_DEPTH


def levels(alerts):
    return [(a.subject, a.previous.name, a.level.name) for a in alerts]


def test_threshold_levels_are_inclusive():
    t = Threshold(10, 100)
    assert [t.level(v) for v in (0, 9, 10, 99, 100, 5000)] == [
        AlertLevel.OK, AlertLevel.OK, AlertLevel.WARNING, AlertLevel.WARNING, AlertLevel.CRITICAL, AlertLevel.CRITICAL,
    ]  # fmt: skip
    assert Threshold(critical=5).level(4) is AlertLevel.OK
    assert Threshold().level(10**9) is AlertLevel.OK  # disabled


@pytest.mark.parametrize("args", [(0, 10), (10, 5), (-1, None), ("5", None)])
def test_bad_thresholds(args):
    with pytest.raises(ConfigError):
        Threshold(*args)


def test_thresholds_accept_pairs_and_validate():
    t = AlertThresholds(queue_depth=(5, 50), breaker_opens=Threshold(2), window_s=10)
    assert t.queue_depth == Threshold(5, 50) and t.breaker_opens.critical is None
    with pytest.raises(ConfigError):
        AlertThresholds(queue_depth=5)
    with pytest.raises(ConfigError):
        AlertThresholds(window_s=0)


def test_state_raises_once_escalates_deescalates_and_resolves():
    state = AlertState(AlertThresholds(queue_depth=(10, 100)))
    key = (DEPTH, "lane:prompt")
    assert state.update({key: 5}, 0) == []
    assert levels(state.update({key: 10}, 1)) == [("lane:prompt", "OK", "WARNING")]
    assert state.update({key: 50}, 2) == []  # still warning: no repeat
    (crit,) = state.update({key: 150}, 3)
    assert (crit.previous, crit.level, crit.value, crit.threshold, crit.ts) == (
        AlertLevel.WARNING, AlertLevel.CRITICAL, 150, 100, 3,
    )  # fmt: skip
    assert "critical" in crit.message and "150" in crit.message
    assert [a.level for a in state.active()] == [AlertLevel.CRITICAL]
    assert levels(state.update({key: 20}, 4)) == [("lane:prompt", "CRITICAL", "WARNING")]
    (ok,) = state.update({}, 5)  # the lane vanished: reads 0
    assert ok.resolved and ok.previous is AlertLevel.WARNING and ok.threshold == 10
    assert "resolved" in ok.message
    assert state.active() == []


def test_subjects_are_independent():
    state = AlertState(AlertThresholds(queue_depth=(10, 100)))
    got = state.update({(DEPTH, "lane:a"): 200, (DEPTH, "lane:b"): 3, (AlertKind.BREAKER_OPENS, "breakers"): 1}, 0)
    assert levels(got) == [("breakers", "OK", "WARNING"), ("lane:a", "OK", "CRITICAL")]


class Depths:
    """A system-view source a test can set (the lanes' depths as the monitor would read them)."""

    def __init__(self):
        self.pending = {}

    def __call__(self, orch):
        lanes = tuple(LaneView(n, i, p, 1, 1) for i, (n, p) in enumerate(sorted(self.pending.items())))
        return SystemView(orch.clock.now(), lanes=lanes)


def test_monitor_polls_at_its_interval_on_the_clock(orch, clock):
    source = Depths()
    seen = []
    monitor = Monitor(orch, interval_s=2.0, thresholds=AlertThresholds(queue_depth=(10, 100)), on_alert=seen.append, source=source)
    assert clock.wait_for_timers(1, timeout=10)
    clock.advance(1.9)
    assert monitor.statistics().polls == 0
    source.pending = {"prompt": 40, "control": 1}
    clock.advance(0.1)
    assert monitor.wait_for_polls(1, timeout=10)
    assert monitor.total_pending == 41 and monitor.total_active == 2
    assert levels(seen) == [("lane:prompt", "OK", "WARNING")]
    source.pending = {"prompt": 400}
    assert clock.wait_for_timers(1, timeout=10)  # the actor rescheduled itself
    clock.advance(2.0)
    assert monitor.wait_for_polls(2, timeout=10)
    assert levels(seen)[-1] == ("lane:prompt", "WARNING", "CRITICAL")
    assert [a.level for a in monitor.active_alerts()] == [AlertLevel.CRITICAL]
    source.pending = {}
    assert clock.wait_for_timers(1, timeout=10)
    clock.advance(2.0)
    assert monitor.wait_for_polls(3, timeout=10)
    assert seen[-1].resolved and monitor.active_alerts() == []
    assert monitor.statistics().alerts == 3


def test_breaker_opens_and_restarts_count_within_the_window(orch, clock):
    seen = []
    monitor = Monitor(
        orch,
        interval_s=None,
        thresholds=AlertThresholds(breaker_opens=(1, 3), worker_restarts=(2, 5), window_s=30),
        on_alert=seen.append,
    )
    pub = orch.events.publish
    pub("agent.circuit.state", "a1", agent_id="a1", to="open")
    pub("agent.circuit.state", "a1", agent_id="a1", to="half_open")  # not an open
    pub("supervisor.child.restarted", "pool", child="w1")
    sample = monitor.check()
    assert (sample.breaker_opens, sample.restarts) == (1, 1)
    assert levels(seen) == [("breakers", "OK", "WARNING")]
    clock.advance(20)
    for agent in ("a2", "a3"):
        pub("agent.circuit.state", agent, agent_id=agent, to="open")
    pub("supervisor.child.restarted", "pool", child="w2")
    sample = monitor.check()
    assert (sample.breaker_opens, sample.restarts) == (3, 2)
    assert levels(seen)[1:] == [("breakers", "WARNING", "CRITICAL"), ("workers", "OK", "WARNING")]
    clock.advance(15)  # the first open and restart leave the 30 s window
    sample = monitor.check()
    assert (sample.breaker_opens, sample.restarts) == (2, 1)
    assert levels(seen)[3:] == [("breakers", "CRITICAL", "WARNING"), ("workers", "WARNING", "OK")]


def test_alerts_are_published_and_a_raising_callback_is_contained(orch):
    with orch.events.subscribe("alert") as sub:
        calls = []

        def bad(alert):
            raise RuntimeError("callback bug")

        monitor = Monitor(orch, interval_s=None, on_alert=[bad, calls.append], thresholds=AlertThresholds(breaker_opens=(1, 2)))
        orch.events.publish("agent.circuit.state", "a1", agent_id="a1", to="open")
        monitor.check()
        event = sub.get(timeout=10)
        assert event.key == "alert.raised" and event.source == "breakers" and event.data["level"] == "warning"
        assert len(calls) == 1  # the second callback still ran
        assert monitor.statistics().callback_errors == 1
        remove = monitor.add_callback(calls.append)
        remove()
        orch.events.publish("agent.circuit.state", "a2", agent_id="a2", to="open")
        monitor.check()
        assert len(calls) == 2


def test_callbacks_run_on_the_monitor_thread_not_the_timer_thread(orch, clock):
    threads = []
    monitor = Monitor(
        orch,
        interval_s=1.0,
        thresholds=AlertThresholds(worker_restarts=(1, 2)),
        on_alert=lambda a: threads.append(threading.current_thread()),
    )
    orch.events.publish("supervisor.child.restarted", "pool", child="w1")
    assert clock.wait_for_timers(1, timeout=10)
    clock.advance(1.0)  # a ManualClock runs due timers in this thread; the poll must not
    assert monitor.wait_for_polls(1, timeout=10)
    assert threads and threads[0] is not threading.current_thread()


def test_monitor_config_errors(orch):
    with pytest.raises(ConfigError):
        Monitor(orch, interval_s=0)
    with pytest.raises(ConfigError):
        Monitor(orch, thresholds={"queue_depth": 5})
    with pytest.raises(ConfigError):
        Monitor(orch, on_alert="print")


def test_shutdown_stops_the_monitor(orch, clock):
    monitor = Monitor(orch, interval_s=1.0)
    assert clock.wait_for_timers(1, timeout=10)
    orch.shutdown()
    clock.advance(5)
    assert monitor.statistics().polls == 0


def test_a_failing_source_is_logged_and_polling_goes_on(orch, clock, caplog):
    calls = []

    def source(o):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("source broke")
        return SystemView(o.clock.now())

    monitor = Monitor(orch, interval_s=1.0, source=source)
    assert monitor.check().total_pending == 0  # the last (empty) sample
    assert "monitor poll failed" in caplog.text
    assert clock.wait_for_timers(1, timeout=10)
    clock.advance(1.0)
    assert monitor.wait_for_polls(1, timeout=10)
    assert len(calls) == 2


def test_a_subject_can_have_its_own_thresholds():
    from laneway.observe import AlertKind, AlertState, AlertThresholds, Threshold

    state = AlertState(AlertThresholds(queue_depth=(10, 100), subjects={"lane:prompt": Threshold(), "lane:x": (1, 2)}))
    readings = {(AlertKind.QUEUE_DEPTH, "lane:prompt"): 5000, (AlertKind.QUEUE_DEPTH, "lane:x"): 1,
                (AlertKind.QUEUE_DEPTH, "lane:y"): 50}  # fmt: skip
    assert {(a.subject, a.level.name) for a in state.update(readings, now=0.0)} == {
        ("lane:x", "WARNING"), ("lane:y", "WARNING")
    }  # a queue filled on purpose raises nothing
