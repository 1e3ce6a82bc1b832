"""Without psycopg, a cluster node is refused with the store's typed error naming the extra to install."""

from __future__ import annotations

import sys
from unittest import mock

import pytest

from laneway.cluster import ClusterNode
from laneway.errors import ConfigError
from laneway.store import POSTGRES_EXTRA


def test_a_cluster_node_without_psycopg_is_a_config_error_naming_the_extra():
    def never() -> None:
        raise AssertionError("nothing is built before psycopg is there")

    with mock.patch.dict(sys.modules, psycopg=None), pytest.raises(ConfigError) as info:
        ClusterNode("postgresql://u@nowhere/db", "n1", lanes=never, engine=never)
    assert "a cluster node needs psycopg 3" in str(info.value) and POSTGRES_EXTRA in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)
