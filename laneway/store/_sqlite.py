"""SQLite store: one file, no server, the default backend."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from typing import Iterator

from laneway.errors import StoreError
from laneway.store._sql import SqlStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    UNIQUE (namespace, key)
);
CREATE TABLE IF NOT EXISTS versions (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    ts REAL NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key, version)
);
"""


class SQLiteStore(SqlStore):
    """A :class:`~laneway.store.Store` in one SQLite file (WAL mode).

    WAL with ``synchronous=NORMAL`` makes every committed write survive a
    crash of the process (SIGKILL, OOM); only a power loss can lose the last
    transactions. One connection is shared under a lock: SQLite serialises
    writers anyway, and one connection keeps the file's locking simple.

    Args:
        path: the database file; ``":memory:"`` for a throwaway store.

    Example:
        >>> store = SQLiteStore(":memory:")
        >>> store.put("lanes.pending", "c1", b"...")
        >>> store.items("lanes.pending")
        [('c1', b'...')]
        >>> store.close()
    """

    _FIRST_VERSIONS = "ts, key"  # the versions table has no insertion counter here

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path!r}: {exc}") from exc
        self._lock = threading.RLock()
        self._depth = 0
        self._closed = False
        self._use_tables("kv", "versions", "?")

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path}>"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path!r} is closed")

    def _execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            self._check_open()
            try:
                return self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path!r}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
