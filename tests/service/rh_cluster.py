"""Several ``rh-host serve`` processes on one database, each with its own data dir (as on machines of
their own): the nodes of a deployment, as the scale-out tests drive them. On SQLite they share one
database file outside every data dir (processes of one machine)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from rh_testserver import TEST_PLUGINS, Server, cleanup, public_tempdir, upload

from rh_host.service.db import make_engine


class Cluster:
    """Nodes on one database, each on its own data dir."""

    def __init__(self, root: Path, database_url: str | None) -> None:
        self.root = root
        self._url = database_url or f"sqlite:///{root / 'shared.db'}"
        self.nodes: list[Server] = []

    def node(self, *args: str, workers: int = 2) -> Server:
        data_dir = self.root / f"node{len(self.nodes)}"
        server = Server(data_dir, database_url=self._url, workers=workers, args=list(args))
        self.nodes.append(server)
        return server.start()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        engine = make_engine(self._url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params).all())
        finally:
            engine.dispose()

    def batch(self, batch_id: str) -> Any:
        return self.rows("SELECT * FROM batches WHERE batch_id = :b", b=batch_id)[0]

    def logs(self) -> str:
        return "\n".join(f"--- {n.log_path.name}\n{n.log()}" for n in self.nodes)


def new_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """Nodes on SQLite in the data dir, or on a fresh database of the test PostgreSQL (``request.param``)."""
    root = public_tempdir("rh-scale-")
    url = None
    if request.param == "postgresql":
        admin_url: str = request.getfixturevalue("postgres_url")
        name = f"s_{uuid.uuid4().hex[:12]}"
        admin = make_engine(admin_url)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    nodes = Cluster(root, url)
    try:
        yield nodes
    finally:
        for node in nodes.nodes:
            node.kill()
        cleanup(root)


def slow_tenant(server: Server, name: str, sleep_seconds: float, **quotas: int) -> httpx.Client:
    api = server.tenant(name, quotas or None)
    assert upload(api, TEST_PLUGINS / "slow_step").status_code == 201
    api.put("/v1/plugins/slow_step/config", json={"config": {"sleep_seconds": sleep_seconds}})
    return api


def wait_status(cluster: Cluster, batch_id: str, status: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = cluster.batch(batch_id)
        if row.status == status:
            return row
        time.sleep(0.05)
    raise AssertionError(f"{batch_id} never {status}: {cluster.batch(batch_id)}\n{cluster.logs()}")


def runs_of(cluster: Cluster, batch_id: str) -> int:
    sql = "SELECT count(*) FROM runs r JOIN batches b ON b.pk = r.batch_pk WHERE b.batch_id = :b"
    return cluster.rows(sql, b=batch_id)[0][0]
