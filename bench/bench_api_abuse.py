"""The API under abuse: /healthz latency and server memory while 1,100 half-open connections are held, and
during a 21 MB batch POST, side by side with the same figures on a quiet server.

Starts ``rh-host serve`` on a free loopback port with a fresh data dir and its default limits. Each phase
probes ``/healthz`` on a new connection every 50 ms and samples the server's RSS and open fds every 10 ms.
"half-open": every attacker connection sends half a request head and then nothing. "21 MB POST": one
tenant posts a JSONL batch of 21 MB (synthetic OpenAI output lines) while the probes run; the tenant's one
batch slot is kept busy meanwhile, so the figures are the intake's and not those of handlers running over it.

    .venv/bin/python bench/bench_api_abuse.py [--connections 1100] [--batch-mb 21] [--server-fd-limit 1024]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
sys.path.insert(0, str(REPO / "bench"))
from _batches import synthetic_batch  # noqa: E402
from rh_testserver import TEST_PLUGINS, Server, cleanup, public_tempdir, upload  # noqa: E402

PROBE_INTERVAL_S = 0.05
_POSTER = """
import sys, time, httpx
url, key, path = sys.argv[1:]
body = open(path, "rb").read()
with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=300) as api:
    started = time.perf_counter()
    response = api.post(url, content=body)
    print(response.status_code, time.perf_counter() - started)
"""


class Sampler(threading.Thread):
    """Peak RSS and open fds of one process, sampled every 10 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.peak_fds = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
                self.peak_fds = max(self.peak_fds, self.process.num_fds())
            except psutil.Error:
                return
            time.sleep(0.01)

    def stop(self) -> Sampler:
        self.halt.set()
        self.join()
        return self


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies_ms: list[float] = []
        self.failures: list[str] = []
        self.rss_mib = 0.0
        self.fds = 0
        self.log_bytes = 0
        self.note = ""


def probe(port: int, phase: Phase) -> None:
    """One GET /healthz on a new connection, timed from connect to the last byte (a raw socket: a new
    httpx client costs ~50 ms of its own)."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        phase.failures.append(type(exc).__name__)
        return
    status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "no response"
    if status == "200":
        phase.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        phase.failures.append(status)


def run_phase(
    server: Server, name: str, done: Callable[[], bool], min_probes: int = 40, log_before: int | None = None
) -> Phase:
    phase = Phase(name)
    log_before = server.log_path.stat().st_size if log_before is None else log_before
    assert server.proc is not None
    sampler = Sampler(server.proc.pid)
    sampler.start()
    count = 0
    while count < min_probes or not done():
        probe(server.port, phase)
        count += 1
        time.sleep(PROBE_INTERVAL_S)
    sampler.stop()
    phase.rss_mib = sampler.peak_rss / 2**20
    phase.fds = sampler.peak_fds
    phase.log_bytes = server.log_path.stat().st_size - log_before
    return phase


def half_open(server: Server, connections: int) -> Phase:
    sockets: list[socket.socket] = []
    refused = 0
    log_before = server.log_path.stat().st_size
    try:
        for _ in range(connections):
            try:
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                sock.sendall(b"GET /v1/batches HTTP/1.1\r\nHost: x\r\n")  # half a head, then nothing
                sockets.append(sock)
            except OSError:
                refused += 1
        phase = run_phase(server, f"{connections:,} half-open", lambda: True, log_before=log_before)
        closed = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) != b"" or True
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        phase.note = f"{len(sockets)} opened, {refused} refused, {closed} closed by the server during the phase"
        return phase
    finally:
        for sock in sockets:
            sock.close()


def big_post(server: Server, key: str, batch_mb: float) -> Phase:
    lines = synthetic_batch(int(batch_mb * 1e6 / 300))
    encoded = [msgspec.json.encode(line) + b"\n" for line in lines]
    cut = next((i for i, size in enumerate(itertools.accumulate(map(len, encoded))) if size >= batch_mb * 1e6), None)
    lines = lines[: len(encoded) if cut is None else cut + 1]
    body = b"".join(encoded[: len(lines)])
    del encoded
    body_path = Path(tempfile.mkdtemp(prefix="rh-bench-body-")) / "batch.jsonl"
    body_path.write_bytes(body)
    # the POST comes from another process: a thread here would share the GIL with the probes
    poster = subprocess.Popen(
        [sys.executable, "-c", _POSTER, f"{server.url}/v1/batches/big", key, str(body_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    phase = run_phase(server, f"{len(body) / 1e6:.0f} MB POST", lambda: poster.poll() is not None, min_probes=10)
    status, seconds = poster.communicate()[0].split()
    shutil.rmtree(body_path.parent)
    phase.note = f"POST of {len(body):,} bytes ({len(lines):,} lines): {status} in {float(seconds):.2f} s"
    return phase


def hold_the_worker(server: Server, key: str) -> None:
    """Keep the tenant's one batch slot busy (a handler that sleeps) so the big batch stays queued: the
    figures are the intake's, not those of running handlers over it."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        assert upload(api, TEST_PLUGINS / "slow_step").status_code == 201
        assert api.put("/v1/plugins/slow_step/config", json={"config": {"sleep_seconds": 300}}).status_code == 200
        assert api.post("/v1/batches/blocker", content=b'{"id": "x"}\n').status_code == 202
        deadline = time.monotonic() + 30
        while api.get("/v1/batches/blocker").json()["status"] != "running":
            assert time.monotonic() < deadline, "the blocker batch never started"
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--batch-mb", type=float, default=21.0)
    parser.add_argument(
        "--server-fd-limit",
        type=int,
        help="start the server with this soft RLIMIT_NOFILE (1024 is a common default; the server may raise it)",
    )
    args = parser.parse_args()

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if args.server_fd_limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.server_fd_limit, hard))
    root = public_tempdir("rh-bench-abuse-")
    server = Server(root / "data").start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker side needs more than 1,100
    try:
        _, key = server.create_tenant("bench", {"max_results": 200_000, "max_concurrent_batches": 1})
        hold_the_worker(server, key)
        time.sleep(1.0)  # let start-up settle
        phases = [run_phase(server, "quiet", lambda: True)]
        phases.append(half_open(server, args.connections))
        time.sleep(1.0)
        phases.append(big_post(server, key, args.batch_mb))
    finally:
        server.stop()
        cleanup(root)

    def row(label: str, cell: Callable[[Phase], str]) -> str:
        return f"{label:<28}" + "".join(f"{cell(p):>20}" for p in phases)

    def pct(p: Phase, q: float) -> str:
        if not p.latencies_ms:
            return "-"
        ordered = sorted(p.latencies_ms)
        return f"{ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]:.1f}"

    print(row("", lambda p: p.name))
    print(row("/healthz answered 200", lambda p: f"{len(p.latencies_ms)}/{len(p.latencies_ms) + len(p.failures)}"))
    print(row("/healthz p50 ms", lambda p: f"{statistics.median(p.latencies_ms):.1f}" if p.latencies_ms else "-"))
    print(row("/healthz p99 ms", lambda p: pct(p, 0.99)))
    print(row("/healthz max ms", lambda p: f"{max(p.latencies_ms):.1f}" if p.latencies_ms else "-"))
    print(row("server peak RSS MiB", lambda p: f"{p.rss_mib:.0f}"))
    print(row("server peak open fds", lambda p: str(p.fds)))
    print(row("server log bytes", lambda p: f"{p.log_bytes:,}"))
    for phase in phases:
        if phase.failures:
            print(f"{phase.name}: /healthz failures: {sorted(set(phase.failures))}")
        if phase.note:
            print(f"{phase.name}: {phase.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
