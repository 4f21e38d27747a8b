"""Fixtures for tests that drive a real ``rh-host serve`` over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rh_testserver import Server, cleanup, public_tempdir


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
