"""Cost of isolation for Python handlers: every dispatch mode in one run, as ratios to in-process.

    .venv/bin/python bench/bench_isolation.py                 # ~30 s on 2 cores
    .venv/bin/python bench/bench_isolation.py --runs 500 --cold-runs 40 --markdown
    tests/vm/vmrun .venv/bin/python bench/bench_isolation.py --runs 100 --cold-runs 10   # cgroup v2, emulated

Modes (trivial handler, one result line; after warm-up):
  in-process     rh_sdk.HandlerRegistry.process_results: no isolation (the reference)
  basic cold     ProcessBackend: a fresh limited subprocess per run (+ per-run cgroup)
  strict cold    StrictProcessBackend: setpriv + bwrap + cgroups + Landlock + seccomp per run
  fork server    ForkServerBackend(prefork=0): the tenant's zygote forks the child on request
  pre-forked     ForkServerBackend(prefork=2): a child already forked, namespaced and confined, with
                 the plugin imported (it ran before), waiting; runs back to back, so each run shares
                 the 2 cores with the previous child's teardown and the arming of the next
  pre-forked, paced  the same, a run every 10 ms (not timed): a server that is not saturated
Then sustained invocations/s through the pre-forked backend from 2 and 4 threads (with the machine's
CPU time and page faults per run over the same seconds), and the realistic handler (JSON-encode 1,000
result lines) pre-forked vs in-process, each back to back.

Last, what this machine charges for the two things a fork per run is made of, so that figures from
different machines can be compared: the CPU of a page fault (first write to an anonymous page) and of
a bare fork + exit of the guest interpreter. A fork server's run costs mostly page faults: on a VM
whose page tables the hypervisor shadows, each is several times dearer than on bare metal.
"""

from __future__ import annotations

import argparse
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _batches import batch_lines, chat_line

from rh_sandbox import ForkServerBackend, Limits, ProcessBackend, RunSpec, RunStatus, StrictProcessBackend, probe
from rh_sdk import HandlerRegistry
from rh_sdk.protocol import Invocation, encode_invocation

TRIVIAL = """
from rh_sdk import ResultHandler


class Trivial(ResultHandler):
    def handle(self, batch_id, results, metadata):
        return {"count": len(results)}
"""

FORK_BOMB = """
import contextlib
import os

from rh_sdk import ResultHandler


class Bomb(ResultHandler):
    def handle(self, batch_id, results, metadata):
        while True:
            with contextlib.suppress(OSError):
                os.fork()
"""

REALISTIC = """
import json

from rh_sdk import ResultHandler


class Encode(ResultHandler):
    def handle(self, batch_id, results, metadata):
        lines = [json.dumps(r, sort_keys=True) for r in results]
        return {"bytes": sum(len(line) for line in lines)}
"""


def write_plugin(root: Path, name: str, source: str) -> Path:
    plugin = root / name
    plugin.mkdir(mode=0o755)
    (plugin / f"{name}.py").write_text(source)
    os.chmod(plugin / f"{name}.py", 0o644)
    return plugin


def sample(fn: Callable[[], object], runs: int, gap_s: float = 0.0) -> list[float]:
    for _ in range(min(5, runs)):
        fn()
    times = []
    for _ in range(runs):
        if gap_s:
            time.sleep(gap_s)
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def inprocess(plugin: Path, module: str, cls: str, results: list[dict]) -> Callable[[], object]:
    namespace: dict = {}
    exec(compile((plugin / f"{module}.py").read_text(), module, "exec"), namespace)
    registry = HandlerRegistry()
    registry.register(namespace[cls]({}))

    def call() -> None:
        if not registry.process_results("b1", results, {}):
            raise RuntimeError("in-process handler failed")

    return call


