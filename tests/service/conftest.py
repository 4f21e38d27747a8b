"""Fixtures for tests that drive a real ``rh-host serve`` over HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from rh_cluster import Cluster, new_cluster
from rh_testserver import Server, cleanup, public_tempdir

from tests.integrations.servers import postgres_bin, postgres_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """One service per test module (starting one costs ~2 s); tests create their own tenants."""
    root = public_tempdir("rh-service-test-")
    srv = Server(root / "data").start()
    try:
        yield srv
    finally:
        srv.stop()
        cleanup(root)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server from Debian's binaries, one per test session."""
    if postgres_bin() is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) or runuser not installed")
    with postgres_server("rh-service-pw") as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """``rh-host serve`` nodes sharing one data dir and one database (SQLite, or a fresh PostgreSQL one)."""
    yield from new_cluster(request)
