"""Waking the worker nodes of other processes when a batch is queued: PostgreSQL's LISTEN/NOTIFY.

Storing a batch sends ``NOTIFY rh_batch_queued`` in its transaction (delivered at commit); every
worker node listens on a connection of its own and wakes its pool at once instead of at its next
poll (1 s). A notification lost while the listener reconnects costs at most that poll. SQLite has no
such channel: processes sharing a SQLite file find new batches by polling (a worker in the same
process as the intake is woken directly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
import sqlalchemy as sa

from rh_host.service.background import BackgroundThread

__all__ = ["CHANNEL", "QueueListener", "announce"]

CHANNEL = "rh_batch_queued"
_log = logging.getLogger("rh.service.wakeup")
_RECONNECT_SECONDS = 1.0
_CHECK_STOP_SECONDS = 0.5


def announce(conn: sa.Connection) -> None:
    """In a transaction that queues a batch: tell the listening workers at its commit."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


class QueueListener(BackgroundThread):
    """A thread on its own PostgreSQL connection that calls ``wake`` for each queued batch."""

    thread_name = "rh-queue-listener"

    def __init__(self, engine: sa.Engine, wake: Callable[[], None]) -> None:
        super().__init__()
        self._dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._wake = wake

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=_CHECK_STOP_SECONDS):
                            self._wake()
            except psycopg.Error as exc:
                _log.warning("queue listener: %s; the workers poll until it reconnects", exc)
                self._stopping.wait(_RECONNECT_SECONDS)
