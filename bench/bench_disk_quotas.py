"""Disk a tenant can make the service spend: an upload flood and a batch flood against its quotas.

Starts ``rh-host serve`` (SQLite, fresh data dir) and one tenant with small totals. The upload flood
posts distinct plugin archives past ``max_plugins``; the batch flood posts distinct batches past
``max_stored_batches``/``max_stored_batch_mb``. Prints, for each, the bytes sent, what was accepted
and refused (by status and quota), and how the data dir grew: with the quotas in place it grows by
the accepted items only (before them, 6 MiB of refused uploads left 252 MiB on disk and a batch
flood wrote 1.4 GB of database in 25 s). Then, in process on SQLite, what the quotas cost: the
totals check of one post with ``--stored`` batches of 20 KiB stored, and purging them.

    .venv/bin/python bench/bench_disk_quotas.py [--uploads 100] [--batches 400] [--batch-kb 256] [--stored 10000]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
from rh_testserver import OPENAI, TEST_PLUGINS, Server, cleanup, pack, public_tempdir  # noqa: E402

_MIB = 1024 * 1024


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def flood(label: str, server: Server, send: list[tuple[str, bytes]], api_post) -> None:  # type: ignore[no-untyped-def]
    before = disk_bytes(server.data_dir)
    answers: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    for path, body in send:
        response = api_post(path, body)
        key = str(response.status_code)
        if response.status_code >= 400:
            message = response.json()["error"]["message"]
            key += " " + (message.split(":")[0] if message.startswith("quota ") else response.json()["error"]["code"])
        answers[key] += 1
    elapsed = time.perf_counter() - started
    grown = disk_bytes(server.data_dir) - before
    sent = sum(len(body) for _path, body in send)
    print(f"{label}: {len(send)} requests, {sent / _MIB:.1f} MiB sent in {elapsed:.1f} s")
    for key, count in sorted(answers.items()):
        print(f"  {count:>5} x {key}")
    print(f"  data dir grew {grown / _MIB:.1f} MiB")


def store_costs(stored: int) -> None:
    from rh_host.service.db import make_engine, migrate
    from rh_host.service.housekeeping import purge_expired
    from rh_host.service.schema import batches
    from rh_host.service.settings import Quotas
    from rh_host.service.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        store = Store(engine)
        store.create_tenant("t1", "bench", "key-hash", Quotas(max_stored_batches=10**9, max_stored_batch_mb=10**9))
        old = time.time() - 2 * 86_400
        row = {"tenant_id": "t1", "digest": "d", "status": "done", "metadata": "{}", "results": bytes(20 * 1024)}
        row |= {"result_count": 1, "version_ids": "[]", "submitted_at": old, "finished_at": old}
        with engine.begin() as conn:
            conn.execute(
                batches.insert(), [{**row, "batch_id": f"b{i}", "stored_bytes": 20 * 1024 + 2} for i in range(stored)]
            )
        timings = []
        for i in range(20):
            started = time.perf_counter()
            store.insert_batch("t1", f"new{i}", "d", {}, bytes(1024), 1)
            timings.append((time.perf_counter() - started) * 1000)
        print(f"store, {stored} batches stored: one post with its quota check p50 {statistics.median(timings):.1f} ms")
        started = time.perf_counter()
        purged = purge_expired(store, retention_days=1)
        print(f"  retention purged {purged} batches in {time.perf_counter() - started:.2f} s", end="")
        started = time.perf_counter()
        purge_expired(store, retention_days=1)
        print(f"; a round with nothing to purge {(time.perf_counter() - started) * 1000:.1f} ms")
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-kb", type=int, default=256, help="size of each posted batch body")
    parser.add_argument("--stored", type=int, default=10_000, help="batches stored for the cost of the checks")
    args = parser.parse_args()
    root = public_tempdir("rh-bench-disk-")
    server = Server(root / "data").start()
    try:
        quotas = {"max_plugins": 3, "max_stored_batches": 100, "max_stored_batch_mb": 16, "max_batch_mb": 8}
        with server.tenant("flooder", quotas) as api:

            def post(path: str, body: bytes):  # type: ignore[no-untyped-def]
                return api.post(path, content=body)

            plugin = TEST_PLUGINS / "slow_step"
            uploads = []
            for i in range(args.uploads):  # each a new plugin name with 64 KiB of random files
                manifest = (plugin / "plugin.toml").read_text().replace('name = "slow_step"', f'name = "flood{i}"')
                extra = {"plugin.toml": manifest.encode(), "blob.bin": os.urandom(64 * 1024)}
                uploads.append(("/v1/plugins", pack(plugin, replace=extra)))
            flood("upload flood", server, uploads, post)
            line = OPENAI.read_bytes().splitlines()[0]
            lines = max(1, args.batch_kb * 1024 // (len(line) + 1))
            batches = []
            for i in range(args.batches):
                body = b"\n".join(
                    line.replace(b'"custom_id": "', f'"custom_id": "{i}-'.encode(), 1) for _ in range(lines)
                )
                batches.append((f"/v1/batches/flood-{i}", body))
            flood("batch flood", server, batches, post)
            print(f"tenant usage: {api.get('/v1/me').json()['usage']}")
    finally:
        server.stop()
        cleanup(root)
    store_costs(args.stored)
    return 0


if __name__ == "__main__":
    sys.exit(main())
