"""Optional OpenTelemetry export: laneway's metrics as observable instruments.

Only imported when :meth:`Metrics.start_opentelemetry` is called, so
OpenTelemetry stays an optional dependency. Instruments are observable
(read at collection time from one snapshot), like the Prometheus collector,
so nothing is counted twice. The provider's readers and exporters (OTLP,
console, Prometheus) are the application's choice.

Instruments: ``laneway.work`` (counter; attributes scope, name, outcome),
``laneway.latency.recent`` (gauge, seconds; attributes scope, name, quantile),
``laneway.breaker.opens`` (counter; agent), ``laneway.restarts`` (counter; name).
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from laneway.errors import ConfigError
from laneway.observe._histogram import QUANTILES
from laneway.observe._metric_records import MetricsSnapshot, Scope

log = logging.getLogger(__name__)


class OpenTelemetryExporter:
    """Registers laneway's instruments on a meter; :meth:`close` makes them report nothing.

    OpenTelemetry has no way to unregister an observable instrument, so a
    closed exporter's callbacks simply yield no observations.

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider                  # doctest: +SKIP
        >>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader     # doctest: +SKIP
        >>> reader = InMemoryMetricReader()                                       # doctest: +SKIP
        >>> orch.metrics.start_opentelemetry(MeterProvider(metric_readers=[reader]))  # doctest: +SKIP
    """

    def __init__(self, metrics: Any, meter_provider: Any = None) -> None:
        try:
            from opentelemetry import metrics as otel
        except ImportError:
            raise ConfigError("OpenTelemetry export needs the opentelemetry-api package") from None
        self._otel = otel
        self._metrics = metrics
        self._closed = False
        provider = meter_provider if meter_provider is not None else otel.get_meter_provider()
        meter = provider.get_meter("laneway")
        counter, gauge = meter.create_observable_counter, meter.create_observable_gauge
        counter("laneway.work", [self._work], description="Work items by scope, series and outcome")
        gauge("laneway.latency.recent", [self._latency], unit="s", description="Recent latency quantiles")
        counter("laneway.breaker.opens", [self._breakers], description="Circuit breaker opens")
        counter("laneway.restarts", [self._restarts], description="Restarts by child or slot")

    def _snapshot(self, options: Any) -> MetricsSnapshot | None:
        return None if self._closed else self._metrics.snapshot()

    def _work(self, options: Any) -> Iterable[Any]:
        snap = self._snapshot(options)
        if snap is None:
            return []
        obs = self._otel.Observation
        return [
            obs(value, {"scope": scope.value, "name": name, "outcome": outcome})
            for scope in Scope
            for name, series in snap.series(scope).items()
            for outcome, value in series.counters().items()
        ]

    def _latency(self, options: Any) -> Iterable[Any]:
        snap = self._snapshot(options)
        if snap is None:
            return []
        obs = self._otel.Observation
        out = []
        for scope in Scope:
            for name, series in snap.series(scope).items():
                lat = series.latency
                if lat.count:
                    for q, v in zip(QUANTILES, (lat.p50_s, lat.p90_s, lat.p95_s, lat.p99_s)):
                        out.append(obs(v, {"scope": scope.value, "name": name, "quantile": q}))
        return out

    def _breakers(self, options: Any) -> Iterable[Any]:
        snap = self._snapshot(options)
        obs = self._otel.Observation
        return [] if snap is None else [obs(b.opens, {"agent": a}) for a, b in snap.breakers.items()]

    def _restarts(self, options: Any) -> Iterable[Any]:
        snap = self._snapshot(options)
        obs = self._otel.Observation
        return [] if snap is None else [obs(n, {"name": k}) for k, n in snap.restarts.items()]

    def close(self) -> None:
        """Report nothing from now on."""
        self._closed = True
