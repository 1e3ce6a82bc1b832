"""The store interface every persistence backend implements."""

from __future__ import annotations

from typing import ContextManager, Protocol, runtime_checkable

import attrs


@attrs.frozen
class VersionInfo:
    """One version of a versioned record."""

    version: int
    ts: float  #: wall-clock seconds since the epoch when it was written (for humans, never for timeouts)
    size: int


@runtime_checkable
class Store(Protocol):
    """Durable records in named namespaces: plain key/value rows and versioned documents.

    Values are bytes; callers choose the encoding (JSON for records humans
    read, cloudpickle for commands with callables). A write returns only
    after it is committed, so it survives a SIGKILL of the writing process.
    Implementations are safe to call from many threads.
    """

    def put(self, namespace: str, key: str, value: bytes) -> None:
        """Insert or replace ``key``; a replaced key keeps its original position."""

    def get(self, namespace: str, key: str) -> bytes | None:
        """The value, or None."""

    def delete(self, namespace: str, key: str) -> bool:
        """Remove ``key``; True if it was there."""

    def items(self, namespace: str) -> list[tuple[str, bytes]]:
        """Every (key, value) of the namespace in first-insertion order."""

    def append_version(self, namespace: str, key: str, value: bytes) -> int:
        """Store a new version of ``key``; returns its number (1, 2, ...)."""

    def get_version(self, namespace: str, key: str, version: int | None = None) -> tuple[int, bytes]:
        """A version of ``key`` (the latest when None). Raises VersionNotFound."""

    def history(self, namespace: str, key: str) -> list[VersionInfo]:
        """Every version of ``key``, oldest first."""

    def versioned_keys(self, namespace: str) -> list[str]:
        """Keys that have at least one version, in order of their first version."""

    def transaction(self) -> ContextManager[None]:
        """Group writes so they commit together or not at all (re-entrant in one thread)."""

    def close(self) -> None:
        """Release connections; further calls raise StoreError."""
