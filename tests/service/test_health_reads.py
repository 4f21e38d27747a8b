"""What /healthz and /metrics read: on SQLite they take no write lock and never wait for a writer, and
the queue counts cost the queued and running batches, not the table (done is counted now and then)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import msgspec
import pytest

import rh_host.service.store as store_module
from rh_host.service.claims import Claims, Finish
from rh_host.service.db import make_engine, migrate
from rh_host.service.settings import Quotas
from rh_host.service.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'h.db'}")
    migrate(engine)
    return Store(engine)


def test_health_reads_do_not_wait_for_a_writer(store: Store, tmp_path: Path) -> None:
    writer = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a long write transaction (a big batch being stored)
    answers: list[object] = []
    reader = threading.Thread(target=lambda: answers.extend([store.ping(), store.queue_depth()]), daemon=True)
    started = time.monotonic()
    reader.start()
    reader.join(5)  # an IMMEDIATE read would wait for the busy timeout, 30 s
    try:
        assert not reader.is_alive() and len(answers) == 2, "a health read waited for the write lock"
        assert time.monotonic() - started < 2
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        store.engine.dispose()


def test_queue_counts_are_current_and_done_is_recounted_after_its_interval(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_DONE_COUNT_SECONDS", 0.5)
    tenant_id = f"t_{uuid.uuid4().hex[:12]}"
    store.create_tenant(tenant_id, "counted", uuid.uuid4().hex, Quotas())
    for i in range(3):
        store.insert_batch(tenant_id, f"b{i}", f"d{i}", {}, b"\x90", 0)
    assert store.queue_depth() == {"queued": 3, "running": 0, "done": 0}
    claims = Claims(store.engine, "node", 30)
    row = claims.claim_next()
    assert row is not None
    assert claims.finish(row.pk, True, msgspec.json.encode({}).decode()) is Finish.STORED
    assert store.queue_depth() == {"queued": 2, "running": 0, "done": 0}  # done: the count of 0.5 s ago
    time.sleep(0.6)
    assert store.queue_depth() == {"queued": 2, "running": 0, "done": 1}
    store.engine.dispose()
