"""Core benchmark (issue 2): sandboxed dispatch overhead vs the in-process registry, and a big batch.

    .venv/bin/python bench/bench_core.py [--runs 30] [--lines 50000]

Prints, from one run on this machine: the median wall time of one trivial handler run in-process and
sandboxed (basic isolation, cold subprocess) with their ratio; then a batch of --lines results through
5 handlers: end-to-end time and the host's peak RSS (measured in a child process that runs only that).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _batches import ROOT, synthetic_batch

from rh_host.manifest import load_plugin
from rh_host.pipeline import Pipeline
from rh_sandbox import ProcessBackend
from rh_sdk import HandlerRegistry
from rh_sdk.protocol import Invocation, encode_invocation

NOOP = ROOT / "bench" / "plugins" / "noop"
FIVE = [
    ROOT / "sample_plugins" / "python" / "stats_summary",
    ROOT / "sample_plugins" / "python" / "error_collector",
    ROOT / "sample_plugins" / "python" / "jsonl_exporter",
    NOOP,
    ROOT / "bench" / "plugins" / "json_encode",
]


def _ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def dispatch(runs: int) -> None:
    sys.path.insert(0, str(NOOP))
    from handler import NoopHandler  # type: ignore[import-not-found]

    registry = HandlerRegistry()
    registry.register(NoopHandler({}))
    results = synthetic_batch(10)
    as_dicts = msgspec.to_builtins(results)
    inproc = []
    for _ in range(runs):
        t = time.perf_counter()
        registry.process_results("b", as_dicts, {})
        inproc.append(time.perf_counter() - t)
    backend = ProcessBackend()
    spec = load_plugin(NOOP).run_spec()
    payload = encode_invocation(Invocation(batch_id="b", handler="noop", results=results))
    backend.run(spec, payload)  # warm the page cache
    sandboxed = []
    for _ in range(runs):
        t = time.perf_counter()
        result = backend.run(spec, payload)
        sandboxed.append(time.perf_counter() - t)
        assert result.status == "ok", result
    print(f"dispatch of a trivial handler, median of {runs}:")
    print(f"  in-process registry      {_ms(inproc):9.3f} ms   1.0x")
    print(f"  sandboxed (basic, cold)  {_ms(sandboxed):9.3f} ms   {_ms(sandboxed) / _ms(inproc):,.0f}x")
    print(f"  isolation level: {result.isolation}")


def big_batch_child(lines: int) -> None:
    batch = synthetic_batch(lines)
    plugins = [load_plugin(p, {"max_error_rate": 1.0} if p.name == "error_collector" else None) for p in FIVE]
    backend = ProcessBackend()
    t = time.perf_counter()
    outcome = Pipeline(backend, max_parallel=2).run("big", batch, {}, plugins)
    elapsed = time.perf_counter() - t
    statuses = {h.name: h.status.value for h in outcome.handlers}
    guest_peak = max(h.usage.peak_rss_kb for h in outcome.handlers)
    print(
        json.dumps(
            {
                "elapsed_s": elapsed,
                "host_peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "guest_peak_rss_kb": guest_peak,
                "statuses": statuses,
                "success": outcome.success,
            }
        )
    )


def big_batch(lines: int) -> None:
    out = subprocess.run(
        [sys.executable, __file__, "--big-batch-child", "--lines", str(lines)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    print(
        f"{lines:,} results through 5 handlers (2 at a time): {data['elapsed_s']:.2f} s end to end, "
        f"host peak RSS {data['host_peak_rss_kb'] / 1024:.0f} MiB, largest handler peak "
        f"{data['guest_peak_rss_kb'] / 1024:.0f} MiB, success={data['success']}"
    )
    if not data["success"]:
        print(f"  statuses: {data['statuses']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--big-batch-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.big_batch_child:
        big_batch_child(args.lines)
        return
    dispatch(args.runs)
    big_batch(args.lines)


if __name__ == "__main__":
    main()
