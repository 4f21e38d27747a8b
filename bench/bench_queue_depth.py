"""What /healthz (operator) and /metrics pay for the queue counts on SQLite with many finished batches:
the old query (every row grouped by status, in an IMMEDIATE transaction: it holds the write lock) beside
``Store.queue_depth`` (queued and running through the status index; done recounted every 30 s).

    .venv/bin/python bench/bench_queue_depth.py --batches 1000000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from rh_host.service.db import make_engine, migrate
from rh_host.service.schema import batches
from rh_host.service.store import Store


def _fill(engine: sa.Engine, count: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tenants (id, name, key_hash, quotas, created_at) VALUES ('t', 't', 'h', '{}', 0)"
        )
        rows = [
            {
                "tenant_id": "t",
                "batch_id": f"b{i}",
                "digest": "d",
                "status": "done" if i >= 50 else "queued",
                "metadata": "{}",
                "results": b"\x90",
                "result_count": 0,
                "version_ids": "[]",
                "submitted_at": 0.0,
            }
            for i in range(count)
        ]
        for start in range(0, count, 50_000):
            conn.execute(batches.insert(), rows[start : start + 50_000])


def _old_queue_depth(engine: sa.Engine) -> dict[str, int]:
    with engine.begin() as conn:
        return dict(conn.execute(sa.select(batches.c.status, sa.func.count()).group_by(batches.c.status)).all())


def _timed(call: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        _fill(engine, args.batches)
        store = Store(engine)
        old = _timed(lambda: _old_queue_depth(engine), args.repeat)
        first = _timed(store.queue_depth, 1)
        new = _timed(store.queue_depth, args.repeat)
        print(f"{args.batches} batches (50 queued), SQLite, ms per call:")
        print(f"  old (all rows grouped, write lock held): p50 {statistics.median(old):7.2f}  max {max(old):7.2f}")
        print(f"  new, first call (counts done too):       {first[0]:7.2f}")
        print(f"  new, next calls (queued + running only): p50 {statistics.median(new):7.2f}  max {max(new):7.2f}")
        engine.dispose()


if __name__ == "__main__":
    main()
