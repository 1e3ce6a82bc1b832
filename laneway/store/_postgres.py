"""PostgreSQL store (optional): the same :class:`~laneway.store.Store` protocol on a server.

Needs psycopg 3 (``pip install "laneway[postgres]"``); psycopg is imported
only when a :class:`PostgresStore` is created, so ``import laneway.store``
works without it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from typing import Any, Iterator

from laneway.errors import ConfigError, StoreError, StoreFenced
from laneway.store._psycopg import import_psycopg
from laneway.store._sql import SqlStore

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}kv (
    seq BIGSERIAL PRIMARY KEY,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    UNIQUE (namespace, key)
);
CREATE TABLE IF NOT EXISTS {p}versions (
    seq BIGSERIAL,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (namespace, key, version)
);
"""


class PostgresStore(SqlStore):
    """A :class:`~laneway.store.Store` in PostgreSQL tables (``<prefix>kv``, ``<prefix>versions``).

    One connection is shared under a lock, like :class:`SQLiteStore`; writes
    commit before returning. Appending a version takes a transaction-scoped
    advisory lock on the key, so several processes can append to the same
    store without racing for version numbers. A connection lost between
    transactions is re-opened once before the call fails.

    Args:
        dsn: a libpq connection string or URL, e.g. ``"postgresql://user@host/db"``.
        table_prefix: prefix of the two tables (letters, digits, ``_``), to keep
            several systems apart in one database.

    Example:
        >>> store = PostgresStore("postgresql://laneway@localhost/laneway")   # doctest: +SKIP
        >>> store.append_version("workflow.states", "wf-1", b"{}")           # doctest: +SKIP
        1
    """

    def __init__(self, dsn: str, *, table_prefix: str = "laneway_") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table_prefix):
            raise ConfigError(f"table_prefix must be letters, digits and '_', got {table_prefix!r}")
        self._psycopg = import_psycopg("PostgresStore")
        self.dsn = dsn
        self.prefix = table_prefix
        self._lock = threading.RLock()
        self._depth = 0
        self._closed = False
        self._fence: tuple[str, tuple] | None = None
        self._use_tables(f"{table_prefix}kv", f"{table_prefix}versions", "%s")
        self._conn = self._connect()
        with self.transaction():
            # Concurrent CREATE TABLE IF NOT EXISTS races in PostgreSQL (a duplicate pg_type row)
            # when several processes open the same store at once: serialise it.
            self._execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.prefix}schema",))
            self._execute(_SCHEMA.format(p=self.prefix))

    def __repr__(self) -> str:
        info = self._conn.info
        return f"<PostgresStore {self.prefix}* on {info.host}:{info.port}/{info.dbname}>"

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self.dsn, autocommit=True)
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("PostgreSQL store is closed")

    def _execute(self, sql: str, args: tuple = ()) -> Any:
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(sql, args)
            except self._psycopg.OperationalError as exc:
                if self._depth or not (self._conn.closed or self._conn.broken):
                    raise StoreError(f"PostgreSQL store: {exc}") from exc
                log.warning("PostgreSQL connection lost (%s); reconnecting", exc)
                self._conn = self._connect()
                try:
                    return self._conn.execute(sql, args)
                except self._psycopg.Error as again:
                    raise StoreError(f"PostgreSQL store: {again}") from again
            except self._psycopg.Error as exc:
                raise StoreError(f"PostgreSQL store: {exc}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            outer = self._depth == 0
            if outer:
                self._execute("BEGIN")
            self._depth += 1
            try:
                if outer and self._fence is not None:
                    self._check_fence()
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._execute("COMMIT")

    def set_fence(self, query: str | None, args: tuple = ()) -> None:
        """Check a fencing token in the same transaction as every write from now on.

        Each write (``put``, ``delete``, ``append_version``, and every outermost
        :meth:`transaction`) first runs ``query`` with ``args``; when it returns no
        row, the transaction rolls back and the write raises
        :class:`~laneway.errors.StoreFenced`. The query should lock what it reads
        (``FOR SHARE``), so that whoever revokes the token waits for, or is
        waited on by, a commit in flight. None removes the fence.

        Example:
            >>> store.set_fence("SELECT 1 FROM leases WHERE node = %s AND epoch = %s FOR SHARE",
            ...                 ("n1", 3))                                             # doctest: +SKIP
        """
        with self._lock:
            self._fence = None if query is None else (query, tuple(args))

    def _check_fence(self) -> None:
        query, args = self._fence  # type: ignore[misc]
        if self._execute(query, args).fetchone() is None:
            raise StoreFenced(f"PostgreSQL store: the fencing check failed ({query!r} with {args!r} found no row); "
                              "this writer's lease was taken over, so nothing was written")

    def _write(self, sql: str, args: tuple) -> Any:
        if self._fence is None:
            return self._execute(sql, args)
        with self.transaction():
            return self._execute(sql, args)

    def _serialise_append(self, namespace: str, key: str) -> None:
        # Appends from several processes would race for the next number; a hash collision only serialises more.
        self._execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{self.prefix}{namespace}/{key}",))

    def drop_tables(self) -> None:
        """Delete this store's two tables and everything in them (for tests and teardown)."""
        self._execute(f"DROP TABLE IF EXISTS {self.prefix}kv, {self.prefix}versions")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
