"""Alembic environment: the service passes an open connection; no alembic.ini is needed."""

from __future__ import annotations

from alembic import context

from rh_host.service.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("rh-host migrations run through rh_host.service.db.migrate(), which passes a connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
