"""Persistence: SQLite by default (one file, no server); PostgreSQL optional (``laneway[postgres]``).

:func:`open_store` turns what ``Orchestrator(store=...)`` takes (a Store, a path,
a ``sqlite:///`` or ``postgresql://`` URL) into a store.

Example:
    >>> from laneway.store import SQLiteStore
    >>> store = SQLiteStore(":memory:")
    >>> store.append_version("workflows", "wf-1", b"{}")
    1
    >>> store.close()
"""

from laneway.store._base import Store, VersionInfo
from laneway.store._open import open_store
from laneway.store._postgres import PostgresStore  # psycopg is imported only when one is created
from laneway.store._sqlite import SQLiteStore

__all__ = ["PostgresStore", "SQLiteStore", "Store", "VersionInfo", "open_store"]
