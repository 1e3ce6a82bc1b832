"""The app the cluster tests' node processes serve (``laneway serve --app tests.cluster.cluster_app``).

Every run of a tool or workflow step records a side effect (key, node, pid)
in tables of the test database, so the test can count how often each ran and
where. ``CLUSTER_TEST_STEP_S`` sets how long each run takes.
"""

from __future__ import annotations

import os
import threading
import time

import psycopg

_local = threading.local()

EFFECTS = """
CREATE TABLE IF NOT EXISTS test_effects (key TEXT NOT NULL, node TEXT NOT NULL, at TIMESTAMPTZ DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS test_step_effects (key TEXT NOT NULL, node TEXT NOT NULL, attempt INT NOT NULL,
    resumed_from INT, at TIMESTAMPTZ DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS test_once (key TEXT PRIMARY KEY, node TEXT NOT NULL);
"""


def _conn(dsn: str) -> psycopg.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(dsn, autocommit=True)
    return conn


def setup(orch):
    dsn = orch.store.dsn
    node = orch.name.removeprefix("node-")
    step_s = float(os.environ.get("CLUSTER_TEST_STEP_S", "0.005"))

    def work(key: str, n: int) -> int:
        time.sleep(step_s)
        _conn(dsn).execute("INSERT INTO test_effects (key, node) VALUES (%s, %s)", (key, node))
        return n * 2

    def step(ctx):
        # A checkpoint half way: an adopting node resumes from it.
        start = ctx.resume_state or 0
        if not ctx.has_checkpoint:
            time.sleep(step_s)
            ctx.checkpoint(1)
        time.sleep(step_s)
        conn = _conn(dsn)
        conn.execute("INSERT INTO test_step_effects (key, node, attempt, resumed_from) VALUES (%s, %s, %s, %s)",
                     (ctx.idempotency_key, node, ctx.attempt, start))
        # The exactly-once-in-effect pattern: the idempotency key guards the effect.
        conn.execute("INSERT INTO test_once (key, node) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                     (ctx.idempotency_key, node))
        return sum(ctx.dependency_results.values()) + ctx.payload

    orch.lanes.tools.register(work, name="work")
    return {"step": step}
