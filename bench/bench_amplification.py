"""Host memory per hostile run: what a guest's reply and stderr cost the host once decoded, old vs new.

    .venv/bin/python bench/bench_amplification.py            # ~20 s
    .venv/bin/python bench/bench_amplification.py --sandbox  # also end to end through the fork server

Each case is measured in a fresh interpreter (so RSS high-water marks do not mix), twice: the old
shape (``decode_reply`` straight on the bytes; one record per stderr line, as ``parse_logs`` did
before the decoded-size caps) and the new one (``classify.bounded_reply``; ``guest_logs.parse_logs``).
Printed per case: the bytes the guest wrote, the host's peak Python allocation (tracemalloc) and its
RSS growth (ru_maxrss) while handling them, the time, and what came out.

``--sandbox`` runs the hostile handlers of tests/sandbox/plugins/hostile through a real
ForkServerBackend and prints the bench process's RSS growth per run (new code only: the old one is
gone from this tree).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import msgspec

from rh_sandbox.classify import bounded_reply  # internals: this bench measures the decoding bounds
from rh_sandbox.decoded import DecodedTooLarge
from rh_sandbox.guest_logs import parse_logs
from rh_sdk.protocol import LogRecord, Reply, decode_reply, encode_reply

MIB = 1 << 20
_old_line = msgspec.json.Decoder(LogRecord)


def old_parse_logs(data: bytes) -> list[LogRecord]:
    """parse_logs as it was before this change: one record per stderr line."""
    records: list[LogRecord] = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            records.append(_old_line.decode(raw))
        except msgspec.DecodeError:
            records.append(LogRecord(level="INFO", logger="stderr", message=raw.decode("utf-8", "replace")))
    return records


def _reply(value: object, encoding: str) -> bytes:
    return encode_reply(Reply(ran=True, ok=True, output={"o": value}), encoding)  # type: ignore[arg-type]


def _record(**fields: object) -> bytes:
    return json.dumps({"level": "INFO", "message": "m", **fields}).encode() + b"\n"


def case_bytes(name: str) -> bytes:
    realistic = [{"custom_id": f"req-{i:05}", "label": "positive", "score": 0.93} for i in range(20_000)]
    return {
        "reply: 4 MiB msgpack of empty maps": lambda: _reply([{}] * (4 * MIB), "msgpack"),
        "reply: 4 MiB JSON of empty maps": lambda: _reply([{}] * (4 * MIB // 3), "json"),
        "reply: 1 MiB msgpack, well-behaved": lambda: _reply(realistic, "msgpack"),
        "logs: 1 MiB of a\\n": lambda: b"a\n" * (MIB // 2),
        "logs: 1 MiB of small JSON records": lambda: _record() * (MIB // len(_record())),
        "logs: 1 MiB record, extra of {}s": lambda: _record(extra={"o": [{}] * (MIB // 3)}),
    }[name]()


CASES = [
    "reply: 4 MiB msgpack of empty maps",
    "reply: 4 MiB JSON of empty maps",
    "reply: 1 MiB msgpack, well-behaved",
    "logs: 1 MiB of a\\n",
    "logs: 1 MiB of small JSON records",
    "logs: 1 MiB record, extra of {}s",
]


def handle(name: str, shape: str, data: bytes) -> str:
    """What the host does with ``data`` in ``shape``; returns what came out, in words."""
    cap_kb = len(data) // 1024 + 1
    if name.startswith("reply"):
        encoding = "json" if "JSON" in name else "msgpack"
        if shape == "old":
            decode_reply(data, encoding)  # type: ignore[arg-type]
            return "decoded"
        try:
            bounded_reply(data, encoding, cap_kb)  # type: ignore[arg-type]
        except DecodedTooLarge as exc:
            return f"output_limit: {exc}"[:60]
        return "decoded"
    records = old_parse_logs(data) if shape == "old" else parse_logs(data, max_log_kb=max(cap_kb, 1024))
    return f"{len(records)} records"


def measure_one(name: str, shape: str) -> dict[str, object]:
    """Timed and RSS-measured on a first pass, the Python allocation peak (tracemalloc) on a second."""
    data = case_bytes(name)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    outcome = handle(name, shape, data)
    elapsed = time.perf_counter() - started
    rss_growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    tracemalloc.start()
    handle(name, shape, data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"bytes": len(data), "peak": peak, "rss_kb": rss_growth_kb, "ms": elapsed * 1000, "outcome": outcome}


def measure(name: str, shape: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, shape], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def sandbox_runs() -> None:
    from rh_sandbox import ForkServerBackend, Limits, RunSpec
    from rh_sdk.protocol import Invocation, encode_invocation

    plugin = Path(__file__).resolve().parent.parent / "tests" / "sandbox" / "plugins" / "hostile"
    runs = [
        ("EmptyMaps", {"count": 4 * MIB}, Limits(wall_seconds=30, max_output_kb=4 * 1024 + 64)),
        ("Newlines", {"lines": MIB // 2}, Limits(wall_seconds=30, max_log_kb=1024)),
    ]
    print("\nend to end, ForkServerBackend (new code): bench process RSS growth per hostile run")
    with ForkServerBackend(prefork=0) as backend:
        for entry, config, limits in runs:
            payload = encode_invocation(Invocation(batch_id="b", handler=entry, config=config, results=[]))
            spec = RunSpec(
                name=entry,
                runtime="python",
                plugin_dir=str(plugin),
                entry=f"hostile:{entry}",
                limits=limits,
                group=f"bench-amplification-{os.getpid()}",  # a tenant cgroup of its own
            )
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            result = backend.run(spec, payload)
            growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
            print(f"  {entry:<10} {result.status.value:<13} {len(result.logs):>3} records  RSS +{growth:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("CASE", "SHAPE"), help=argparse.SUPPRESS)
    parser.add_argument("--sandbox", action="store_true", help="also run hostile handlers end to end")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*args.one)))
        return
    print(f"{'case':<36} {'bytes':>9} | {'old peak':>9} {'old RSS+':>9} {'old ms':>7} | "
          f"{'new peak':>9} {'new RSS+':>9} {'new ms':>7} | new outcome")  # fmt: skip
    for name in CASES:
        old, new = measure(name, "old"), measure(name, "new")
        print(
            f"{name:<36} {old['bytes'] / MIB:>7.2f}Mi | {old['peak'] / MIB:>7.1f}Mi {old['rss_kb'] / 1024:>7.1f}Mi "
            f"{old['ms']:>7.0f} | {new['peak'] / MIB:>7.1f}Mi {new['rss_kb'] / 1024:>7.1f}Mi {new['ms']:>7.0f} | "
            f"{new['outcome']}"
        )
    if args.sandbox:
        sandbox_runs()


if __name__ == "__main__":
    main()
