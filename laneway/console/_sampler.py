"""Reads the system into plain JSON-able snapshots for the console page.

Reading never holds a subsystem's lock while the snapshot is rendered: each
subsystem is asked once through its public ``statistics()``-style call (which
copies under its own lock and returns a frozen record), and everything after
that works on the copies. A subsystem that fails to answer (shutting down) is
logged and shown empty, like :func:`laneway.observe.system_view` does.

Events cost the publishers only while a page watches: the ring of recent
events listens only while a page is connected, and never to the per-command
success events (:data:`HOT_KEYS`) unless a connected page's key filter asks
for them. Listeners the bus resolves per key, so a publisher of an unwatched
key builds nothing (:meth:`laneway.core.EventBus.wants`).
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import attrs

from laneway.core import Event
from laneway.observe import SystemView, system_view_of

if TYPE_CHECKING:
    from laneway.console._target import ConsoleTarget
    from laneway.observe import Alert

log = logging.getLogger(__name__)

#: Points of throughput history kept per lane (at 2 samples a second, a minute).
HISTORY_POINTS = 120
#: Most events kept for the event stream view.
EVENTS_KEPT = 2000
#: Most dead letters and workflows one snapshot carries (newest first); totals are always exact.
LETTERS_SHOWN = 100
WORKFLOWS_SHOWN = 30
#: Most causes of death remembered per worker slot.
DEATHS_KEPT = 5
#: Events published for every command or task that succeeds: thousands a second under load, and what the
#: lane and agent counters already show. The event view gets them only when a page's key filter asks.
HOT_KEYS = ("queue.command.submitted", "queue.command.started", "queue.command.completed", "agent.task.completed")
#: Keys the sampler always follows (rare; they feed the worker and alert views, watched or not).
KEPT_KEYS = ("pool.worker.lost", "alert.raised", "alert.resolved")


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def _role(role: Any) -> str:
    symbol = getattr(role, "symbol", None)
    return f"{symbol} {role.name.lower()}" if symbol else str(_value(role))


def _text(data: Any, limit: int = 300) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in data.items()) if isinstance(data, dict) else repr(data)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@attrs.frozen
class _Readings:
    """One read of the started lanes, pool and router (None: not started; empty: the read failed)."""

    now: float
    lanes: tuple[Any, ...] | None
    pool: tuple[tuple[Any, ...], Any] | None  # (workers, statistics); statistics None when the read failed
    agents: tuple[Any, ...] | None


class Sampler:
    """Keeps what the console needs between reads (event log, worker deaths, lane history) and reads snapshots.

    Args:
        target: the system to read.
        active_alerts: returns the alerts raised and not resolved (from the console's monitor).
    """

    def __init__(self, target: ConsoleTarget, active_alerts: Callable[[], list[Alert]] = list) -> None:
        self._target = target
        self._active_alerts = active_alerts
        self._seq = itertools.count(1)
        # deque appends are atomic: the publisher's thread pays one append per event, no lock.
        self._events: collections.deque[tuple[int, Event]] = collections.deque(maxlen=EVENTS_KEPT)
        self._alert_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self._deaths: dict[str, collections.deque[str]] = {}
        self._lock = threading.Lock()  # the lane history, updated by ticks only
        self._history: dict[str, collections.deque[tuple[float, float]]] = {}
        self._last_completed: dict[str, tuple[float, int]] = {}
        self._definitions: dict[str, Any] = {}
        self._for_tick: _Readings | None = None  # read for the monitor, shown by the next tick's snapshot
        self.snapshots = 0
        self._watch_lock = threading.Lock()  # the watching pages' filters and the ring's listener
        self._watchers: list[str] = []
        self._ring_exclude: tuple[str, ...] | None = None
        self._ring_remove: Callable[[], None] | None = None
        self._last_ring: Event | None = None
        self._remove = target.events.add_listener(self._on_kept, KEPT_KEYS)

    def close(self) -> None:
        """Stop listening to the bus."""
        self._remove()
        with self._watch_lock:
            self._watchers.clear()
            self._relisten_locked()

    # the watching pages ---------------------------------------------------------------------

    def watch(self, prefix: str = "") -> Callable[[], None]:
        """A page with this event key filter is connected: keep the event ring; returns its "page closed" call."""
        with self._watch_lock:
            self._watchers.append(prefix)
            self._relisten_locked()
        closed = threading.Event()

        def unwatch() -> None:
            if closed.is_set():
                return
            closed.set()
            with self._watch_lock:
                self._watchers.remove(prefix)
                self._relisten_locked()

        return unwatch

    @property
    def listening(self) -> tuple[str, ...] | None:
        """The event keys the ring leaves out while a page watches, or None while none does."""
        return self._ring_exclude

    def _relisten_locked(self) -> None:
        if not self._watchers:
            exclude = None
        else:
            exclude = tuple(k for k in HOT_KEYS if not any(p and k.startswith(p) for p in self._watchers))
        if exclude == self._ring_exclude:
            return
        old = self._ring_remove
        # The new listener is added before the old one goes, so no event is missed in between;
        # _on_ring drops the one both may see.
        self._ring_remove = None if exclude is None else self._target.events.add_listener(
            self._on_ring, exclude=exclude)
        self._ring_exclude = exclude
        if old is not None:
            old()

    # the publisher's thread -----------------------------------------------------------------

    def _on_ring(self, event: Event) -> None:
        if event is self._last_ring:
            return
        self._last_ring = event
        self._events.append((next(self._seq), event))

    def _on_kept(self, event: Event) -> None:
        key = event.key
        if key == "pool.worker.lost" and not event.data.get("planned"):
            self._deaths.setdefault(event.source, collections.deque(maxlen=DEATHS_KEPT)).append(
                str(event.data.get("reason", "?"))
            )
        elif key in ("alert.raised", "alert.resolved"):
            self._alert_log.append({"key": key, "subject": event.source, "ts": event.ts, **{
                k: str(_value(v)) for k, v in event.data.items()}})

    def events_since(self, seq: int, prefix: str = "", limit: int = 200) -> tuple[int, list[dict[str, Any]]]:
        """Events after ``seq`` whose key starts with ``prefix`` (at most ``limit``, the newest); and the last seq seen."""
        items = list(self._events)
        last = items[-1][0] if items else seq
        picked = [(n, e) for n, e in items if n > seq and e.key.startswith(prefix)][-limit:]
        return last, [
            {"seq": n, "key": e.key, "source": e.source, "ts": round(e.ts, 3), "data": _text(dict(e.data))}
            for n, e in picked
        ]

    # reads ----------------------------------------------------------------------------------

    def _read(self, what: str, fn: Callable[[], Any], empty: Any) -> Any:
        try:
            return fn()
        except Exception:
            log.debug("console: reading %s failed", what, exc_info=True)
            return empty

    def _read_systems(self) -> _Readings:
        t = self._target
        now = t.clock.now()
        lanes, pool, router = t.started_lanes(), t.started_pool(), t.started_router()
        return _Readings(
            now,
            None if lanes is None else self._read("lanes", lambda: tuple(lanes.statistics().lanes), ()),
            None if pool is None else self._read("pool", lambda: (tuple(pool.workers()), pool.statistics()),
                                                 ((), None)),
            None if router is None else self._read("router", lambda: tuple(router.agents()), ()),
        )

    def monitor_view(self, target: Any = None) -> SystemView:
        """The console's monitor's source: one read of lanes, pool and router, kept for the next tick.

        The monitor (alert thresholds) and the page show the same figures, so a
        tick reads each subsystem once: this reading feeds the monitor, then the
        ``snapshot(tick=True)`` its sample callback takes on the same thread.
        """
        r = self._for_tick = self._read_systems()
        workers, pool = r.pool if r.pool is not None else ((), None)
        return system_view_of(r.now, lanes=r.lanes or (), workers=workers, pool=pool, agents=r.agents or ())

    def snapshot(self, *, tick: bool = False) -> dict[str, Any]:
        """One reading of every started subsystem, as JSON-able data.

        Args:
            tick: True for the periodic sample (it extends the throughput history, and shows what
                :meth:`monitor_view` read just before, if it did); False for a one-off read, which
                leaves the history alone.
        """
        r = None
        if tick:
            r, self._for_tick = self._for_tick, None
        if r is None:
            r = self._read_systems()
        t = self._target
        engine = t.started_workflows()
        snap: dict[str, Any] = {"system": t.name, "ts": round(r.now, 3), "wall": time.time()}
        lanes, pool, agents = r.lanes, r.pool, r.agents
        snap["lanes"] = self._read("lanes", lambda: self._lanes(lanes, r.now, tick), []) if lanes else []
        snap["pool"], snap["workers"] = self._read("pool", lambda: self._pool(*pool), (None, [])) if pool else (None, [])
        snap["agents"] = self._read("router", lambda: self._agents(agents), []) if agents else []
        snap["workflows"] = self._read("workflows", lambda: self._workflows(engine), []) if engine else []
        snap["dead_letters"] = self._read("dead letters", self._letters, {"total": 0, "items": []})
        snap["alerts"] = {
            "active": [self._alert(a) for a in self._read("alerts", self._active_alerts, [])],
            "recent": list(self._alert_log)[::-1][:20],
        }
        snap["started"] = {"lanes": r.lanes is not None, "pool": r.pool is not None,
                           "router": r.agents is not None, "workflows": engine is not None}
        self.snapshots += 1
        return snap

    @staticmethod
    def _alert(a: Alert) -> dict[str, Any]:
        return {"kind": str(_value(a.kind)), "subject": a.subject, "level": a.level.name.lower(),
                "value": a.value, "message": a.message}

    def _lanes(self, stats: tuple[Any, ...], now: float, tick: bool) -> list[dict[str, Any]]:
        out = []
        for s in stats:
            if tick:
                self._advance_history(s.name, now, s.completed)
            with self._lock:
                history = [round(r, 2) for _, r in self._history.get(s.name, ())]
            out.append({
                "name": s.name, "priority": s.priority, "pending": s.pending, "active": s.active,
                "max": s.max_concurrency, "completed": s.completed, "failed": s.failed,
                "dead_lettered": s.dead_lettered, "cancelled": s.cancelled, "paused": s.paused,
                "session": s.session_id, "throughput": round(s.throughput_per_s, 2),
                "p50": s.latency_p50_s, "p90": s.latency_p90_s, "p95": s.latency_p95_s, "p99": s.latency_p99_s,
                "history": history,
            })
        return out

    def _advance_history(self, lane: str, now: float, completed: int) -> None:
        with self._lock:
            last = self._last_completed.get(lane)
            self._last_completed[lane] = (now, completed)
            if last is None or now <= last[0]:
                return
            rate = max(0, completed - last[1]) / (now - last[0])
            self._history.setdefault(lane, collections.deque(maxlen=HISTORY_POINTS)).append((now, rate))

    def _pool(self, workers: tuple[Any, ...], st: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        if st is None:
            return None, []
        summary = {"backend": st.backend, "workers": st.workers, "busy": st.busy, "queued": st.queued,
                   "in_flight": st.in_flight, "completed": st.completed, "failed": st.failed,
                   "worker_deaths": st.worker_deaths, "restarts": st.restarts}
        rows = [{
            "name": w.name, "pid": w.pid, "host": w.host, "state": str(_value(w.state)), "rss": w.rss,
            "cpu": round(w.cpu, 1), "tasks": w.tasks_done, "in_flight": w.in_flight, "restarts": w.restarts,
            "deaths": list(self._deaths.get(w.name.rsplit("/", 1)[-1], ())),
        } for w in workers]
        return summary, rows

    @staticmethod
    def _agents(agents: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [{
            "agent_id": a.agent_id, "role": _role(a.role), "capabilities": sorted(a.capabilities),
            "in_flight": a.in_flight, "max": a.max_concurrent, "completed": a.completed, "failed": a.failed,
            "rejected": a.rejected, "breaker": str(_value(a.breaker)),
        } for a in sorted(agents, key=lambda a: a.agent_id)]

    def _workflows(self, engine: Any) -> list[dict[str, Any]]:
        out = []
        for wid in engine.loaded_ids()[-WORKFLOWS_SHOWN:][::-1]:
            try:
                status = engine.status(wid)
                definition = self._definitions.get(wid)
                if definition is None:
                    definition = self._definitions[wid] = engine.definition(wid)
            except LookupError:
                continue  # dropped between the listing and the read
            deps = {task.task_id: list(task.dependencies) for task in definition.tasks}
            out.append({
                "id": wid, "name": status.name, "state": str(_value(status.state)), "version": status.version,
                "tasks": [{"id": tid, "state": str(_value(ts.state)), "attempts": ts.attempts,
                           "error": ts.error[:300], "deps": deps.get(tid, [])} for tid, ts in status.tasks.items()],
            })
        if len(self._definitions) > 4 * WORKFLOWS_SHOWN:
            keep = {w["id"] for w in out}
            self._definitions = {k: v for k, v in self._definitions.items() if k in keep}
        return out

    def _letters(self) -> dict[str, Any]:
        letters = self._target.dead_letters.list()
        return {"total": len(letters), "items": [{
            "id": x.id, "source": x.source, "reason": x.reason, "attempts": x.attempts, "error": x.error[:2000],
            "traceback": getattr(x, "traceback", ""), "work_id": x.work_id, "ts": x.ts,
        } for x in letters[:-LETTERS_SHOWN - 1:-1]]}  # the newest, without reversing the whole queue
