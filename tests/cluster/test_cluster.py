"""Several orchestrator nodes on one PostgreSQL database: real node processes (``laneway serve``), real SIGKILL/SIGSTOP.

The issue's shape (3 nodes, 2,000 commands, 30 workflows) runs in the
``slow``-marked test; the default run scales the counts down (``SCALE``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from laneway import Orchestrator
from laneway.errors import ConfigError, NodeNameTaken
from laneway.workflow import TaskDefinition

from tests.waiting import wait_until

from .cluster_app import EFFECTS

pytestmark = [pytest.mark.postgres, pytest.mark.multiprocess]

ROOT = Path(__file__).resolve().parents[2]
LEASE = 2.0  # short leases keep the failover tests quick; the default is 3 s
SCALE = {"commands": 400, "workflows": 8}
FULL = {"commands": 2000, "workflows": 30}


class Nodes:
    """Node processes started with ``laneway serve``, stopped at the end whatever happened."""

    def __init__(self, url: str, tmp: Path, step_s: float = 0.005) -> None:
        self.url, self.tmp, self.step_s = url, tmp, step_s
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *extra: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CLUSTER_TEST_STEP_S": str(self.step_s)}
        out = open(self.tmp / f"{name}.out", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "laneway", "serve", "--store", self.url, "--node", name,
             "--app", "tests.cluster.cluster_app", "--lease", str(LEASE), "--poll", "2", *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        return (self.tmp / f"{name}.out").read_text()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def db(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(EFFECTS)
    return pg_database


@pytest.fixture
def nodes(db, tmp_path):
    n = Nodes(db, tmp_path)
    yield n
    n.stop_all()


def query(url, sql, args=()):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def alive(url, names):
    try:
        rows = query(url, "SELECT node FROM laneway_cluster_nodes WHERE alive AND lease_until > clock_timestamp()")
    except psycopg.errors.UndefinedTable:
        return False  # no node has created the schema yet
    return set(names) <= {r[0] for r in rows}


def client(url, **options):
    """The test process as a client node: it submits and reads results, and runs nothing."""
    orch = Orchestrator("client", store=url, node="client", handle_signals=False)
    orch.lanes.tools.register(lambda key, n: n, name="work")  # the same tool name, to check parameters here
    orch.start_cluster(claim=False, lease_s=LEASE, **options)
    return orch


def kill_when(url, proc, done_at, total):
    wait_until(lambda: query(
        url, "SELECT count(*) FROM laneway_cluster_commands WHERE state = 'done'")[0][0] >= done_at, 120, what=f"{done_at} commands finished")
    killed_at = query(url, "SELECT clock_timestamp()")[0][0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return killed_at


def run_failover(db, nodes, counts):
    names = ["n1", "n2", "n3"]
    procs = [nodes.start(n) for n in names]
    wait_until(lambda: alive(db, names), 60, what="3 nodes joined")
    orch = client(db)
    try:
        n_cmd, n_wf = counts["commands"], counts["workflows"]
        handles = [orch.cluster.submit("query", "work", {"key": f"k{i}", "n": i}, command_id=f"k{i}",
                                       caller=f"c{i % 3}") for i in range(n_cmd)]
        flows = [orch.cluster.submit_workflow([
            TaskDefinition("a", agent_type="step", payload=1),
            TaskDefinition("b", agent_type="step", payload=2, dependencies=["a"]),
            TaskDefinition("c", agent_type="step", payload=3, dependencies=["b"]),
        ], workflow_id=f"wf{j}") for j in range(n_wf)]
        killed = {"n1": kill_when(db, procs[0], n_cmd // 3, n_cmd)}
        killed["n2"] = kill_when(db, procs[1], 2 * n_cmd // 3, n_cmd)
        results = [h.result(timeout=120) for h in handles]
        statuses = [f.wait(timeout=120) for f in flows]
        # A killed node that held nothing any more is still declared dead once its lease runs out.
        wait_until(lambda: {"n1", "n2"} <= {r[0] for r in query(
            db, "SELECT node FROM laneway_cluster_adoptions")}, 30, what="both killed nodes adopted")
    finally:
        orch.shutdown()
    return handles, results, flows, statuses, killed


def check_failover(db, counts, handles, results, statuses, killed):
    n_cmd, n_wf = counts["commands"], counts["workflows"]
    # Every command accounted for: each result right, each record finished exactly once.
    assert results == [2 * i for i in range(n_cmd)]
    rows = query(db, "SELECT state, count(*) FROM laneway_cluster_commands GROUP BY state")
    assert rows == [("done", n_cmd)]
    # Each ran at least once; a second run only where an earlier one was on a killed node (in flight there).
    # (A node declared dead counts as killed: on this loaded machine a starved heartbeat can lose a lease.)
    adopted = dict(query(db, "SELECT node, min(adopted_at) FROM laneway_cluster_adoptions GROUP BY node"))
    assert set(killed) <= set(adopted)
    effects = query(db, "SELECT key, array_agg(node ORDER BY at) FROM test_effects GROUP BY key")
    assert len(effects) == n_cmd
    for key, runs in effects:
        assert set(runs[:-1]) <= set(adopted), (key, runs)
    # Every workflow completed; no completed step ran again (re-runs only of steps in flight on a killed node).
    assert [s.state.value for s in statuses] == ["completed"] * n_wf
    assert all(s.results == {"a": 1, "b": 3, "c": 6} for s in statuses)
    steps = query(db, "SELECT key, array_agg(node ORDER BY at) FROM test_step_effects GROUP BY key")
    assert len(steps) == 3 * n_wf
    for key, runs in steps:
        assert set(runs[:-1]) <= set(adopted), (key, runs)
    # The idempotency key made each step's guarded effect exactly-once.
    assert query(db, "SELECT count(*) FROM test_once")[0][0] == 3 * n_wf
    # How long adoption took (SIGKILL to adopted) is reported.
    for name, at in killed.items():
        print(f"failover of {name}: adopted {(adopted[name] - at).total_seconds():.2f}s after SIGKILL "
              f"(lease {LEASE}s)")


@pytest.mark.chaos
@pytest.mark.timeout(150)
def test_commands_and_workflows_complete_through_two_sigkills(db, nodes):
    handles, results, flows, statuses, killed = run_failover(db, nodes, SCALE)
    check_failover(db, SCALE, handles, results, statuses, killed)


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_issue_shape_2000_commands_30_workflows_two_sigkills(db, nodes):
    handles, results, flows, statuses, killed = run_failover(db, nodes, FULL)
    check_failover(db, FULL, handles, results, statuses, killed)


@pytest.mark.chaos
@pytest.mark.timeout(120)
def test_a_paused_node_commits_nothing_after_its_lease_is_taken(db, tmp_path):
    nodes = Nodes(db, tmp_path, step_s=0.4)
    try:
        nodes.start("a")
        b = nodes.start("b")
        wait_until(lambda: alive(db, ["a", "b"]), 60, what="2 nodes joined")
        orch = client(db)
        try:
            handles = [orch.cluster.submit("query", "work", {"key": f"k{i}", "n": i}, command_id=f"k{i}")
                       for i in range(60)]
            wait_until(lambda: query(
                db, "SELECT count(*) FROM laneway_cluster_commands WHERE state = 'running' AND owner = 'b'")[0][0], 30, what="b running commands")
            os.kill(b.pid, signal.SIGSTOP)
            (epoch,) = query(db, "SELECT epoch FROM laneway_cluster_nodes WHERE node = 'b'")[0]
            held = wait_until(lambda: query(
                db, "SELECT adopted_at FROM laneway_cluster_adoptions WHERE node = 'b' AND epoch = %s", (epoch,)), 30, what="b's commands adopted")
            adopted_at = held[0][0]
            results = [h.result(timeout=60) for h in handles]
            os.kill(b.pid, signal.SIGCONT)
            # Back from the pause, b finds its lease gone and rejoins under a new epoch.
            wait_until(lambda: query(
                db, "SELECT 1 FROM laneway_cluster_nodes WHERE node = 'b' AND alive AND epoch > %s", (epoch + 1,)), 30, what="b rejoined")
        finally:
            orch.shutdown()
        b.terminate()
        assert b.wait(timeout=30) == 0
    finally:
        nodes.stop_all()
    assert results == [2 * i for i in range(60)]
    assert query(db, "SELECT state, count(*) FROM laneway_cluster_commands GROUP BY state") == [("done", 60)]
    # Fencing: nothing was committed under b's old epoch after the takeover...
    late = query(db, "SELECT id FROM laneway_cluster_commands WHERE finished_by = 'b' AND finished_epoch = %s "
                     "AND finished_at > %s", (epoch, adopted_at))
    assert late == []
    # ...though b did finish the runs it had in flight, and tried: its commits were refused.
    last = nodes.output("b").strip().splitlines()[-1]
    assert "lease_losses=1" in last, last
    fenced = int(last.split("fenced=")[1].split()[0])
    assert fenced >= 1, last


@pytest.mark.timeout(60)
def test_results_are_readable_from_any_node_and_claims_follow_priority_then_turns(db):
    # One worker node, running one command at a time, starts only after everything is queued.
    with client(db) as orch:
        h_low = [orch.cluster.submit("query", "work", {"key": f"low{i}", "n": i}, priority=4, caller="x")
                 for i in range(2)]
        h_x = [orch.cluster.submit("query", "work", {"key": f"x{i}", "n": i}, caller="x") for i in range(4)]
        h_y = [orch.cluster.submit("query", "work", {"key": f"y{i}", "n": i}, caller="y") for i in range(2)]
        h_sys = orch.cluster.submit("system", "work", {"key": "sys", "n": 0}, priority=4)
        with Orchestrator("node-w", store=db, node="w", handle_signals=False) as worker:
            from .cluster_app import setup

            worker.start_cluster(executors=setup(worker), lease_s=LEASE, max_inflight=1)
            assert [h.result(timeout=30) for h in h_x + h_y + h_low] == [0, 2, 4, 6, 0, 2, 0, 2]
            assert h_sys.result(timeout=30) == 0
            # Another node reads a result it neither submitted nor ran.
            assert worker.cluster.handle(h_y[1].command_id).result(timeout=10) == 2
    order = [r[0] for r in query(db, "SELECT key FROM test_effects ORDER BY at")]
    # The system lane first (lane priority beats command priority), then normal priority with
    # callers x and y taking turns, then the low-priority ones.
    assert order == ["sys", "x0", "y0", "x1", "y1", "x2", "x3", "low0", "low1"]


@pytest.mark.timeout(60)
def test_a_live_node_name_cannot_be_taken_and_node_needs_postgres(db, tmp_path):
    with client(db) as orch:
        other = Orchestrator("other", store=db, node="client", handle_signals=False)
        try:
            with pytest.raises(NodeNameTaken, match="'client' is held by a live node"):
                other.start_cluster(join_timeout=0.2)
        finally:
            other.shutdown()
        assert [n.node for n in orch.cluster.nodes() if n.alive] == ["client"]
    with pytest.raises(ConfigError, match="needs a PostgreSQL store"):
        Orchestrator("x", store=str(tmp_path / "s.db"), node="n")
    with Orchestrator("plain") as plain, pytest.raises(ConfigError, match="not a cluster node"):
        plain.cluster
