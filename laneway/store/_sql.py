"""``SqlStore``: the :class:`~laneway.store.Store` operations written once for both SQL backends.

SQLite and PostgreSQL run the same statements but for the placeholder (``?``,
``%s``) and the table names (PostgreSQL's carry a prefix). What really differs
is left to the backend: its connection (``_execute``), how a write is fenced
(``_write``), how appends to one key serialise (``_serialise_append``) and the
``transaction`` itself.
"""

from __future__ import annotations

import time
from typing import Any, ContextManager

from laneway.errors import VersionNotFound
from laneway.store._base import VersionInfo

#: The statements, with ``{kv}``/``{versions}`` for the tables and ``?`` for each argument.
_STATEMENTS = {
    "put": "INSERT INTO {kv} (namespace, key, value) VALUES (?, ?, ?) "
           "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value",
    "get": "SELECT value FROM {kv} WHERE namespace = ? AND key = ?",
    "delete": "DELETE FROM {kv} WHERE namespace = ? AND key = ?",
    "items": "SELECT key, value FROM {kv} WHERE namespace = ? ORDER BY seq",
    "last_version": "SELECT COALESCE(MAX(version), 0) FROM {versions} WHERE namespace = ? AND key = ?",
    "add_version": "INSERT INTO {versions} (namespace, key, version, ts, value) VALUES (?, ?, ?, ?, ?)",
    "latest": "SELECT version, value FROM {versions} WHERE namespace = ? AND key = ? ORDER BY version DESC LIMIT 1",
    "version": "SELECT version, value FROM {versions} WHERE namespace = ? AND key = ? AND version = ?",
    "history": "SELECT version, ts, length(value) FROM {versions} WHERE namespace = ? AND key = ? ORDER BY version",
    "versioned_keys": "SELECT key FROM {versions} WHERE namespace = ? AND version = 1 ORDER BY {first_versions}",
}  # fmt: skip


class SqlStore:
    """Base of the SQL stores: ``put`` ... ``versioned_keys`` over the backend's connection.

    A subclass calls :meth:`_use_tables` in ``__init__`` and provides
    ``_execute``, ``transaction`` and, where it differs, ``_write`` and
    ``_serialise_append``.
    """

    #: ``ORDER BY`` that lists keys in the order of their first version.
    _FIRST_VERSIONS = "seq"

    def _use_tables(self, kv: str, versions: str, placeholder: str) -> None:
        self._sql = {
            name: text.format(kv=kv, versions=versions, first_versions=self._FIRST_VERSIONS).replace("?", placeholder)
            for name, text in _STATEMENTS.items()
        }

    def _execute(self, sql: str, args: tuple = ()) -> Any:
        raise NotImplementedError

    def transaction(self) -> ContextManager[None]:
        raise NotImplementedError

    def _write(self, sql: str, args: tuple) -> Any:
        """Run a write outside :meth:`append_version` (a backend that fences writes checks its fence here)."""
        return self._execute(sql, args)

    def _serialise_append(self, namespace: str, key: str) -> None:
        """Inside the append's transaction: make concurrent appends to ``key`` take turns (if the transaction does not)."""

    def put(self, namespace: str, key: str, value: bytes) -> None:
        self._write(self._sql["put"], (namespace, key, value))

    def get(self, namespace: str, key: str) -> bytes | None:
        row = self._execute(self._sql["get"], (namespace, key)).fetchone()
        return None if row is None else bytes(row[0])

    def delete(self, namespace: str, key: str) -> bool:
        return self._write(self._sql["delete"], (namespace, key)).rowcount > 0

    def items(self, namespace: str) -> list[tuple[str, bytes]]:
        rows = self._execute(self._sql["items"], (namespace,)).fetchall()
        return [(k, bytes(v)) for k, v in rows]

    def append_version(self, namespace: str, key: str, value: bytes) -> int:
        with self.transaction():
            self._serialise_append(namespace, key)
            version = self._execute(self._sql["last_version"], (namespace, key)).fetchone()[0] + 1
            self._execute(self._sql["add_version"], (namespace, key, version, time.time(), value))
        return version

    def get_version(self, namespace: str, key: str, version: int | None = None) -> tuple[int, bytes]:
        if version is None:
            row = self._execute(self._sql["latest"], (namespace, key)).fetchone()
        else:
            row = self._execute(self._sql["version"], (namespace, key, version)).fetchone()
        if row is None:
            which = "any version" if version is None else f"version {version}"
            raise VersionNotFound(f"{namespace}/{key} has no {which}")
        return row[0], bytes(row[1])

    def history(self, namespace: str, key: str) -> list[VersionInfo]:
        rows = self._execute(self._sql["history"], (namespace, key)).fetchall()
        return [VersionInfo(v, ts, size) for v, ts, size in rows]

    def versioned_keys(self, namespace: str) -> list[str]:
        rows = self._execute(self._sql["versioned_keys"], (namespace,)).fetchall()
        return [r[0] for r in rows]