def sandboxed(backend: object, plugin: Path, entry: str, payload: bytes) -> Callable[[], object]:
    spec = RunSpec(name=entry, runtime="python", plugin_dir=str(plugin), entry=entry, group="bench", limits=Limits())

    def call() -> None:
        result = backend.run(spec, payload)  # type: ignore[attr-defined]
        if result.status is not RunStatus.OK:
            raise RuntimeError(f"{entry}: {result.status} {result.error}")

    return call


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (all but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def page_faults() -> int:
    """Page faults taken on the whole machine so far, from /proc/vmstat."""
    with open("/proc/vmstat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("pgfault "))


class Sustained:
    """Invocations per second from ``threads`` clients, and the machine's CPU and faults per run."""

    def __init__(self, call: Callable[[], object], threads: int, seconds: float) -> None:
        cpu, faults = machine_cpu_s(), page_faults()
        self.rate, runs = throughput(call, threads, seconds)
        self.cpu_ms = (machine_cpu_s() - cpu) * 1000 / runs
        self.faults = (page_faults() - faults) / runs


def throughput(call: Callable[[], object], threads: int, seconds: float) -> tuple[float, int]:
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        while time.monotonic() < stop:
            call()
            counts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(counts) / (time.monotonic() - started), sum(counts)


def page_fault_us(megabytes: int = 32) -> float:
    """CPU per page fault: writing one byte per page of a fresh mapping, minus the same loop over
    pages already there."""
    size, step = megabytes << 20, mmap.PAGESIZE
    with mmap.mmap(-1, size) as mapping:
        passes = []
        for _ in range(2):
            started = time.thread_time()
            for offset in range(0, size, step):
                mapping[offset] = 1
            passes.append(time.thread_time() - started)
    return (passes[0] - passes[1]) / (size // step) * 1e6


_BARE_FORK = """
import os, resource, sys
n = int(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
for _ in range(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(before, after))
print(cpu * 1000 / n)
"""


def bare_fork_ms(forks: int = 300) -> float:
    """CPU (parent and child) of a fork + exit + wait of the guest interpreter running nothing else."""
    interpreter = probe().interpreter  # the guest runtime's
    out = subprocess.run([interpreter, "-I", "-S", "-c", _BARE_FORK, str(forks)], capture_output=True, text=True)
    return float(out.stdout)


def fork_bomb_ms(backend: object, plugin: Path, payload: bytes) -> list[tuple[float, str]]:
    """Wall time until a fork bomb's run has ended and its processes are gone."""
    spec = RunSpec(name="bomb", runtime="python", plugin_dir=str(plugin), entry="bomb:Bomb", group="bench")
    ended = []
    for _ in range(5):
        started = time.perf_counter()
        result = backend.run(spec, payload)  # type: ignore[attr-defined]
        ended.append(((time.perf_counter() - started) * 1000, f"{result.status}: {result.error}"))
    return ended


def bar(value: float, scale: float, width: int = 40) -> str:
    return "#" * max(1, round(width * value / scale))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300, help="runs per warm mode")
    parser.add_argument("--cold-runs", type=int, default=30, help="runs per cold mode")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each throughput test")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table and plot")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rh-bench-", dir="/tmp"))
    os.chmod(root, 0o755)
    trivial = write_plugin(root, "trivial", TRIVIAL)
    realistic = write_plugin(root, "realistic", REALISTIC)
    bomb = write_plugin(root, "bomb", FORK_BOMB)
    line = chat_line("word " * 60)
    one = batch_lines(1, line)
    thousand = batch_lines(1000, line)
    small = encode_invocation(Invocation(batch_id="b1", handler="t", results=one))  # type: ignore[arg-type]
    big = encode_invocation(Invocation(batch_id="b1", handler="r", results=thousand))  # type: ignore[arg-type]

    rows: list[tuple[str, list[float]]] = []
    rows.append(("in-process", sample(inprocess(trivial, "trivial", "Trivial", one), args.runs)))
    basic = ProcessBackend()
    rows.append(("basic cold", sample(sandboxed(basic, trivial, "trivial:Trivial", small), args.cold_runs)))
    strict = StrictProcessBackend()
    rows.append(("strict cold", sample(sandboxed(strict, trivial, "trivial:Trivial", small), args.cold_runs)))
    with ForkServerBackend(prefork=0) as forkserver:
        rows.append(("fork server", sample(sandboxed(forkserver, trivial, "trivial:Trivial", small), args.runs)))
    with ForkServerBackend(prefork=2) as preforked:
        call = sandboxed(preforked, trivial, "trivial:Trivial", small)
        rows.append(("pre-forked", sample(call, args.runs)))
        rows.append(("pre-forked, paced", sample(call, args.runs, gap_s=0.01)))
        rates = {n: Sustained(call, n, args.seconds) for n in (2, 4)}
        real_iso = sample(sandboxed(preforked, realistic, "realistic:Encode", big), max(20, args.runs // 10))
        bomb_ms = fork_bomb_ms(preforked, bomb, small)
    real_in = sample(inprocess(realistic, "realistic", "Encode", thousand), max(20, args.runs // 10))

    ref = statistics.median(rows[0][1])
    machine = probe()
    print(
        f"# bench_isolation: {os.cpu_count()} cores, {sys.version.split()[0]}, kernel {os.uname().release}, "
        f"cgroup v{machine.cgroup_version} (per-run cgroups: {'yes' if machine.per_run_cgroups else 'no'})"
    )
    print(f"{'mode':<18}{'p50 ms':>10}{'p99 ms':>10}{'p50 / in-process':>20}")
    for name, values in rows:
        med = statistics.median(values)
        print(f"{name:<18}{med:>10.3f}{p(values, 0.99):>10.3f}{med / ref:>20.1f}")
    fault_us, fork_ms = page_fault_us(), bare_fork_ms()
    for n, rate in rates.items():
        print(
            f"sustained, pre-forked, {n} threads: {rate.rate:.0f} invocations/s ({rate.cpu_ms:.2f} ms of machine "
            f"CPU per run, {rate.faults:.0f} page faults per run: ~{rate.faults * fault_us / 1000:.2f} ms of it)"
        )
    ratio = statistics.median(real_iso) / statistics.median(real_in)
    print(
        f"realistic (JSON-encode 1,000 results): in-process p50 {statistics.median(real_in):.2f} ms, "
        f"pre-forked p50 {statistics.median(real_iso):.2f} ms, ratio {ratio:.2f}"
    )
    print(
        "fork bomb (max_processes=32), pre-forked: run ended and cleaned up in "
        + ", ".join(f"{ms:.0f}" for ms, _ in bomb_ms)
        + f" ms ({bomb_ms[0][1]})"
    )
    print(
        f"machine: a page fault costs {fault_us:.2f} us of CPU; "
        f"a bare fork + exit of the guest interpreter {fork_ms:.2f} ms"
    )
    if args.markdown:
        scale = max(statistics.median(v) for _, v in rows)
        print("\n| mode | p50 ms | p99 ms | p50 / in-process |\n|---|---:|---:|---:|")
        for name, values in rows:
            med = statistics.median(values)
            print(f"| {name} | {med:.3f} | {p(values, 0.99):.3f} | {med / ref:.1f} |")
        print("\n```\np50 dispatch latency (ms, linear)")
        for name, values in rows:
            med = statistics.median(values)
            print(f"{name:<17} {bar(med, scale):<40} {med:.2f}")
        print("```")
    for path in sorted(root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    root.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
