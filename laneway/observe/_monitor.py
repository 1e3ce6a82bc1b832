"""The monitor: polls the system at an interval, checks alert thresholds, calls back.

The monitor is an actor. A timer on ``orch.clock`` tells it to poll; the
poll, the threshold checks and the user's callbacks all run on the actor's
own thread, so a slow callback delays only the next poll, never the shared
timer thread that retries and breakers depend on. Tests drive it with a
:class:`~laneway.actors.ManualClock`.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any, Callable, TYPE_CHECKING

import attrs

from laneway.actors import Actor, handler
from laneway.errors import ConfigError
from laneway.observe._alerts import Alert, AlertKind, AlertState, AlertThresholds
from laneway.core import Event
from laneway.observe._system import SystemView, system_view

if TYPE_CHECKING:
    from laneway.observe._observed import Observed

log = logging.getLogger(__name__)

AlertCallback = Callable[[Alert], Any]
SampleCallback = Callable[["MonitorSample"], Any]


@attrs.frozen
class MonitorSample:
    """One poll's reading.

    Attributes:
        view: lanes, workers and agents as read.
        breaker_opens: breaker opens within the thresholds' window.
        restarts: supervised restarts within the window.
        alerts: the alerts this poll raised or resolved.
    """

    view: SystemView
    breaker_opens: int = 0
    restarts: int = 0
    alerts: tuple[Alert, ...] = ()

    @property
    def ts(self) -> float:
        return self.view.ts

    @property
    def total_pending(self) -> int:
        return self.view.total_pending

    @property
    def total_active(self) -> int:
        return self.view.total_active


@attrs.frozen
class MonitorStatistics:
    """Counters of a :class:`Monitor`."""

    polls: int
    alerts: int
    callback_errors: int
    active_alerts: int


@attrs.frozen
class _Poll:
    scheduled: bool


class _MonitorActor(Actor):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.timer: Any = None

    def on_start(self) -> None:
        if self.monitor.interval_s is not None:
            self._schedule()

    def on_stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _schedule(self) -> None:
        interval = self.monitor.interval_s
        if interval is None:  # polls only on check()
            return
        ref = self.ref

        def due() -> None:
            try:
                ref.tell(_Poll(scheduled=True))
            except Exception:
                pass  # the monitor stopped between scheduling and firing

        self.timer = self.orchestrator.clock.call_later(interval, due)

    @handler(_Poll)
    def _poll(self, msg: _Poll) -> MonitorSample:
        try:
            return self.monitor._poll()
        except Exception:
            # A broken source must not end monitoring: log it, keep the last sample, poll again later.
            log.exception("monitor poll failed")
            return self.monitor.last
        finally:
            if msg.scheduled:
                self._schedule()


def _callables(value: Any, what: str) -> tuple[Callable[[Any], Any], ...]:
    found = () if value is None else tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not all(callable(c) for c in found):
        raise ConfigError(f"Monitor {what} must be a callable or a list of them, got {value!r}")
    return found


class Monitor:
    """Polls pending/active work, breaker opens and restarts; raises alerts past thresholds.

    Args:
        orch: the orchestrator to watch.
        interval_s: seconds between polls on ``orch.clock``; None polls only on :meth:`check`.
        thresholds: what raises an alert (defaults: :class:`AlertThresholds`).
        on_alert: a callback, or several, called with each :class:`Alert` (raised and resolved).
        on_sample: a callback, or several, called with every :class:`MonitorSample` (the dashboard uses this).
        name: the monitor actor's name.
        source: reads the system (default :func:`~laneway.observe.system_view`).

    Example:
        >>> from laneway import Orchestrator
        >>> with Orchestrator(name="doc") as orch:
        ...     monitor = Monitor(orch, interval_s=5.0, thresholds=AlertThresholds(queue_depth=(100, 1000)),
        ...                       on_alert=lambda a: print(a.message))
        ...     monitor.check().total_pending
        0
    """

    def __init__(
        self,
        orch: Observed,
        *,
        interval_s: float | None = 1.0,
        thresholds: AlertThresholds | None = None,
        on_alert: AlertCallback | list[AlertCallback] | tuple[AlertCallback, ...] | None = None,
        on_sample: SampleCallback | list[SampleCallback] | tuple[SampleCallback, ...] | None = None,
        name: str = "monitor",
        source: Callable[[Any], SystemView] = system_view,
    ) -> None:
        if interval_s is not None and (not isinstance(interval_s, (int, float)) or interval_s <= 0):
            raise ConfigError(f"Monitor interval_s must be None or a number > 0, got {interval_s!r}")
        if thresholds is not None and not isinstance(thresholds, AlertThresholds):
            raise ConfigError(f"Monitor thresholds must be AlertThresholds, got {thresholds!r}")
        callbacks = _callables(on_alert, "on_alert")
        sample_callbacks = _callables(on_sample, "on_sample")
        self.interval_s = interval_s
        self._orch = orch
        self._source = source
        self._state = AlertState(thresholds or AlertThresholds())
        self._callbacks: tuple[AlertCallback, ...] = callbacks
        self._sample_callbacks: tuple[SampleCallback, ...] = sample_callbacks
        self._opens: collections.deque[float] = collections.deque(maxlen=100_000)
        self._restarts: collections.deque[float] = collections.deque(maxlen=100_000)
        self._cond = threading.Condition()
        self._last = MonitorSample(SystemView(orch.clock.now()))
        self._active: tuple[Alert, ...] = ()
        self._polls = self._alerts = self._callback_errors = 0
        self._remove_listener = orch.events.add_listener(
            self._on_event, ("agent.circuit.state", "supervisor.child.restarted", "pool.worker.restarted")
        )
        try:
            self._ref = orch.spawn(_MonitorActor, self, name=name)
        except Exception:
            self._remove_listener()
            raise
        orch.on_shutdown(f"monitor {name}", self.stop)

    @property
    def thresholds(self) -> AlertThresholds:
        return self._state.thresholds

    def _on_event(self, event: Event) -> None:
        # Publisher's thread: only a deque append (thread-safe); counting is done at poll time.
        if event.key == "agent.circuit.state":
            if str(getattr(event.data.get("to"), "value", event.data.get("to"))) == "open":
                self._opens.append(event.ts)
        else:
            self._restarts.append(event.ts)

    def _in_window(self, times: collections.deque[float], now: float) -> int:
        horizon = now - self._state.thresholds.window_s
        while times and times[0] < horizon:
            times.popleft()
        return len(times)

    def _poll(self) -> MonitorSample:
        # Runs on the monitor actor's thread only.
        view = self._source(self._orch)
        now = view.ts
        opens = self._in_window(self._opens, now)
        restarts = self._in_window(self._restarts, now)
        readings: dict[tuple[AlertKind, str], float] = {
            (AlertKind.QUEUE_DEPTH, f"lane:{lane.name}"): lane.pending for lane in view.lanes
        }
        if view.workers or view.pool_queued:
            readings[(AlertKind.QUEUE_DEPTH, "pool")] = view.pool_queued
        readings[(AlertKind.BREAKER_OPENS, "breakers")] = opens
        readings[(AlertKind.WORKER_RESTARTS, "workers")] = restarts
        alerts = tuple(self._state.update(readings, now))
        sample = MonitorSample(view, opens, restarts, alerts)
        with self._cond:
            self._last = sample
            self._active = tuple(self._state.active())
            self._alerts += len(alerts)
        for alert in alerts:
            self._fire(alert)
        for callback in self._sample_callbacks:
            self._call(callback, sample)
        with self._cond:
            # Counted last, so a waiter on wait_for_polls sees the callbacks' effects.
            self._polls += 1
            self._cond.notify_all()
        return sample

    def _fire(self, alert: Alert) -> None:
        (log.info if alert.resolved else log.warning)("alert: %s", alert.message)
        self._orch.events.publish(
            "alert.resolved" if alert.resolved else "alert.raised",
            alert.subject,
            kind=alert.kind.value,
            level=alert.level.name.lower(),
            value=alert.value,
            message=alert.message,
        )
        for callback in self._callbacks:
            self._call(callback, alert)

    def _call(self, callback: Callable[[Any], Any], arg: Any) -> None:
        try:
            callback(arg)
        except Exception:
            self._callback_errors += 1
            log.exception("monitor callback %r raised", callback)

    # public -------------------------------------------------------------------

    def add_callback(self, fn: AlertCallback) -> Callable[[], None]:
        """Call ``fn(alert)`` for every alert from now on; returns a function that removes it."""
        return self._add("_callbacks", fn)

    def add_sample_callback(self, fn: SampleCallback) -> Callable[[], None]:
        """Call ``fn(sample)`` after every poll from now on; returns a function that removes it."""
        return self._add("_sample_callbacks", fn)

    def _add(self, attr: str, fn: Callable[[Any], Any]) -> Callable[[], None]:
        if not callable(fn):
            raise ConfigError(f"monitor callback must be callable, got {fn!r}")
        # Copy-on-write tuples: the poll reads them without a lock.
        setattr(self, attr, getattr(self, attr) + (fn,))

        def remove() -> None:
            setattr(self, attr, tuple(c for c in getattr(self, attr) if c is not fn))

        return remove

    def check(self, timeout: float = 30.0) -> MonitorSample:
        """Poll now (on the monitor's thread) and return the sample."""
        return self._ref.ask(_Poll(scheduled=False), timeout=timeout)

    @property
    def last(self) -> MonitorSample:
        """The latest poll's sample (an empty one before the first poll)."""
        return self._last

    @property
    def total_pending(self) -> int:
        """Work waiting in lanes and the pool at the latest poll."""
        return self._last.total_pending

    @property
    def total_active(self) -> int:
        """Work running in lanes and on pool workers at the latest poll."""
        return self._last.total_active

    def active_alerts(self) -> list[Alert]:
        """Alerts raised and not resolved yet, most severe first."""
        with self._cond:
            return list(self._active)

    def wait_for_polls(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` polls have run in total; False at the deadline."""
        with self._cond:
            return self._cond.wait_for(lambda: self._polls >= count, timeout)

    def statistics(self) -> MonitorStatistics:
        with self._cond:
            return MonitorStatistics(self._polls, self._alerts, self._callback_errors, len(self._active))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and listening (also done at orchestrator shutdown)."""
        self._remove_listener()
        try:
            self._ref.stop(timeout=timeout)
        except Exception:
            log.debug("monitor actor already stopped", exc_info=True)
