"""Scale-out, side by side: one all-in-one ``serve`` on SQLite and on PostgreSQL, then one api node with
1, 2 and 4 worker processes on PostgreSQL (each process its own data dir); and what the database
costs per batch.

End to end: 10 clients each submit small batches (the OpenAI sample, 3 handlers) one after another
and wait for each outcome; batches/s over the run and p50/p99 submit-to-outcome as the client saw it.
Then, with no sandbox: every database statement one batch costs (intake, claim, payload and plugin
reads, 3 recorded runs, finish), timed alone (the database time per batch) and from 8 threads at once
(how many batches/s one PostgreSQL serves), beside the claim and finish alone (the coordination).

    .venv/bin/python bench/bench_scale_out.py [--batches 150] [--worker-processes 1,2,4]

The PostgreSQL is a scratch server started here with fsync off (as the tests run it): a production
server with fsync pays a WAL flush per commit on top.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import msgspec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
sys.path.insert(0, str(REPO))
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, cleanup, public_tempdir, upload  # noqa: E402

from rh_host.service.claims import Claims  # noqa: E402
from rh_host.service.db import make_engine, migrate  # noqa: E402
from rh_host.service.settings import Quotas  # noqa: E402
from rh_host.service.store import Store  # noqa: E402
from tests.integrations.servers import postgres_server  # noqa: E402

SLOTS = 2  # --workers of every process


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _client(url: str, key: str, ids: list[str], body: bytes, latencies: list[float], errors: list[str]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as api:
        for batch_id in ids:
            started = time.perf_counter()
            if (posted := api.post(f"/v1/batches/{batch_id}", content=body)).status_code != 202:
                errors.append(f"{batch_id}: submit {posted.status_code}")
                continue
            while (answer := api.get(f"/v1/batches/{batch_id}/outcome", params={"wait": 30})).status_code == 409:
                pass
            if answer.status_code != 200 or not answer.json()["success"]:
                errors.append(f"{batch_id}: {answer.status_code} {answer.text[:200]}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)


def end_to_end(label: str, database_url: str | None, worker_processes: int, batches: int, clients: int) -> float:
    """Runs one configuration, prints its line; returns batches/s."""
    root = public_tempdir("rh-bench-scale-")
    nodes: list[Server] = []
    try:
        if worker_processes == 0:  # one all-in-one serve
            api_node = Server(root / "all", database_url=database_url, workers=SLOTS).start()
            nodes.append(api_node)
        else:
            api_node = Server(root / "api", database_url=database_url, args=["--role", "api"]).start()
            nodes.append(api_node)
            for index in range(worker_processes):
                worker = Server(root / f"w{index}", database_url=database_url, workers=SLOTS, args=["--role", "worker"])
                nodes.append(worker.start())
        _, key = api_node.create_tenant(f"bench-{uuid.uuid4().hex[:6]}", {"max_concurrent_batches": 64})
        with httpx.Client(base_url=api_node.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
            for directory in SAMPLE_PLUGINS:
                assert upload(api, directory).status_code == 201
        body = OPENAI.read_bytes()
        errors: list[str] = []
        _client(api_node.url, key, [f"warm-{i}" for i in range(2 * max(1, worker_processes))], body, [], errors)
        latencies: list[float] = []
        shares = [[f"b{c}-{i}" for i in range(c, batches, clients)] for c in range(clients)]
        threads = [
            threading.Thread(target=_client, args=(api_node.url, key, ids, body, latencies, errors)) for ids in shares
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        for node in nodes:
            node.stop()
        cleanup(root)
    rate = len(latencies) / elapsed
    print(
        f"  {label:<38} {rate:7.1f} batches/s   p50 {statistics.median(latencies):7.1f} ms"
        f"   p99 {percentile(latencies, 0.99):7.1f} ms   errors {len(errors)}"
    )
    for error in errors[:3]:
        print(f"      {error}")
    return rate


def database_cost(url: str, batches: int, threads: int) -> tuple[float, float, float, float]:
    """(ms of database work per batch alone, of which claim + finish; batches/s from ``threads`` threads,
    claims + finishes/s from ``threads`` threads)."""
    engine = make_engine(url)
    migrate(engine)
    store = Store(engine)
    tenant_id = f"t_{uuid.uuid4().hex[:12]}"
    store.create_tenant(tenant_id, tenant_id, uuid.uuid4().hex, Quotas(max_concurrent_batches=64))
    versions = [
        store.add_version(tenant_id, f"p{i}", "1", f"{i:064x}", "{}", size_bytes=1, activate=True)[0].id
        for i in range(3)
    ]
    results = OPENAI.read_bytes()
    run = msgspec.json.encode({"status": "ok", "output": {"total": 8}}).decode()

    def one_batch(claims: Claims, batch_id: str, owner: str = tenant_id) -> float:
        store.insert_batch(owner, batch_id, batch_id, {}, results, 8)
        started = time.perf_counter()
        row = claims.claim_next()
        claimed = time.perf_counter() - started
        if row is None:  # another thread took this one (claims serve the tenant served least recently)
            return claimed
        store.batch_payload(row.pk)
        store.runnable_versions(versions)
        for version_id in versions:
            store.stored_run(row.pk, version_id, "d")
            store.save_run(row.pk, version_id, "d", f"p{version_id}", "ok", run)
        started = time.perf_counter()
        claims.finish(row.pk, True, run)
        return claimed + time.perf_counter() - started

    claims = Claims(engine, "bench-node", 30)
    coordination: list[float] = []
    started = time.perf_counter()
    for i in range(batches):
        coordination.append(one_batch(claims, f"alone-{i}"))
    alone_ms = (time.perf_counter() - started) * 1000 / batches

    def loop(index: int, count: int) -> None:
        mine = Claims(engine, f"bench-node-{index}", 30)
        for i in range(count):
            one_batch(mine, f"t{index}-{i}", tenant_ids[index])

    tenant_ids = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(threads)]
    for owner in tenant_ids:  # a tenant per thread: one tenant's claims are serialised by design
        store.create_tenant(owner, owner, uuid.uuid4().hex, Quotas(max_concurrent_batches=64))
    workers = [threading.Thread(target=loop, args=(i, batches // threads)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    capacity = threads * (batches // threads) / (time.perf_counter() - started)

    for i in range(batches):  # claim + finish only, from as many threads: the coordination's own ceiling
        store.insert_batch(tenant_id, f"c-{i}", f"c-{i}", {}, b"\x90", 0)

    def claim_loop(index: int) -> None:
        mine = Claims(engine, f"claimer-{index}", 30)
        while (row := mine.claim_next()) is not None:
            mine.finish(row.pk, True, run)

    workers = [threading.Thread(target=claim_loop, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    claim_rate = batches / (time.perf_counter() - started)
    engine.dispose()
    return alone_ms, statistics.mean(coordination) * 1000, capacity, claim_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--worker-processes", default="1,2,4", help="comma-separated counts of worker nodes")
    parser.add_argument(
        "--database-only",
        type=float,
        metavar="BATCHES_PER_S",
        help="skip the end-to-end runs; take this all-in-one PostgreSQL rate for the shares",
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.worker_processes.split(",") if n] if args.database_only is None else []

    with postgres_server("bench-pw") as admin_url:

        def fresh_database() -> str:
            name = f"b_{uuid.uuid4().hex[:10]}"
            admin = make_engine(admin_url)
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            admin.dispose()
            return admin_url.rsplit("/", 1)[0] + f"/{name}"

        rates = {"pg": args.database_only or 0.0}
        if args.database_only is None:
            print(f"{args.batches} batches (OpenAI sample, 3 handlers), {args.clients} clients, --workers {SLOTS}:")
            rates["sqlite"] = end_to_end("serve (all), SQLite", None, 0, args.batches, args.clients)
            rates["pg"] = end_to_end("serve (all), PostgreSQL", fresh_database(), 0, args.batches, args.clients)
            for count in counts:
                label = f"api + {count} worker process{'es' if count > 1 else ''}, PostgreSQL"
                rates[str(count)] = end_to_end(label, fresh_database(), count, args.batches, args.clients)
        alone_ms, coordination_ms, capacity, claim_rate = database_cost(fresh_database(), 200, 8)
    batch_ms = SLOTS * 1000 / rates["pg"]  # a worker slot's time per batch, all-in-one on PostgreSQL
    print("database work per batch, no sandbox (PostgreSQL):")
    print(f"  every statement of one batch, alone      {alone_ms:7.2f} ms")
    print(f"  of which claim + finish (coordination)   {coordination_ms:7.2f} ms")
    share = coordination_ms / batch_ms
    print(f"  a batch's slot time, all-in-one PG       {batch_ms:7.1f} ms  -> coordination {share:.1%}")
    print(f"  whole batches/s, 8 threads, 8 tenants    {capacity:7.0f}")
    print(f"  claims + finishes/s, 8 threads, 1 tenant {claim_rate:7.0f}")
    per_machine = max([rates["pg"], *(rates[str(c)] for c in counts)])
    machines = capacity / per_machine
    print(f"  machines like this one PostgreSQL feeds  {machines:7.0f}  (at {per_machine:.1f} batches/s each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
