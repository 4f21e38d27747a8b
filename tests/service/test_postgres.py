"""PostgreSQL: the core flow against a real server started from Debian's binaries, and the migrations
matching the schema on both databases."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, cleanup, free_port, outcome, public_tempdir, upload

from rh_host.service.db import current_revision, head_revision, make_engine, migrate
from rh_host.service.schema import metadata

PG_BIN = Path("/usr/lib/postgresql/15/bin")
pytestmark = pytest.mark.slow


def _pg_user() -> str | None:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "postgres").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)")
    user = _pg_user() if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="rh-pg-"))
    root.chmod(0o755)
    as_user = ["runuser", "-u", user, "--"] if user else []
    if user:
        shutil.chown(root, user)
    data, port = root / "data", free_port()
    subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "rh", "--no-sync"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(
        [*as_user, str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(root),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    url = f"postgresql://rh@127.0.0.1:{port}/postgres"
    try:
        engine = make_engine(url)
        deadline = time.monotonic() + 60
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("select 1"))
                break
            except sa.exc.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError((root / "postgres.log").read_text()) from None
                time.sleep(0.2)
        engine.dispose()
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _assert_migrations_match_schema(engine: sa.Engine) -> None:
    migrate(engine)
    migrate(engine)  # a second run is a no-op
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrations_match_the_schema_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        _assert_migrations_match_schema(engine)
    finally:
        engine.dispose()


def test_migrations_match_the_schema_on_postgres(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        _assert_migrations_match_schema(engine)
    finally:
        engine.dispose()


def test_core_flow_on_postgres(postgres_url: str) -> None:
    root = public_tempdir("rh-pg-service-")
    server = Server(root / "data", database_url=postgres_url).start()
    try:
        with server.tenant("pg-tenant") as api, server.tenant("pg-other") as other:
            for directory in SAMPLE_PLUGINS:
                assert upload(api, directory).status_code == 201
            assert api.post("/v1/batches/pg-1", content=OPENAI.read_bytes()).status_code == 202
            assert api.post("/v1/batches/pg-1", content=OPENAI.read_bytes()).json()["duplicate"] is True
            result = outcome(api, "pg-1")
            assert result["success"] is True and result["output"]["total"] == 8
            assert len(result["handlers"]) == 3
            assert len(api.get("/v1/batches/pg-1/runs").json()) == 3
            assert other.get("/v1/batches/pg-1").status_code == 404
            with ThreadPoolExecutor(6) as pool:  # concurrent identical posts: one insert wins, none fails
                answers = list(
                    pool.map(lambda _: api.post("/v1/batches/pg-race", content=OPENAI.read_bytes()), range(6))
                )
            assert [a.status_code for a in answers] == [202] * 6
            assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 5
            assert other.get("/v1/plugins/stats_summary").status_code == 404
        assert not (root / "data" / "rh-host.db").exists()  # everything went to PostgreSQL
        # the data survives a restart of the service
        server.stop()
        server.start()
        with server.operator() as op:
            assert sorted(t["name"] for t in op.get("/v1/tenants").json()) == ["pg-other", "pg-tenant"]
    finally:
        server.stop()
        cleanup(root)
