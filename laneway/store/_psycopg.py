"""``import_psycopg``: the one import of the optional PostgreSQL driver, for the store and the cluster.

psycopg 3 comes with the ``postgres`` extra and is imported only when a
PostgreSQL store or a cluster node is made, so laneway works without it.
"""

from __future__ import annotations

from types import ModuleType

from laneway.errors import ConfigError

#: What to install for PostgreSQL support (the extra is declared in pyproject.toml).
POSTGRES_EXTRA = 'pip install "laneway[postgres]"'


def import_psycopg(needed_by: str) -> ModuleType:
    """Import psycopg 3, or say what to install.

    Args:
        needed_by: what needs it, for the message (``"PostgresStore"``, ``"a cluster node"``).

    Returns:
        The ``psycopg`` module.

    Raises:
        ConfigError: psycopg 3 is not installed; the message names the extra to install.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict("sys.modules", psycopg=None):  # as if it were not installed
        ...     import_psycopg("PostgresStore")
        Traceback (most recent call last):
        ...
        laneway.errors.ConfigError: PostgresStore needs psycopg 3, which is not installed: pip install "laneway[postgres]"
    """
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(f"{needed_by} needs psycopg 3, which is not installed: {POSTGRES_EXTRA}") from exc
    return psycopg
