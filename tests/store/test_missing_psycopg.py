"""Without psycopg, a PostgreSQL store is refused with a typed error that names the extra to install."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from unittest import mock

import pytest

from laneway.errors import ConfigError
from laneway.store import POSTGRES_EXTRA, PostgresStore, import_psycopg, open_store

ROOT = Path(__file__).resolve().parents[2]


def test_the_extra_named_is_the_one_pyproject_declares():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert POSTGRES_EXTRA == 'pip install "laneway[postgres]"'
    assert any(dep.startswith("psycopg") for dep in extras["postgres"])


@pytest.mark.parametrize("make", [
    lambda: PostgresStore("postgresql://u@nowhere/db"),
    lambda: open_store("postgresql://u@nowhere/db"),
    lambda: import_psycopg("PostgresStore"),
], ids=["PostgresStore", "open_store", "import_psycopg"])
def test_no_psycopg_is_a_config_error_naming_the_extra(make):
    with mock.patch.dict(sys.modules, psycopg=None), pytest.raises(ConfigError) as info:
        make()
    assert "PostgresStore needs psycopg 3" in str(info.value) and POSTGRES_EXTRA in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)
