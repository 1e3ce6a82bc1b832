"""``open_store`` and ``Orchestrator(store=...)``: every accepted form opens the right store; anything else is refused."""

from __future__ import annotations

import pytest

from laneway import Orchestrator
from laneway.errors import ConfigError
from laneway.store import PostgresStore, SQLiteStore, open_store


def test_a_path_opens_sqlite(tmp_path):
    store = open_store(str(tmp_path / "a.db"))
    try:
        assert isinstance(store, SQLiteStore) and store.path == str(tmp_path / "a.db")
    finally:
        store.close()
    assert (tmp_path / "a.db").exists()
    pathlike = open_store(tmp_path / "b.db")
    pathlike.close()
    assert (tmp_path / "b.db").exists()


def test_a_sqlite_url_opens_that_file(tmp_path):
    store = open_store(f"sqlite://{tmp_path}/state.db")  # sqlite:///ABSOLUTE/PATH
    try:
        store.put("ns", "k", b"v")
        assert store.path == f"{tmp_path}/state.db"
    finally:
        store.close()
    assert (tmp_path / "state.db").exists() and not (tmp_path / "sqlite:").exists()


def test_sqlite_memory_url():
    store = open_store("sqlite:///:memory:")
    try:
        assert isinstance(store, SQLiteStore) and store.path == ":memory:"
    finally:
        store.close()


def test_a_store_passes_through_and_none_is_none():
    store = SQLiteStore(":memory:")
    try:
        assert open_store(store) is store
    finally:
        store.close()
    assert open_store(None) is None


def test_postgres_urls_open_postgres(monkeypatch):
    opened = []
    monkeypatch.setattr(PostgresStore, "__init__", lambda self, dsn: opened.append(dsn))
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        assert isinstance(open_store(url), PostgresStore)
    assert opened == ["postgresql://u@h/db", "postgres://u@h/db"]


@pytest.mark.parametrize(
    "spec", ["nonsense://x", "redis://localhost/0", "mysql://u@h/db", "sqlite://host/x.db", "sqlite:///x.db?mode=ro",
             "sqlite://", "", 42]
)  # fmt: skip
def test_anything_else_is_a_config_error_naming_the_accepted_forms(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a spec wrongly taken for a path would create a file here
    with pytest.raises(ConfigError) as info:
        open_store(spec)
    assert "sqlite:///" in str(info.value) and "postgresql://" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_the_orchestrator_takes_every_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="nonsense"):
        Orchestrator(name="bad", store="nonsense://x")
    assert list(tmp_path.iterdir()) == []
    with Orchestrator(name="url", store=f"sqlite://{tmp_path}/o.db") as orch:
        assert isinstance(orch.store, SQLiteStore) and orch.store.path == f"{tmp_path}/o.db"
    with Orchestrator(name="mem", store="sqlite:///:memory:") as orch:
        assert orch.store.path == ":memory:"
