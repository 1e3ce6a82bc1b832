"""Metrics fed by events: per-lane/agent/pool series, breakers, restarts, Prometheus and OpenTelemetry export."""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from laneway.errors import ConfigError
from laneway.observe import Counter, Metrics, Scope


def publish_lane_run(orch, lane, latencies, *, failed=0, timeouts=0, retries=0, dead=0):
    pub = orch.events.publish
    for i, lat in enumerate(latencies):
        pub("queue.command.submitted", "lanes", lane=lane, command_id=f"{lane}-{i}")
        pub("queue.command.started", "lanes", lane=lane, command_id=f"{lane}-{i}")
        pub("queue.command.completed", "lanes", lane=lane, command_id=f"{lane}-{i}", latency_s=lat)
    for _ in range(failed):
        pub("queue.command.failed", "lanes", lane=lane)
    for _ in range(timeouts):
        pub("queue.command.timeout", "lanes", lane=lane)
    for _ in range(retries):
        pub("queue.command.retry", "lanes", lane=lane)
    for _ in range(dead):
        pub("queue.command.dead_lettered", "lanes", lane=lane)


def test_lane_counters_and_latency_from_events(orch):
    metrics = orch.metrics
    assert orch.metrics is metrics  # one per orchestrator
    publish_lane_run(orch, "prompt", [i / 1000 for i in range(1, 101)], failed=2, timeouts=1, retries=3, dead=1)
    publish_lane_run(orch, "control", [0.0005])
    snap = metrics.snapshot()
    prompt = snap.lanes["prompt"]
    assert prompt.counters() == {
        "submitted": 100, "started": 100, "completed": 100, "failed": 2,
        "timed_out": 1, "retried": 3, "dead_lettered": 1, "cancelled": 0,
    }  # fmt: skip
    assert prompt.latency.count == 100
    assert prompt.latency.p50_s == pytest.approx(0.0505)
    assert prompt.latency.p99_s == pytest.approx(0.09901)
    assert snap.lanes["control"].completed == 1
    assert snap.total(Scope.LANE, Counter.COMPLETED) == 101
    assert snap.events == 100 * 3 + 7 + 3


def test_agent_and_pool_series_and_name_fallback_to_source(orch):
    metrics = orch.metrics
    orch.events.publish("agent.task.completed", "router", agent_id="analyzer-1", latency_s=0.2)
    orch.events.publish("agent.task.failed", "router", agent_id="analyzer-1", latency_s=0.1)
    orch.events.publish("pool.task.completed", "pool", latency_s=0.01)  # no "pool" field: the source names it
    orch.events.publish("pool.task.retried", "pool")
    snap = metrics.snapshot()
    agent = snap.agents["analyzer-1"]
    assert (agent.completed, agent.failed, agent.latency.count) == (1, 1, 2)
    assert agent.latency.max_s == 0.2
    assert snap.pools["pool"].completed == 1 and snap.pools["pool"].retried == 1
    assert metrics.series(Scope.AGENT, "nobody").completed == 0


def test_unknown_outcomes_and_unrelated_events_are_ignored(orch):
    metrics = orch.metrics
    orch.events.publish("queue.command.exploded", "lanes", lane="prompt")
    orch.events.publish("queue.lane.pressure", "prompt", pending=10)
    orch.events.publish("actor.started", "x")
    snap = metrics.snapshot()
    assert snap.lanes == {} and snap.events == 0


def test_breakers_restarts_and_worker_losses(orch):
    metrics = orch.metrics
    pub = orch.events.publish
    pub("agent.circuit.state", "a1", agent_id="a1", **{"from": "closed", "to": "open"})
    pub("agent.circuit.state", "a1", agent_id="a1", **{"from": "open", "to": "half_open"})
    pub("agent.circuit.state", "a1", agent_id="a1", **{"from": "half_open", "to": "open"})
    pub("agent.circuit.state", "a2", agent_id="a2", **{"from": "closed", "to": "open"})
    pub("agent.circuit.state", "a2", agent_id="a2", **{"from": "open", "to": "closed"})
    pub("supervisor.child.restarted", "workers", child="w1", restarts=1)
    pub("supervisor.child.restarted", "workers", child="w1", restarts=2)
    pub("pool.worker.lost", "pool/w2", pid=1234, reason="killed by SIGKILL")
    snap = metrics.snapshot()
    assert snap.breakers["a1"].state == "open" and snap.breakers["a1"].opens == 2
    assert snap.breakers["a2"].state == "closed" and snap.breakers["a2"].opens == 1
    assert snap.breaker_opens == 3
    assert snap.restarts == {"workers/w1": 2}
    assert snap.worker_losses == 1
    assert snap.to_dict()["breakers"]["a1"] == {"state": "open", "opens": 2}


