"""Observers on real subsystems: lanes, a process pool and router agents behind breakers."""

from __future__ import annotations

import io
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from laneway import Orchestrator
from laneway.errors import RemoteError
from laneway.lanes import LaneConfig, ToolRegistry
from laneway.observe import AlertKind, AlertLevel, AlertThresholds, Dashboard, Monitor, Scope, system_view
from laneway.router import AlphaRole


@pytest.fixture
def live():
    orch = Orchestrator(name="observe-live", shutdown_timeout=10.0)
    yield orch
    orch.shutdown()


def test_observers_never_start_subsystems(live):
    view = system_view(live)
    assert view.lanes == () and view.workers == () and view.agents == ()
    assert live.started_lanes() is None and live.started_pool() is None and live.started_router() is None


def test_monitor_reads_real_lane_depth_and_alerts_on_it(live):
    gate = threading.Event()
    lanes = live.start_lanes(lanes=[LaneConfig("work", priority=1, max_concurrency=1, pressure_threshold=None)],
                             tools=ToolRegistry(), store=None)  # fmt: skip
    lanes.tools.register(lambda: gate.wait(30), name="wait")
    metrics = live.metrics
    alerts = []
    monitor = Monitor(live, interval_s=None, thresholds=AlertThresholds(queue_depth=(5, 10)), on_alert=alerts.append)
    handles = [lanes.submit("work", "wait") for _ in range(8)]
    sample = monitor.check()
    (work,) = sample.view.lanes
    assert (work.name, work.active, work.pending) == ("work", 1, 7)
    assert (sample.total_active, sample.total_pending) == (1, 7)
    assert [(a.kind, a.subject, a.level) for a in alerts] == [(AlertKind.QUEUE_DEPTH, "lane:work", AlertLevel.WARNING)]
    gate.set()
    for h in handles:
        h.result(timeout=30)
    monitor.check()
    assert alerts[-1].resolved
    lane = metrics.snapshot().lanes["work"]
    assert lane.submitted == lane.started == lane.completed == 8
    assert lane.latency.count == 8 and lane.latency.max_s > 0


@pytest.mark.multiprocess
def test_view_dashboard_and_prometheus_show_workers_agents_and_breakers(live):
    pool = live.start_pool(workers=1)
    assert pool.submit(pow, 2, 5).get(timeout=60) == 32
    live.register_agent("echo-1", AlphaRole.EXECUTOR, {"echo"}, 2, lambda payload: payload)
    live.register_agent("echo-2", AlphaRole.EXECUTOR, {"echo"}, 2, lambda payload: payload)
    metrics = live.metrics
    assert live.router.run("hi", capabilities={"echo"}, timeout=30) == "hi"
    live.router.breaker("echo-2").trip()

    view = system_view(live)
    (worker,) = view.workers
    assert worker.pid > 0 and worker.state in ("idle", "busy")  # RSS and CPU arrive with heartbeats
    assert [(a.agent_id, a.breaker) for a in view.agents] == [("echo-1", "closed"), ("echo-2", "open")]
    snap = metrics.snapshot()
    assert snap.breakers["echo-2"].opens == 1
    assert sum(s.completed for s in snap.agents.values()) == 1
    assert snap.series(Scope.AGENT)[next(iter(snap.agents))].latency.count == 1

    out = io.StringIO()
    with Dashboard(live, title="live", total=1, interval_s=60, stream=out, live=False) as dash:
        dash.advance()
    line = out.getvalue().splitlines()[-1]
    assert "1/1 (100%)" in line and "workers 1/1" in line and "breakers echo-2" in line

    endpoint = metrics.start_prometheus()
    with urllib.request.urlopen(endpoint.url, timeout=10) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    (rss,) = families["laneway_worker_rss_bytes"].samples
    assert rss.labels == {"worker": worker.name} and rss.value >= 0
    assert {s.labels["agent"]: s.value for s in families["laneway_breaker_open"].samples}["echo-2"] == 1.0


@pytest.mark.multiprocess
def test_pool_counters_come_from_the_pools_own_statistics(live):
    metrics = live.metrics
    pool = live.start_pool(workers=1)
    futures = [pool.submit(pow, 2, i) for i in range(5)]
    bad = pool.submit(divmod, 1, 0)
    assert [f.get(timeout=60) for f in futures] == [1, 2, 4, 8, 16]
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        bad.get(timeout=60)
    series = metrics.snapshot().pools["pool"]
    assert (series.submitted, series.completed, series.failed) == (6, 5, 1)
    # The latency histogram comes from the pool's per-task events (published while metrics listen).
    assert series.latency.count == 6 and 0 < series.latency.p50_s <= series.latency.max_s
