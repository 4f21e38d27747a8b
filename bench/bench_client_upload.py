"""A large batch streamed by rh_host.client: upload time, and what it costs the client's and the
server's memory.

Starts ``rh-host serve`` (SQLite, fresh data dir), creates a tenant whose max_batch_mb fits the batch,
then submits N result lines from a generator (never materialised) with metadata (so as a multipart
form), and once more as a file path. Samples the server process's RSS every 10 ms during each upload
and prints the peak over the idle baseline; prints the client's peak RSS growth too. The service's
hard body cap (max_body_mb, 64 MiB) bounds the size; OpenAI's cap is 50,000 lines / 100 MB.

    .venv/bin/python bench/bench_client_upload.py [--lines 50000] [--line-kb 1.2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))
from rh_testserver import SAMPLE_PLUGINS, Server, cleanup, client, public_tempdir, upload  # noqa: E402

from rh_host.client import Client  # noqa: E402


def result_lines(n: int, content_bytes: int) -> Iterator[dict]:
    text = "x" * content_bytes
    for i in range(n):
        yield {
            "id": f"batch_req_{i}",
            "custom_id": f"req-{i}",
            "response": {
                "status_code": 200,
                "request_id": f"r{i}",
                "body": {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]},
            },
            "error": None,
        }


class PeakRss:
    """The peak RSS of a process while the context is open, sampled every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.baseline = self.process.memory_info().rss
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--line-kb", type=float, default=1.2, help="approximate size of one line")
    args = parser.parse_args()
    content = max(0, int(args.line_kb * 1024) - 200)
    one = len(msgspec.json.encode(next(result_lines(1, content)))) + 1
    size = one * args.lines
    print(f"batch: {args.lines} lines of ~{one} bytes = {mib(size)}")

    root = public_tempdir("rh-bench-upload-")
    server = Server(root / "data", workers=1).start()
    try:
        _tid, key = server.create_tenant("bench", {"max_batch_mb": 64, "max_stored_batch_mb": 1024})
        with client(server.url, key) as api:
            upload(api, SAMPLE_PLUGINS[0], activate="true")
        assert server.proc is not None
        client_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        with Client(server.url, key, timeout=300) as rh:
            with PeakRss(server.proc.pid) as rss:
                started = time.perf_counter()
                accepted = rh.submit("big-gen", result_lines(args.lines, content), metadata={"bench": True})
                seconds = time.perf_counter() - started
            print(
                f"generator + metadata (multipart): {accepted.result_count} lines in {seconds:.2f} s"
                f" ({mib(size / seconds)}/s); server RSS +{mib(rss.peak - rss.baseline)}"
                f" over {mib(rss.baseline)}"
            )
            client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            print(f"client peak RSS growth while streaming: +{mib(max(0, client_peak - client_before))}")
            started = time.perf_counter()
            outcome = rh.wait("big-gen", timeout=600)  # the next upload is measured with no batch running
            print(f"outcome of big-gen: success={outcome.success} after {time.perf_counter() - started:.2f} s more")
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as file:
                for line in result_lines(args.lines, content):
                    file.write(msgspec.json.encode(line) + b"\n")
                file.flush()
                with PeakRss(server.proc.pid) as rss:
                    started = time.perf_counter()
                    accepted = rh.submit("big-file", file.name)
                    seconds = time.perf_counter() - started
            print(
                f"file path (JSONL): {accepted.result_count} lines in {seconds:.2f} s"
                f" ({mib(size / seconds)}/s); server RSS +{mib(rss.peak - rss.baseline)} over {mib(rss.baseline)}"
            )
    finally:
        server.stop()
        cleanup(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
