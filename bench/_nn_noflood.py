"""Noisy neighbour: a victim tenant's small batches while an attacker tenant runs the worst plugins
it can write against its limits, side by side in one run.

Starts ``rh-host serve`` (SQLite, a fresh data dir), creates two tenants, gives the victim the noop
plugin and the attacker a set of hostile plugins (reply and log amplification, SysV shm, fork and
thread storms, a CPU burner, an import-time thread, an upload flood). Phases alternate quiet
(victim alone) and noisy (attacker batches kept in flight, an upload flood beside them). Prints the
victim's p50/p99 submit-to-outcome latency per phase, the service's RSS (idle and peak), the
slowest ``/healthz`` answer, whether the machine still forks, and the data dir's disk use.

    .venv/bin/python bench/bench_noisy_neighbour.py [--rounds 2] [--victim-batches 30] [--workers 3]

Targets (issue 18): victim p99 noisy within 2x quiet; peak RSS below 2x idle plus the per-run
limits in flight; /healthz within 100 ms; forks still work; disk within the quotas.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
from rh_testserver import OPENAI, Server, cleanup, pack, public_tempdir  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from bench_service import percentile  # noqa: E402

NOOP = REPO / "bench" / "plugins" / "noop"
LIMITS = "[limits]\ncpu_seconds = 2\nmemory_mb = 256\nwall_seconds = 6\n"

# name -> (module source, class name); each is a plugin of the attacker's, all at one priority
HOSTILE: dict[str, str] = {
    "amp_reply": """
class H(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"x": [{}] * 4_000_000}  # ~4 MB of msgpack empty maps
""",
    "amp_logs": """
class H(ResultHandler):
    def handle(self, batch_id, results, metadata):
        os.write(2, b"a\\n" * 524_288)  # 1 MiB of one-byte lines
        return True
""",
    "shm_hog": """
