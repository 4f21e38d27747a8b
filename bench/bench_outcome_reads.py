"""Server memory while clients read a large outcome at once.

Starts ``rh-host serve`` (SQLite, fresh data dir), uploads ``--plugins`` copies of a handler that
prints ``--lines`` short lines on stderr (each one log record of the outcome), runs one batch, then has
``--clients`` clients GET its outcome together, ``--rounds`` times. Samples the serve process's RSS
every 5 ms and prints the outcome's size, the RSS before the reads and the peak during them.

    .venv/bin/python bench/bench_outcome_reads.py [--plugins 2] [--lines 100000] [--clients 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
from rh_testserver import OPENAI, Server, cleanup, outcome, pack, public_tempdir  # noqa: E402

FLOOD = REPO / "bench" / "plugins" / "log_flood"
MIB = 1024 * 1024


def upload_copies(api: httpx.Client, count: int, lines: int) -> None:
    manifest = (FLOOD / "plugin.toml").read_text()
    for index in range(count):
        text = manifest.replace('name = "log_flood"', f'name = "log_flood_{index}"')
        text = text.replace("lines = 100000", f"lines = {lines}")
        response = api.post("/v1/plugins", content=pack(FLOOD, replace={"plugin.toml": text.encode()}))
        response.raise_for_status()


def peak_rss_during(pid: int, action: threading.Thread) -> int:
    process = psutil.Process(pid)
    peak = process.memory_info().rss
    action.start()
    while action.is_alive():
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.005)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=2)
    parser.add_argument("--lines", type=int, default=100_000, help="stderr lines (log records) per handler")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    root = public_tempdir("rh-bench-outcome-")
    server = Server(root / "data").start()
    try:
        with server.tenant("reader", {"max_log_kb": 4096}) as api:
            upload_copies(api, args.plugins, args.lines)
            api.post("/v1/batches/big", content=OPENAI.read_bytes()).raise_for_status()
            result = outcome(api, "big", timeout=600)
            statuses = {h["name"]: h["status"] for h in result["handlers"]}
            records = sum(len(h["logs"]) for h in result["handlers"])
            size = len(api.get("/v1/batches/big/outcome").content)
        assert server.proc is not None
        pid = server.proc.pid
        time.sleep(1.0)
        before = psutil.Process(pid).memory_info().rss

        def burst() -> None:
            def read() -> None:
                with httpx.Client(base_url=server.url, headers=api.headers, timeout=300) as reader:
                    reader.get("/v1/batches/big/outcome").raise_for_status()

            readers = [threading.Thread(target=read) for _ in range(args.clients)]
            for thread in readers:
                thread.start()
            for thread in readers:
                thread.join()

        peaks = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            peak = peak_rss_during(pid, threading.Thread(target=burst))
            peaks.append((peak, time.perf_counter() - started))
        print(f"outcome: {size / MIB:.1f} MiB, {records} log records, statuses {statuses}")
        print(f"serve RSS before the reads: {before / MIB:.0f} MiB")
        for number, (peak, seconds) in enumerate(peaks, 1):
            print(
                f"round {number}: {args.clients} concurrent GETs in {seconds * 1000:.0f} ms,"
                f" peak RSS {peak / MIB:.0f} MiB (+{(peak - before) / MIB:.0f} MiB)"
            )
    finally:
        server.stop()
        cleanup(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
