"""SQLite store: one file, no server, the default backend."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from typing import Iterator

from laneway.errors import StoreError, VersionNotFound
from laneway.store._base import VersionInfo

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


class SQLiteStore:
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

    def put(self, namespace: str, key: str, value: bytes) -> None:
        self._execute(
            "INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            (namespace, key, value),
        )

    def get(self, namespace: str, key: str) -> bytes | None:
        row = self._execute("SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, namespace: str, key: str) -> bool:
        return self._execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key)).rowcount > 0

    def items(self, namespace: str) -> list[tuple[str, bytes]]:
        rows = self._execute("SELECT key, value FROM kv WHERE namespace = ? ORDER BY seq", (namespace,)).fetchall()
        return [(k, bytes(v)) for k, v in rows]

    def append_version(self, namespace: str, key: str, value: bytes) -> int:
        with self.transaction():
            row = self._execute(
                "SELECT COALESCE(MAX(version), 0) FROM versions WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
            version = row[0] + 1
            self._execute(
                "INSERT INTO versions (namespace, key, version, ts, value) VALUES (?, ?, ?, ?, ?)",
                (namespace, key, version, time.time(), value),
            )
        return version

    def get_version(self, namespace: str, key: str, version: int | None = None) -> tuple[int, bytes]:
        if version is None:
            row = self._execute(
                "SELECT version, value FROM versions WHERE namespace = ? AND key = ? ORDER BY version DESC LIMIT 1",
                (namespace, key),
            ).fetchone()
        else:
            row = self._execute(
                "SELECT version, value FROM versions WHERE namespace = ? AND key = ? AND version = ?",
                (namespace, key, version),
            ).fetchone()
        if row is None:
            which = "any version" if version is None else f"version {version}"
            raise VersionNotFound(f"{namespace}/{key} has no {which}")
        return row[0], bytes(row[1])

    def history(self, namespace: str, key: str) -> list[VersionInfo]:
        rows = self._execute(
            "SELECT version, ts, length(value) FROM versions WHERE namespace = ? AND key = ? ORDER BY version",
            (namespace, key),
        ).fetchall()
        return [VersionInfo(v, ts, size) for v, ts, size in rows]

    def versioned_keys(self, namespace: str) -> list[str]:
        rows = self._execute(
            "SELECT key FROM versions WHERE namespace = ? AND version = 1 ORDER BY ts, key", (namespace,)
        ).fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