class H(ResultHandler):
    def handle(self, batch_id, results, metadata):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        made = 0
        for _ in range(4):
            sid = libc.shmget(0, 64 << 20, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
            if sid < 0:
                break
            addr = libc.shmat(sid, None, 0)
            if addr not in (None, ctypes.c_void_p(-1).value):
                ctypes.memset(addr, 1, 64 << 20)
            made += 1
        return {"segments": made}
""",
    "fork_storm": """
class H(ResultHandler):
    def handle(self, batch_id, results, metadata):
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
""",
    "thread_storm": """
class H(ResultHandler):
    def handle(self, batch_id, results, metadata):
        n = 0
        try:
            while n < 20_000:
                threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
                n += 1
        except RuntimeError:
            pass
        return {"threads": n}
""",
    "cpu_burner": """
class H(ResultHandler):
    def handle(self, batch_id, results, metadata):
        while True:
            pass
""",
    "import_thread": """
def _burn():
    while True:
        pass

threading.Thread(target=_burn, daemon=True).start()

class H(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return True
""",
}
PRELUDE = "import ctypes, os, threading, time\nfrom rh_sdk import ResultHandler\n"


def write_hostile(root: Path) -> list[Path]:
    dirs = []
    for name, body in HOSTILE.items():
        plugin = root / name
        plugin.mkdir(parents=True)
        (plugin / "handler.py").write_text(PRELUDE + body)
        (plugin / "plugin.toml").write_text(
            f'name = "{name}"\nversion = "1.0.0"\nruntime = "python"\nentry = "handler:H"\npriority = 10\n{LIMITS}'
        )
        dirs.append(plugin)
    return dirs


def submit_and_wait(api: httpx.Client, batch_id: str, body: bytes) -> float | str:
    started = time.perf_counter()
    response = api.post(f"/v1/batches/{batch_id}", content=body)
    if response.status_code != 202:
        return f"submit {response.status_code} {response.text[:120]}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        response = api.get(f"/v1/batches/{batch_id}/outcome", params={"wait": 30})
        if response.status_code != 409:
            break
    if response.status_code != 200:
        return f"outcome {response.status_code} {response.text[:120]}"
    return (time.perf_counter() - started) * 1000


class Sampler(threading.Thread):
    """Samples the service's RSS (process tree: the server, not its sandboxes) and /healthz latency."""

    def __init__(self, pid: int, url: str) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.url = url
        self.stop = threading.Event()
        self.peak_rss = 0
        self.healthz_ms: list[float] = []
        self.healthz_errors = 0

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
                except psutil.Error:
                    return
                started = time.perf_counter()
                try:
                    ok = http.get(f"{self.url}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.healthz_ms.append((time.perf_counter() - started) * 1000)
                self.healthz_errors += not ok
                self.stop.wait(0.1)


def keep_in_flight(api: httpx.Client, prefix: str, body: bytes, stop: threading.Event, done: list[str]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        result = submit_and_wait(api, f"{prefix}-{n}", body)
        done.append(str(result))


def upload_flood(api: httpx.Client, plugin: Path, stop: threading.Event, answers: dict[int, int]) -> None:
    """New versions and refused uploads (a syntax error, an oversize member) as fast as answered."""
    n = 0
    while not stop.is_set():
        n += 1
        extra = {f"pad{n}.txt": os.urandom(4096)} if n % 2 else {"plugin.toml": b"name = ["}
        try:
            status = api.post("/v1/plugins", content=pack(plugin, replace=extra), params={"activate": "false"})
            answers[status.status_code] = answers.get(status.status_code, 0) + 1
        except httpx.HTTPError:
            answers[0] = answers.get(0, 0) + 1


def forks_ok() -> bool:
    try:
        pid = os.fork()
    except OSError:
        return False
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return True


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def victim_phase(api: httpx.Client, prefix: str, count: int, body: bytes) -> tuple[list[float], list[str]]:
    results = [submit_and_wait(api, f"{prefix}-{i}", body) for i in range(count)]
    return [r for r in results if isinstance(r, float)], [r for r in results if isinstance(r, str)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="quiet/noisy pairs")
    parser.add_argument("--victim-batches", type=int, default=30, help="victim batches per phase")
    parser.add_argument("--attacker-clients", type=int, default=2, help="attacker batches kept in flight")
    parser.add_argument("--workers", type=int, default=3, help="rh-host serve --workers")
    args = parser.parse_args()

    root = public_tempdir("rh-bench-noisy-")
    hostile = write_hostile(Path(tempfile.mkdtemp(prefix="rh-hostile-", dir=root)))
    server = Server(root / "data", workers=args.workers).start()
    assert server.proc is not None
    body = OPENAI.read_bytes()
    quiet: list[float] = []
    noisy: list[float] = []
    errors: list[str] = []
    attacker_outcomes: list[str] = []
    uploads: dict[int, int] = {}
    try:
        _, victim_key = server.create_tenant("victim")
        _, attacker_key = server.create_tenant("attacker")
        victim = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {victim_key}"}, timeout=120)
        attacker = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {attacker_key}"}, timeout=120)
        assert victim.post("/v1/plugins", content=pack(NOOP)).status_code == 201
        for plugin in hostile:
            response = attacker.post("/v1/plugins", content=pack(plugin))
            assert response.status_code == 201, response.text
        for i in range(5):  # warm the victim's fork server
            submit_and_wait(victim, f"warm-{i}", body)
        time.sleep(1)
        idle_rss = psutil.Process(server.proc.pid).memory_info().rss
        sampler = Sampler(server.proc.pid, server.url)
        sampler.start()
        for r in range(args.rounds):
            lat, err = victim_phase(victim, f"q{r}", args.victim_batches, body)
            quiet += lat
            errors += err
            stop = threading.Event()
            threads = [
                threading.Thread(target=keep_in_flight, args=(attacker, f"a{r}-{c}", body, stop, attacker_outcomes))
                for c in range(args.attacker_clients)
            ]
            pass  # threads.append(threading.Thread(target=upload_flood, args=(attacker, hostile[0], stop, uploads)))
            for thread in threads:
                thread.start()
            time.sleep(3)  # let the attack reach its steady state
            lat, err = victim_phase(victim, f"n{r}", args.victim_batches, body)
            noisy += lat
            errors += err
            forked = forks_ok()
            stop.set()
            for thread in threads:
                thread.join(timeout=180)
        sampler.stop.set()
        sampler.join()
        disk = dir_bytes(root / "data")
    finally:
        server.stop()
        cleanup(root)

    def row(name: str, values: list[float]) -> str:
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        return f"  {name:<8} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   n={len(values)}"

    print(f"victim: {args.victim_batches} noop batches a phase, {args.rounds} pairs, workers {args.workers}")
    print(f"attacker: {len(hostile)} hostile plugins ({', '.join(HOSTILE)}),")
    print(f"  {args.attacker_clients} batches in flight, an upload flood beside them")
    if quiet and noisy:
        print(row("quiet", quiet))
        print(row("noisy", noisy))
        print(f"  p99 ratio noisy/quiet {percentile(noisy, 0.99) / percentile(quiet, 0.99):.2f}  (target <= 2)")
    print(f"service RSS idle {idle_rss / 2**20:.0f} MiB, peak {sampler.peak_rss / 2**20:.0f} MiB")
    print(f"/healthz max {max(sampler.healthz_ms):.1f} ms, p99 {percentile(sampler.healthz_ms, 0.99):.1f} ms, "
          f"{sampler.healthz_errors} failed")  # fmt: skip
    print(f"host still forks during the attack: {forked}")
    print(f"data dir after the run: {disk / 2**20:.1f} MiB")
    print(f"attacker batches finished: {len(attacker_outcomes)}; uploads answered: {dict(sorted(uploads.items()))}")
    print(f"victim errors: {len(errors)}")
    for error in errors[:5]:
        print(f"    {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
