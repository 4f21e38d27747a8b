"""A real ``rh-host serve`` per test module, and a tenant with the echo plugin for each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from rh_testserver import Server, cleanup, client, public_tempdir, upload

PLUGINS = Path(__file__).resolve().parent / "plugins"
_tenants = count()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    root = public_tempdir("rh-client-test-")
    srv = Server(root / "data").start()
    try:
        yield srv
    finally:
        srv.stop()
        cleanup(root)


@pytest.fixture
def key(server: Server) -> str:
    """A fresh tenant's key; the tenant has the echo_batch plugin active."""
    _, api_key = server.create_tenant(f"client-{next(_tenants)}")
    with client(server.url, api_key) as api:
        response = upload(api, PLUGINS / "echo_batch", activate="true")
    assert response.status_code == 201, response.text
    return api_key
