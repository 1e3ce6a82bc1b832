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

from typing import TYPE_CHECKING, Any

from laneway.store._base import Store, VersionInfo
from laneway.store._open import open_store

if TYPE_CHECKING:
    from laneway.store._postgres import PostgresStore
    from laneway.store._psycopg import POSTGRES_EXTRA, import_psycopg
    from laneway.store._sqlite import SQLiteStore

__all__ = ["POSTGRES_EXTRA", "PostgresStore", "SQLiteStore", "Store", "VersionInfo", "import_psycopg", "open_store"]


def __getattr__(name: str) -> Any:
    # sqlite3 loads with the first SQLite store, and the PostgreSQL store's modules (not psycopg
    # itself, which loads only when one is created) with the first use of their names, as
    # open_store loads either for its URL: a program that keeps no durable state, such as one
    # that only runs a pool, loads neither.
    module: Any
    if name == "SQLiteStore":
        from laneway.store import _sqlite as module
    elif name == "PostgresStore":
        from laneway.store import _postgres as module
    elif name in ("POSTGRES_EXTRA", "import_psycopg"):
        from laneway.store import _psycopg as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, including those loaded on first use (PEP 562)."""
    return sorted(set(globals()) | set(__all__))
