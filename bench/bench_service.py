"""Service throughput and latency: small batches, 3 handlers, 10 concurrent clients.

Starts ``rh-host serve`` on a free loopback port with a fresh data dir (SQLite), creates a tenant,
uploads the three sample plugins, then has each client submit batches one after another and wait
for each outcome (``GET /v1/batches/{id}/outcome?wait=30``). Reports batches/s over the whole run
and p50/p99 submit-to-outcome latency as the client saw it.

    .venv/bin/python bench/bench_service.py [--batches 200] [--clients 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
from rh_testserver import OPENAI, SAMPLE_PLUGINS, Server, cleanup, public_tempdir, upload  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def client_loop(url: str, key: str, ids: list[str], body: bytes, latencies: list[float], errors: list[str]) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        for batch_id in ids:
            started = time.perf_counter()
            response = api.post(f"/v1/batches/{batch_id}", content=body)
            if response.status_code != 202:
                errors.append(f"{batch_id}: submit {response.status_code} {response.text[:200]}")
                continue
            while True:
                response = api.get(f"/v1/batches/{batch_id}/outcome", params={"wait": 30})
                if response.status_code != 409:
                    break
            if response.status_code != 200:
                errors.append(f"{batch_id}: outcome {response.status_code} {response.text[:300]}")
                continue
            failed = [
                f"{h['name']}: {h['status']} {h['error']}" for h in response.json()["handlers"] if h["status"] != "ok"
            ]
            if failed:
                errors.append(f"{batch_id}: {'; '.join(failed)}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="rh-host serve --workers")
    parser.add_argument("--warmup", type=int, default=10, help="batches run before measuring")
    parser.add_argument("--isolation", default="auto", choices=["auto", "basic", "strict"])
    args = parser.parse_args()

    root = public_tempdir("rh-bench-service-")
    server = Server(root / "data", workers=args.workers, env={"RH_ISOLATION": args.isolation}).start()
    try:
        # one tenant whose concurrency quota does not cap the pool: we measure the service, not the quota
        _, key = server.create_tenant("bench", {"max_concurrent_batches": max(args.workers, 2)})
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
            for directory in SAMPLE_PLUGINS:
                assert upload(api, directory).status_code == 201
        body = OPENAI.read_bytes()
        warm_lat: list[float] = []
        warm_err: list[str] = []
        client_loop(server.url, key, [f"warm-{i}" for i in range(args.warmup)], body, warm_lat, warm_err)

        latencies: list[float] = []
        errors: list[str] = []
        shares = [[f"b{c}-{i}" for i in range(c, args.batches, args.clients)] for c in range(args.clients)]
        threads = [
            threading.Thread(target=client_loop, args=(server.url, key, ids, body, latencies, errors)) for ids in shares
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
        cleanup(root)

    lines = sum(1 for line in body.splitlines() if line.strip())
    print(f"{args.batches} batches of {lines} results, 3 handlers each, {args.clients} clients, "
          f"--workers {args.workers}, --isolation {args.isolation}, SQLite")  # fmt: skip
    print(f"  throughput      {len(latencies) / elapsed:8.1f} batches/s  ({elapsed:.1f} s)")
    print(f"  latency p50     {statistics.median(latencies):8.1f} ms  (submit to outcome, client side)")
    print(f"  latency p99     {percentile(latencies, 0.99):8.1f} ms")
    print(f"  latency max     {max(latencies):8.1f} ms")
    print(f"  errors          {len(errors) + len(warm_err):8d}")
    for error in (warm_err + errors)[:5]:
        print(f"    {error}")
    return 1 if errors or warm_err else 0


if __name__ == "__main__":
    sys.exit(main())
