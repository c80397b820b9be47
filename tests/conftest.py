"""Fixtures every test layer may use: a real PostgreSQL for the shared journal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg_cluster import PgCluster, missing_binaries, start_cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL cluster for the session, on 127.0.70.1 and a free port, stopped
    (by its data directory) and removed at the end."""
    why = missing_binaries()
    if why is not None:
        pytest.skip(f"no PostgreSQL to test the shared journal with: {why}")
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of a new, empty database (a journal of its own for one test)."""
    return pg_cluster.create_database()
