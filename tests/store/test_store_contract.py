"""The Store protocol, run against every backend: SQLite always; PostgreSQL at LANEWAY_PG_DSN, or on a private server when one is installed."""

import threading

import pytest

from laneway import Orchestrator
from laneway.errors import ConfigError, StoreError, VersionNotFound
from laneway.store import PostgresStore, Store
from laneway.workflow import TaskDefinition, WorkflowState


def test_is_a_store(store):
    assert isinstance(store, Store)


def test_key_value_rows_keep_first_insertion_order(store):
    store.put("ns", "b", b"1")
    store.put("ns", "a", b"2")
    store.put("other", "a", b"x")
    store.put("ns", "b", b"3")  # replacing keeps b's position
    assert store.items("ns") == [("b", b"3"), ("a", b"2")]
    assert store.get("ns", "b") == b"3" and store.get("ns", "zzz") is None
    assert store.delete("ns", "b") is True and store.delete("ns", "b") is False
    assert store.items("ns") == [("a", b"2")] and store.items("other") == [("a", b"x")]


def test_binary_values_round_trip(store):
    blob = bytes(range(256)) * 10
    store.put("ns", "bin", blob)
    store.append_version("v", "bin", blob)
    assert store.get("ns", "bin") == blob and store.get_version("v", "bin") == (1, blob)


def test_versions_number_from_one_and_are_all_kept(store):
    assert [store.append_version("wf", "x", f"v{i}".encode()) for i in range(1, 4)] == [1, 2, 3]
    store.append_version("wf", "y", b"only")
    assert store.get_version("wf", "x") == (3, b"v3")
    assert store.get_version("wf", "x", 1) == (1, b"v1")
    assert [(h.version, h.size) for h in store.history("wf", "x")] == [(1, 2), (2, 2), (3, 2)]
    assert store.versioned_keys("wf") == ["x", "y"]
    assert store.history("wf", "nope") == [] and store.versioned_keys("empty") == []
    with pytest.raises(VersionNotFound):
        store.get_version("wf", "x", 4)
    with pytest.raises(VersionNotFound):
        store.get_version("wf", "nope")


def test_transaction_commits_together_or_not_at_all(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.put("ns", "a", b"1")
            with store.transaction():  # re-entrant
                store.append_version("v", "k", b"1")
            raise RuntimeError("abort")
    assert store.get("ns", "a") is None and store.history("v", "k") == []
    with store.transaction():
        store.put("ns", "a", b"1")
        store.append_version("v", "k", b"1")
    assert store.get("ns", "a") == b"1" and store.get_version("v", "k") == (1, b"1")


def test_concurrent_appends_get_distinct_versions(store):
    errors = []

    def worker(n):
        try:
            for i in range(20):
                store.append_version("v", "shared", f"{n}-{i}".encode())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert [h.version for h in store.history("v", "shared")] == list(range(1, 81))


def test_closed_store_raises_store_error(store):
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.put("ns", "a", b"1")


def test_workflow_engine_runs_on_the_store(store):
    with Orchestrator(name="store-wf", store=store) as orch:
        engine = orch.workflows
        engine.register_executor("ok", lambda ctx: ctx.task_id.upper())
        wf = engine.create_workflow(
            [TaskDefinition("a", agent_type="ok"), TaskDefinition("b", agent_type="ok", dependencies=["a"])]
        )
        status = wf.start().wait(30)
        assert status.state is WorkflowState.COMPLETED and status.results == {"a": "A", "b": "B"}
        assert wf.rollback(4).results == {"a": "A"}
    assert store.versioned_keys("workflow.states") == [wf.id]


def test_postgres_store_without_a_server_fails_typed():
    with pytest.raises(ConfigError, match="table_prefix"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none", table_prefix="bad-prefix;")
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")



def test_orchestrator_opens_a_store_from_a_path_or_url_and_closes_it_at_shutdown(store_location):
    with Orchestrator(name="store-by-name", store=store_location) as orch:
        orch.dead_letters.put("test", "kept", work_id="w1")
        store = orch.store
    assert store._closed, "a store the orchestrator opened is closed at shutdown"
    with Orchestrator(name="store-again", store=store_location) as orch:
        assert [x.work_id for x in orch.dead_letters.list("test")] == ["w1"]


def test_orchestrator_refuses_a_store_it_cannot_use():
    with pytest.raises(ConfigError, match="postgresql://.*; got int 42"):
        Orchestrator(name="bad-store", store=42)
