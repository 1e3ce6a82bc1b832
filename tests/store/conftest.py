import os
import uuid

import pytest

from laneway.store import PostgresStore, SQLiteStore

PG_DSN = os.environ.get("LANEWAY_PG_DSN")


def make_store(kind, tmp_path):
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "store.db")
    return PostgresStore(PG_DSN, table_prefix=f"t{uuid.uuid4().hex[:10]}_")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgres",
            marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_DSN, reason="set LANEWAY_PG_DSN to test PostgreSQL")],
        ),
    ]
)
def store(request, tmp_path):
    s = make_store(request.param, tmp_path)
    yield s
    if isinstance(s, PostgresStore):
        if s._closed:
            s = PostgresStore(PG_DSN, table_prefix=s.prefix)
        s.drop_tables()
    s.close()