def test_record_by_hand_and_its_validation(orch):
    metrics = orch.metrics
    metrics.record(Scope.POOL, "gpu", Counter.COMPLETED, latency_s=1.5)
    assert metrics.series(Scope.POOL, "gpu").latency.max_s == 1.5
    with pytest.raises(ConfigError):
        metrics.record("pool", "gpu", Counter.COMPLETED)


def test_concurrent_publishers_lose_no_counts(orch):
    metrics = orch.metrics
    n, threads = 2000, 4

    def run(t):
        for _ in range(n):
            orch.events.publish("queue.command.completed", "lanes", lane=f"l{t % 2}", latency_s=0.001)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    snap = metrics.snapshot()
    assert snap.total(Scope.LANE, Counter.COMPLETED) == n * threads
    assert sum(s.latency.count for s in snap.lanes.values()) == n * threads


def test_shutdown_stops_listening(orch):
    metrics = orch.metrics
    orch.shutdown()
    orch.events.publish("queue.command.completed", "lanes", lane="prompt")
    assert metrics.snapshot().lanes == {}


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {s.name + repr(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_prometheus_endpoint_serves_counters_histograms_and_quantiles(orch):
    metrics = orch.metrics
    ep = metrics.start_prometheus()
    assert ep.host == "127.0.0.1" and ep.url.startswith("http://127.0.0.1:")
    publish_lane_run(orch, "prompt", [0.001, 0.002, 0.003, 0.004], failed=1)
    orch.events.publish("agent.circuit.state", "a1", agent_id="a1", to="open")
    samples = scrape(ep.url)
    lane = [("name", "prompt"), ("scope", "lane")]
    assert samples["laneway_work_total" + repr(sorted(lane + [("outcome", "completed")]))] == 4
    assert samples["laneway_work_total" + repr(sorted(lane + [("outcome", "failed")]))] == 1
    assert samples["laneway_latency_seconds_count" + repr(lane)] == 4
    assert samples["laneway_latency_seconds_bucket" + repr(sorted(lane + [("le", "0.0025")]))] == 2
    assert samples["laneway_latency_recent_seconds" + repr(sorted(lane + [("quantile", "0.5")]))] == pytest.approx(0.0025)
    assert samples["laneway_breaker_open" + repr([("agent", "a1")])] == 1
    assert samples["laneway_breaker_opens_total" + repr([("agent", "a1")])] == 1


def test_each_orchestrator_has_its_own_registry_and_shutdown_frees_the_port(orch):
    from prometheus_client import REGISTRY

    ep = orch.metrics.start_prometheus()
    assert REGISTRY.get_sample_value("laneway_worker_losses_total") is None  # never the global registry
    assert ep.registry.get_sample_value("laneway_worker_losses_total") == 0
    port = ep.port
    orch.shutdown()
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))


def test_prometheus_port_in_use_is_a_config_error(orch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="cannot serve"):
            orch.metrics.start_prometheus(port=taken.getsockname()[1])


def test_metrics_constructor_validates_and_can_start_prometheus(orch):
    with pytest.raises(ConfigError):
        Metrics(orch, window=0)
    m = Metrics(orch, prometheus=True)
    assert scrape(m._exporters[0].url) is not None


def test_opentelemetry_export_reads_the_same_numbers(orch):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporter = orch.metrics.start_opentelemetry(provider)
    publish_lane_run(orch, "query", [0.01, 0.02])
    orch.events.publish("supervisor.child.restarted", "sup", child="c")
    found = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    found[(metric.name, tuple(sorted(point.attributes.items())))] = point.value
    assert found[("laneway.work", (("name", "query"), ("outcome", "completed"), ("scope", "lane")))] == 2
    assert found[("laneway.latency.recent", (("name", "query"), ("quantile", 0.5), ("scope", "lane")))] == pytest.approx(0.015)
    assert found[("laneway.restarts", (("name", "sup/c"),))] == 1
    exporter.close()
    provider.shutdown()
