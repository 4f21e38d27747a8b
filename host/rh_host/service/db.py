"""The database engine: SQLite (WAL) in the data directory by default, PostgreSQL by URL.

SQLite transactions begin IMMEDIATE: a deferred transaction that reads and then writes can fail with
SQLITE_BUSY at once instead of waiting, which concurrent workers and requests would hit. A connection
with the ``DEFERRED`` execution option only reads: its transaction is deferred and takes no lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ["DEFERRED", "current_revision", "head_revision", "make_engine", "migrate"]

_MIGRATIONS = Path(__file__).with_name("migrations")
DEFERRED = "rh_deferred"  # execution option of read-only connections
IDLE_IN_TRANSACTION_SECONDS = 10  # PostgreSQL ends a session that leaves a transaction open this long


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, pool_size=8, max_overflow=16, pool_timeout=60)
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # a node cut off (or frozen) in the middle of a transaction would hold its locks, and every other
    # node's claims behind them, until the server noticed; every transaction here is milliseconds long
    options = f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_SECONDS}s"
    return sa.create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True, connect_args={"options": options})


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # a 202 means the batch survives power loss
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN" if connection.get_execution_options().get(DEFERRED) else "BEGIN IMMEDIATE")


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; a no-op when it is already there."""
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()
