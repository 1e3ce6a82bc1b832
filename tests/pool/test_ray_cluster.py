"""The pool on a multi-node Ray cluster (simulated on this machine): a lost node is a worker failure."""

from __future__ import annotations

import time

import pytest

ray = pytest.importorskip("ray", reason="the Ray backend needs the ray extra: pip install 'laneway[ray]'")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from laneway import Orchestrator  # noqa: E402
from laneway.pool import WorkerState  # noqa: E402

from .conftest import wait_until  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.multiprocess, pytest.mark.chaos, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    # The head runs no workers, so each worker actor lands on a node of its own.
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        ray.init(address=c.address, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def slow_echo(i):
    time.sleep(0.05)
    return i


def test_lost_node_fails_its_worker_tasks_move_and_a_new_node_gets_the_replacement(cluster):
    first = cluster.add_node(num_cpus=1)
    second = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    with Orchestrator(name="ray-cluster") as orch:
        pool = orch.start_pool(backend="ray", address=cluster.address, workers=2, heartbeat_s=0.2)
        assert pool.wait_ready(2, timeout=120)
        nodes = {w.node for w in pool.workers()}
        assert nodes == {first.node_id, second.node_id}
        futures = [pool.submit(slow_echo, i) for i in range(80)]
        wait_until(lambda: pool.statistics().completed >= 10, 60, what="some progress")
        lost = orch.events.subscribe("pool.worker.lost")
        cluster.remove_node(second)
        # The second node's worker is gone; its task goes to the first node's worker.
        assert [f.get(timeout=120) for f in futures] == list(range(80))
        event = lost.get(timeout=30)
        assert "ray actor died" in event.data["reason"] and not event.data["planned"]
        stats = pool.statistics()
        assert stats.worker_deaths == 1 and stats.completed == 80
        third = cluster.add_node(num_cpus=1)  # room for the replacement actor
        wait_until(lambda: len([w for w in pool.workers() if w.state is WorkerState.IDLE]) == 2, 120,
                   what="the replacement worker on the new node")
        assert {w.node for w in pool.workers()} == {first.node_id, third.node_id}
