import uuid

import pytest

from laneway.store import PostgresStore, SQLiteStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "store.db")
        yield s
        s.close()
        return
    dsn = request.getfixturevalue("pg_dsn")
    s = PostgresStore(dsn, table_prefix=f"t{uuid.uuid4().hex[:10]}_")
    yield s
    if s._closed:
        s = PostgresStore(dsn, table_prefix=s.prefix)
    s.drop_tables()
    s.close()
