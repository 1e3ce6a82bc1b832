"""Prometheus exposition of :class:`~laneway.observe.Metrics` over HTTP.

A custom collector turns a metrics snapshot (and the live system view: lane
depths, worker memory and CPU) into metric families at scrape time, so there
is no second set of counters to keep in step. Each endpoint has its own
``CollectorRegistry``: two orchestrators in one process never share series,
and prometheus-client's global registry is left alone.

Exposed families (all prefixed ``laneway_``):

* ``work_total{scope,name,outcome}``: counters per lane, agent and pool.
* ``latency_seconds{scope,name}``: cumulative histogram since start.
* ``latency_recent_seconds{scope,name,quantile}``: exact p50/p90/p95/p99 of the recent window.
* ``breaker_open{agent}`` (1 while open), ``breaker_opens_total{agent}``.
* ``restarts_total{name}``, ``worker_losses_total``.
* ``lane_pending{lane}``, ``lane_active{lane}``, ``worker_rss_bytes{worker}``, ``worker_cpu_percent{worker}``.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator, TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from laneway.errors import ConfigError
from laneway.observe._histogram import QUANTILES
from laneway.observe._metric_records import Scope
from laneway.observe._system import system_view

if TYPE_CHECKING:
    from laneway.observe._observed import Observed
    from laneway.observe._metrics import Metrics

log = logging.getLogger(__name__)


class LanewayCollector:
    """A prometheus-client collector reading one orchestrator's metrics at scrape time."""

    def __init__(self, metrics: Metrics, orch: Observed) -> None:
        self._metrics = metrics
        self._orch = orch

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot()
        series = ["scope", "name"]
        labels = [*series, "outcome"]
        work = CounterMetricFamily("laneway_work", "Work by scope, series and outcome.", labels=labels)
        hist = HistogramMetricFamily("laneway_latency_seconds", "Latency since start.", labels=series)
        recent = Metric("laneway_latency_recent_seconds", "Exact quantiles of recent latency.", "summary")
        for scope in Scope:
            for name, snapshot in snap.series(scope).items():
                for outcome, value in snapshot.counters().items():
                    work.add_metric([scope.value, name, outcome], value)
                lat = snapshot.latency
                if not lat.count:
                    continue
                buckets = [
                    ("+Inf" if math.isinf(b) else floatToGoString(b), n)
                    for b, n in self._metrics.histogram_buckets(scope, name)
                ]
                hist.add_metric([scope.value, name], buckets, sum_value=lat.sum_s)
                sample = {"scope": scope.value, "name": name}
                for q, v in zip(QUANTILES, (lat.p50_s, lat.p90_s, lat.p95_s, lat.p99_s)):
                    recent.add_sample(recent.name, {**sample, "quantile": floatToGoString(q)}, v)
                recent.add_sample(recent.name + "_count", sample, lat.count)
                recent.add_sample(recent.name + "_sum", sample, lat.sum_s)
        yield from (work, hist, recent)

        by_agent = ["agent"]
        open_now = GaugeMetricFamily("laneway_breaker_open", "1 while the circuit is open.", labels=by_agent)
        opens = CounterMetricFamily("laneway_breaker_opens", "Times the circuit opened.", labels=by_agent)
        for agent, b in snap.breakers.items():
            open_now.add_metric([agent], 1.0 if b.state == "open" else 0.0)
            opens.add_metric([agent], b.opens)
        restarts = CounterMetricFamily("laneway_restarts", "Restarts by child or pool slot.", labels=["name"])
        for name, n in snap.restarts.items():
            restarts.add_metric([name], n)
        losses = CounterMetricFamily("laneway_worker_losses", "Pool worker processes that died or vanished.")
        losses.add_metric([], snap.worker_losses)
        yield from (open_now, opens, restarts, losses)
        yield from self._system_families()

    def _system_families(self) -> Iterator[Metric]:
        view = system_view(self._orch)
        pending = GaugeMetricFamily("laneway_lane_pending", "Commands queued in the lane.", labels=["lane"])
        active = GaugeMetricFamily("laneway_lane_active", "Commands running in the lane.", labels=["lane"])
        for lane in view.lanes:
            pending.add_metric([lane.name], lane.pending)
            active.add_metric([lane.name], lane.active)
        rss = GaugeMetricFamily("laneway_worker_rss_bytes", "Worker resident memory.", labels=["worker"])
        cpu = GaugeMetricFamily("laneway_worker_cpu_percent", "Worker CPU use.", labels=["worker"])
        for w in view.workers:
            rss.add_metric([w.name], w.rss)
            cpu.add_metric([w.name], w.cpu)
        yield from (pending, active, rss, cpu)


class PrometheusEndpoint:
    """An HTTP server exposing one orchestrator's metrics at ``/metrics``.

    Created by :meth:`Metrics.start_prometheus`; stopped by :meth:`close`
    or at orchestrator shutdown.

    Attributes:
        registry: the endpoint's own ``CollectorRegistry``.
        host, port: where it listens (``port`` is the real one when 0 was asked).
    """

    def __init__(self, metrics: Any, orch: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"prometheus port must be an int in [0, 65535], got {port!r}")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LanewayCollector(metrics, orch))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve Prometheus metrics on {host}:{port}: {exc}") from exc
        self.host = host
        self.port = self._server.server_port
        log.info("Prometheus metrics at %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
