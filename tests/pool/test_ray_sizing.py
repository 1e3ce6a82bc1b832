"""The Ray backend sizes a pool to the cluster: no worker left "starting" forever for lack of CPUs."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("ray", reason="the Ray backend needs the ray extra: pip install 'laneway[ray]'")

from laneway import Orchestrator  # noqa: E402

from . import tasks  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.multiprocess]


@pytest.mark.timeout(180)
def test_more_workers_than_cpus_sizes_the_pool_to_the_cluster_with_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="laneway.pool")
    with Orchestrator(name="ray-sizing", ask_timeout=60) as orch:
        with orch.events.subscribe("pool.resized") as resized:
            pool = orch.start_pool(backend="ray", workers=4, num_cpus=2)  # the backend's own local Ray
            assert (pool.min_workers, pool.max_workers) == (2, 2)
            assert resized.get(timeout=5).data == {"asked": 4, "capacity": 2}
        assert any("room for 2 worker(s) (2 CPUs, 1 per worker)" in r.getMessage() and "workers=4" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
        assert pool.wait_ready(timeout=120)  # waits for the 2 that can start, not for 4
        stats = pool.statistics()
        assert (stats.workers, stats.starting) == (2, 0)
        assert pool.submit(tasks.inc, 1).result(timeout=60) == 2
        orch.shutdown(timeout=15)
