"""``open_store``: one place that turns what a user passes as ``store=`` into a :class:`Store`."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from laneway.errors import ConfigError
from laneway.store._base import Store

#: A URL's scheme: letters first, then letters, digits, ``+ - .``; two or more
#: characters, so that ``C://x`` (a drive letter) stays a path.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")

ACCEPTED = (
    "a Store instance, a SQLite file path, 'sqlite:///ABSOLUTE/PATH', 'sqlite:///:memory:', "
    "or a 'postgresql://' / 'postgres://' URL"
)


def open_store(spec: Store | str | os.PathLike[str] | None) -> Store | None:
    """Open the store ``spec`` names.

    Args:
        spec: a :class:`Store` (returned as is); a file path (SQLite, created if
            missing); ``sqlite:///ABSOLUTE/PATH`` or ``sqlite:///:memory:``;
            ``postgresql://...`` or ``postgres://...`` (:class:`PostgresStore`,
            needs ``laneway[postgres]``); or None for no durable store.

    Returns:
        The open store, or None when ``spec`` is None.

    Raises:
        ConfigError: ``spec`` is a URL of another scheme, a malformed
            ``sqlite:`` URL, or neither a Store, a path nor a string.
        StoreError: the store could not be opened.

    Example:
        >>> from laneway.store import open_store
        >>> open_store("sqlite:///:memory:").path
        ':memory:'
        >>> open_store("redis://localhost/0")
        Traceback (most recent call last):
        ...
        laneway.errors.ConfigError: unsupported store URL scheme 'redis' in 'redis://localhost/0'; ...
    """
    if spec is None:
        return None
    if isinstance(spec, Store):
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise ConfigError(f"store must be {ACCEPTED}; got {type(spec).__name__} {spec!r}")
    match = _URL.match(spec)
    if match is None:
        if not spec:
            raise ConfigError(f"store must be {ACCEPTED}; got an empty string")
        from laneway.store._sqlite import SQLiteStore

        return SQLiteStore(spec)
    scheme = match.group(1).lower()
    if scheme in ("postgresql", "postgres"):
        from laneway.store._postgres import PostgresStore

        return PostgresStore(spec)
    if scheme == "sqlite":
        from laneway.store._sqlite import SQLiteStore

        return SQLiteStore(_sqlite_path(spec))
    raise ConfigError(f"unsupported store URL scheme {scheme!r} in {spec!r}; a store is {ACCEPTED}")


def _sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///...`` URL (``:memory:`` for the in-memory database)."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc or parts.query or parts.fragment or path in ("", "/"):
        raise ConfigError(
            f"a SQLite store URL has no host, query or fragment; got {url!r}; a store is {ACCEPTED}"
        )
    return ":memory:" if path == "/:memory:" else path
