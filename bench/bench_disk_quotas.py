"""Disk a tenant can make the service spend: an upload flood and a batch flood against its quotas.

Starts ``rh-host serve`` (SQLite, fresh data dir) and one tenant with small totals. The upload flood
posts distinct plugin archives past ``max_plugins``; the batch flood posts distinct batches past
``max_stored_batches``/``max_stored_batch_mb``. Prints, for each, the bytes sent, what was accepted
and refused (by status and quota), and how the data dir grew: with the quotas in place it grows by
the accepted items only (before them, 6 MiB of refused uploads left 252 MiB on disk and a batch
flood wrote 1.4 GB of database in 25 s).

    .venv/bin/python bench/bench_disk_quotas.py [--uploads 100] [--batches 400] [--batch-kb 256]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch-kb", type=int, default=256, help="size of each posted batch body")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
