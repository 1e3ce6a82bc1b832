"""PostgresStore.set_fence: a fencing check in the same transaction as every write; concurrent opens."""

import threading

import psycopg
import pytest

from laneway.errors import StoreFenced
from laneway.store import PostgresStore

pytestmark = pytest.mark.postgres


def test_a_write_whose_fencing_check_fails_writes_nothing(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE lease (node TEXT, epoch INT)")
        conn.execute("INSERT INTO lease VALUES ('a', 1)")
        store = PostgresStore(pg_database)
        try:
            store.set_fence("SELECT 1 FROM lease WHERE node = %s AND epoch = %s FOR SHARE", ("a", 1))
            store.put("ns", "k", b"1")
            assert store.append_version("ns", "v", b"1") == 1
            conn.execute("UPDATE lease SET epoch = 2")  # the lease was taken over
            for write in (lambda: store.put("ns", "k", b"2"), lambda: store.delete("ns", "k"),
                          lambda: store.append_version("ns", "v", b"2")):
                with pytest.raises(StoreFenced, match="fencing check failed"):
                    write()
            assert store.get("ns", "k") == b"1" and store.get_version("ns", "v") == (1, b"1")
            store.set_fence(None)
            store.put("ns", "k", b"3")
            assert store.get("ns", "k") == b"3"
        finally:
            store.close()


def test_stores_opened_at_once_by_several_writers_all_open(pg_database):
    errors, stores = [], []

    def open_one():
        try:
            stores.append(PostgresStore(pg_database))
        except Exception as exc:  # the race used to raise a duplicate pg_type row
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s in stores:
        s.close()
    assert errors == [] and len(stores) == 6
