"""Metrics fed by the event stream: counters and latency histograms per lane, agent and pool.

:class:`Metrics` (``orch.metrics``) adds one listener to ``orch.events`` and
turns events into numbers. Components never call it: they publish the events
they publish anyway, so metrics cost nothing until ``orch.metrics`` is first
touched, and a component written later is measured as soon as it publishes
under a known key:

====================================  =======  ===================================
event key                             scope    series name from
====================================  =======  ===================================
``queue.command.<outcome>``           lane     ``data["lane"]``, else the source
``agent.task.<outcome>``              agent    ``data["agent_id"]``, else the source
``pool.task.<outcome>``               pool     ``data["pool"]``, else the source (*)
``agent.circuit.state``               breaker  ``data["agent_id"]``; ``to == "open"`` counts an open
``supervisor.child.restarted``        restart  ``"<supervisor>/<child>"``
``pool.worker.restarted`` / ``.lost``  restart  ``"pool/<slot>"``
====================================  =======  ===================================

``<outcome>`` is one of submitted, started, completed, failed, timeout (or
timed_out), retry (or retried), dead_lettered, cancelled; an event carrying
``latency_s`` adds it to the series' histogram.

(*) The process pool publishes only ``pool.task.completed`` / ``.failed``
with ``latency_s``, and only while someone listens (its hot path runs at tens
of thousands of tasks per second), so a started pool's counters are read from
``Pool.statistics()`` at snapshot time and its histogram comes from those events.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, TYPE_CHECKING


from laneway.errors import ConfigError
from laneway.core import Event
from laneway.observe._histogram import DEFAULT_BUCKETS, LatencyHistogram, LatencySummary
from laneway.observe._metric_records import BreakerSnapshot, Counter, MetricsSnapshot, Scope, SeriesSnapshot

if TYPE_CHECKING:
    from laneway.observe._observed import Observed

log = logging.getLogger(__name__)


_OUTCOMES: dict[str, Counter] = {
    **{c.value: c for c in Counter},
    "timeout": Counter.TIMED_OUT,
    "retry": Counter.RETRIED,
}
_SCOPES: dict[str, tuple[Scope, str]] = {
    "queue.command.": (Scope.LANE, "lane"),
    "agent.task.": (Scope.AGENT, "agent_id"),
    "pool.task.": (Scope.POOL, "pool"),
}
# Dotted prefixes, a filter on the key alone: the bus resolves it once per key, not once per event.
_FILTER = (*(p.rstrip(".") for p in _SCOPES), "agent.circuit.state", "supervisor.child.restarted", "pool.worker")


class _Series:
    __slots__ = ("lock", "counts", "latency")

    def __init__(self, window: int, buckets: tuple[float, ...]) -> None:
        self.lock = threading.Lock()
        self.counts = [0] * len(Counter)
        self.latency = LatencyHistogram(window, buckets, lock=self.lock)

    def add(self, index: int, latency: Any) -> None:
        with self.lock:
            self.counts[index] += 1
            if latency is not None:
                self.latency._add(float(latency))

    def snapshot(self, scope: Scope, name: str) -> SeriesSnapshot:
        with self.lock:
            counts = dict(zip((c.value for c in Counter), self.counts))
        return SeriesSnapshot(scope, name, latency=self.latency.summary(), **counts)


_COUNTER_INDEX = {c: i for i, c in enumerate(Counter)}
# How an event key is handled: counted ((series by name, name field, counter index, scope)), by a
# function, or not at all.
_Route = tuple[dict[str, _Series], str, int, Scope] | Callable[[Event], None] | None


class Metrics:
    """Counters and latency histograms for one orchestrator, fed by its events.

    Get it as ``orch.metrics``. Snapshots are in memory; add a Prometheus
    endpoint with :meth:`start_prometheus` or OpenTelemetry instruments with
    :meth:`start_opentelemetry`.

    Args:
        orch: the orchestrator whose events are measured.
        window: recent samples each latency percentile is computed over.
        buckets: histogram bucket bounds in seconds (Prometheus ``le``).
        prometheus: start the Prometheus endpoint now (on ``prometheus_host:prometheus_port``).
        prometheus_host: address to bind; loopback unless told otherwise.
        prometheus_port: port to bind; 0 picks a free one.

    Example:
        >>> from laneway import Orchestrator
        >>> with Orchestrator(name="doc") as orch:
        ...     m = orch.metrics
        ...     orch.events.publish("queue.command.completed", "prompt", lane="prompt", latency_s=0.004)
        ...     m.snapshot().lanes["prompt"].completed
        1
    """

    def __init__(
        self,
        orch: Observed,
        *,
        window: int = 4096,
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        prometheus: bool = False,
        prometheus_host: str = "127.0.0.1",
        prometheus_port: int = 0,
    ) -> None:
        LatencyHistogram(window, buckets)  # validates both before anything starts
        self._orch = orch
        self._window = window
        self._buckets = tuple(buckets)
        self._lock = threading.Lock()
        self._series: dict[Scope, dict[str, _Series]] = {scope: {} for scope in Scope}
        self._breakers: dict[str, BreakerSnapshot] = {}
        self._restarts: dict[str, int] = {}
        self._worker_losses = 0
        self._other_events = 0
        self._routes: dict[str, _Route] = {}
        self._exporters: list[Any] = []
        self._remove = orch.events.add_listener(self._on_event, _FILTER)
        orch.on_shutdown("metrics", self.close)
        if prometheus:
            self.start_prometheus(host=prometheus_host, port=prometheus_port)

    # feeding ------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Runs in the publisher's thread (three events per lane command): the route is resolved
        # once per distinct key, and a counted outcome is counted here, not through a closure.
        key = event.key
        try:
            route = self._routes[key]
        except KeyError:
            route = self._routes[key] = self._route_for(key)
        if route is None:
            return
        if not isinstance(route, tuple):
            route(event)
            return
        by_name, field, index, scope = route
        data = event.data
        name = data.get(field) or event.source
        series = by_name.get(name)
        if series is None:
            series = self._new_series(scope, str(name))
        series.add(index, data.get("latency_s"))

    def _route_for(self, key: str) -> _Route:
        for prefix, (scope, field) in _SCOPES.items():
            if key.startswith(prefix):
                counter = _OUTCOMES.get(key[len(prefix):])
                # (the series by name, the field naming one, the counter's index, the scope): _on_event counts.
                return None if counter is None else (self._series[scope], field, _COUNTER_INDEX[counter], scope)
        if key == "agent.circuit.state":
            return self._on_circuit
        if key == "supervisor.child.restarted":
            return lambda e: self._restarted(f"{e.source}/{e.data.get('child', '?')}")
        if key == "pool.worker.restarted":
            return lambda e: self._restarted(f"pool/{e.source}")
        if key == "pool.worker.lost":
            return self._worker_lost
        return None

    def _new_series(self, scope: Scope, name: str) -> _Series:
        with self._lock:
            return self._series[scope].setdefault(name, _Series(self._window, self._buckets))

    def _on_circuit(self, event: Event) -> None:
        data = event.data
        agent = str(data.get("agent_id") or data.get("agent") or event.source)
        to = str(getattr(data.get("to"), "value", data.get("to")))
        with self._lock:
            old = self._breakers.get(agent)
            opens = (old.opens if old else 0) + (to == "open")
            self._breakers[agent] = BreakerSnapshot(agent, to, opens)
            self._other_events += 1

    def _restarted(self, name: str) -> None:
        with self._lock:
            self._restarts[name] = self._restarts.get(name, 0) + 1
            self._other_events += 1

    def _worker_lost(self, event: Event) -> None:
        with self._lock:
            self._worker_losses += 1
            self._other_events += 1

    def record(self, scope: Scope, name: str, counter: Counter, *, latency_s: float | None = None) -> None:
        """Count one outcome by hand (for work that publishes no events).

        Raises:
            ConfigError: ``scope`` or ``counter`` is not the enum.
        """
        if not isinstance(scope, Scope) or not isinstance(counter, Counter):
            raise ConfigError(f"record needs a Scope and a Counter, got {scope!r}, {counter!r}")
        series = self._series[scope].get(name) or self._new_series(scope, name)
        series.add(_COUNTER_INDEX[counter], latency_s)

    # reading ------------------------------------------------------------------

    def series(self, scope: Scope, name: str) -> SeriesSnapshot:
        """One series now (all zero when nothing was recorded under that name)."""
        found = self._series[scope].get(name)
        return found.snapshot(scope, name) if found else SeriesSnapshot(scope, name)

    def snapshot(self) -> MetricsSnapshot:
        """Every series, breaker and restart count now, as a frozen record."""
        with self._lock:
            items = {scope: sorted(by_name.items()) for scope, by_name in self._series.items()}
            breakers = dict(self._breakers)
            restarts = dict(self._restarts)
            losses, other = self._worker_losses, self._other_events
        by_scope = {
            scope: {name: series.snapshot(scope, name) for name, series in pairs}
            for scope, pairs in items.items()
        }
        counted = sum(sum(s.counters().values()) for series in by_scope.values() for s in series.values())
        return MetricsSnapshot(
            ts=self._orch.clock.now(),
            lanes=by_scope[Scope.LANE],
            agents=by_scope[Scope.AGENT],
            pools=self._with_pool_statistics(by_scope[Scope.POOL]),
            breakers=breakers,
            restarts=restarts,
            worker_losses=losses,
            events=counted + other,
        )

    def _with_pool_statistics(self, pools: dict[str, SeriesSnapshot]) -> dict[str, SeriesSnapshot]:
        """Pool counters from ``Pool.statistics()`` when the pool publishes no task events of its own.

        The pool counts every task itself (its hot path publishes nothing per
        task), so its counters are read at snapshot time; a latency histogram
        appears once ``pool.task.*`` events carry ``latency_s``.
        """
        pool = self._orch.started_pool()
        if pool is None:
            return pools
        name = str(getattr(pool, "name", "pool"))
        evented = pools.get(name)
        if evented is not None and evented.submitted:
            return pools
        try:
            st = pool.statistics()
        except Exception:
            log.debug("pool statistics unavailable for metrics", exc_info=True)
            return pools
        latency = evented.latency if evented is not None else LatencySummary()
        started = max(0, st.submitted - st.queued)
        pools = dict(pools)
        pools[name] = SeriesSnapshot(
            Scope.POOL, name, st.submitted, started, st.completed, st.failed, st.timed_out, st.retried,
            st.dead_lettered, 0, latency,
        )  # fmt: skip
        return dict(sorted(pools.items()))

    def histogram_buckets(self, scope: Scope, name: str) -> list[tuple[float, int]]:
        """Cumulative latency buckets of one series (empty when unknown)."""
        found = self._series[scope].get(name)
        return found.latency.buckets() if found else []

    # export -------------------------------------------------------------------

    def start_prometheus(self, *, host: str = "127.0.0.1", port: int = 0) -> Any:
        """Serve Prometheus text exposition over HTTP; returns the endpoint (``.url``, ``.port``).

        Binds to loopback unless ``host`` says otherwise. Each orchestrator
        gets its own collector registry, never prometheus-client's global one.

        Example:
            >>> ep = orch.metrics.start_prometheus(port=9464)   # doctest: +SKIP
            >>> ep.url                                          # doctest: +SKIP
            'http://127.0.0.1:9464/metrics'
        """
        from laneway.observe._prometheus import PrometheusEndpoint

        endpoint = PrometheusEndpoint(self, self._orch, host=host, port=port)
        self._exporters.append(endpoint)
        return endpoint

    def start_opentelemetry(self, meter_provider: Any = None) -> Any:
        """Expose the metrics as OpenTelemetry observable instruments.

        Needs ``opentelemetry-api``; uses the global meter provider unless one
        is given. Returns the exporter (call ``close()`` to unregister).

        Raises:
            ConfigError: OpenTelemetry is not installed.
        """
        from laneway.observe._otel import OpenTelemetryExporter

        exporter = OpenTelemetryExporter(self, meter_provider)
        self._exporters.append(exporter)
        return exporter

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening and stop every exporter (registered as an orchestrator shutdown hook)."""
        self._remove()
        exporters, self._exporters = self._exporters, []
        for exporter in exporters:
            try:
                exporter.close()
            except Exception:
                log.exception("closing metrics exporter %r failed", exporter)
