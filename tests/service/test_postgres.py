"""PostgreSQL: the core flow against a real server started from Debian's binaries, and the migrations
matching the schema on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, cleanup, outcome, public_tempdir, upload

from rh_host.service.db import current_revision, head_revision, make_engine, migrate
from rh_host.service.schema import metadata

pytestmark = pytest.mark.slow


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
            lines = (
                '{"id":"1","custom_id":"réq-ü","response":null,"error":{"code":"x","message":"échec ✓"}}\n'
                '{"id":"2","custom_id":"ok","response":{"status_code":200,"body":{}},"error":null}\n'
            )
            assert api.post("/v1/batches/pg-utf8", content=lines.encode()).status_code == 202
            assert outcome(api, "pg-utf8")["output"]["errors"][0]["custom_id"] == "réq-ü"
            engine = make_engine(postgres_url)
            try:  # the outcome is served as the bytes stored, non-ASCII text included
                with engine.connect() as conn:
                    for batch_id in ("pg-1", "pg-utf8"):
                        stored = conn.execute(
                            sa.text(
                                "SELECT o.outcome FROM outcomes o JOIN batches b ON b.pk = o.batch_pk"
                                " WHERE b.batch_id = :b"
                            ),
                            {"b": batch_id},
                        ).scalar_one()
                        assert api.get(f"/v1/batches/{batch_id}/outcome").content == stored.encode()
                assert api.get("/v1/batches/pg-1").json()["success"] is True
            finally:
                engine.dispose()
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
