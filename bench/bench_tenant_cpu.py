"""How the CPU is shared between tenants when one has more runs in flight than another.

    .venv/bin/python bench/bench_tenant_cpu.py                # ~25 s on 2 cores
    .venv/bin/python bench/bench_tenant_cpu.py --rounds 5 --seconds 3

Tenant "busy" starts ``--busy-runs`` CPU-bound runs (each spins for ``--seconds``) and tenant "quiet"
one, all at once, through one fork server (strict, each run capped at one core). In the cpu hierarchy
each run's cgroup is in its tenant's dir (``rh-host/tenant-<group>/``), so the scheduler splits the
CPU between tenants first, whatever the number of their runs in flight.

Each run's CPU is its cgroup's ``cpuacct.usage``. On 2 cores, with 3 busy runs and 1 quiet, the quiet
tenant should get about a core (half the machine), not a quarter of the runs' CPU (one share per run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from rh_sandbox import ForkServerBackend, Limits, RunResult, RunSpec, RunStatus, probe
from rh_sdk.protocol import Invocation, encode_invocation

BURN = """
import time

from rh_sdk import ResultHandler


class Burn(ResultHandler):
    def handle(self, batch_id, results, metadata):
        end = time.monotonic() + float(metadata["seconds"])
        spins = 0
        while time.monotonic() < end:
            spins += 1
        return {"spins": spins}
"""


def one_round(backend: ForkServerBackend, plugin: Path, busy_runs: int, seconds: float) -> dict[str, float]:
    """CPU ms per tenant over one round of concurrent runs."""
    payload = encode_invocation(Invocation(batch_id="b", handler="burn", results=[], metadata={"seconds": seconds}))
    limits = Limits(cpu_seconds=seconds * 4, wall_seconds=seconds * 4)
    results: list[tuple[str, RunResult]] = []
    lock = threading.Lock()

    def run(group: str) -> None:
        spec = RunSpec(
            name="burn", runtime="python", plugin_dir=str(plugin), entry="burn:Burn", group=group, limits=limits
        )
        result = backend.run(spec, payload)
        with lock:
            results.append((group, result))

    threads = [threading.Thread(target=run, args=("busy",)) for _ in range(busy_runs)]
    threads.append(threading.Thread(target=run, args=("quiet",)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = {"busy": 0.0, "quiet": 0.0}
    for group, result in results:
        if result.status is not RunStatus.OK:
            raise RuntimeError(f"{group}: {result.status} {result.error}")
        cpu[group] += result.usage.cpu_ms
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="each run spins this long")
    parser.add_argument("--busy-runs", type=int, default=3)
    args = parser.parse_args()
    if not probe().tenant_cpu_shares:
        print("this machine offers no writable cgroup v1 cpu, pids and freezer hierarchies: nothing to measure")
        return 1
    root = Path(tempfile.mkdtemp(prefix="rh-bench-tenant-"))
    os.chmod(root, 0o755)
    plugin = root / "burn"
    plugin.mkdir(mode=0o755)
    (plugin / "burn.py").write_text(BURN)
    os.chmod(plugin / "burn.py", 0o644)

    quiet_share: list[float] = []
    per_run: list[tuple[float, float]] = []
    with ForkServerBackend(prefork=1) as backend:
        one_round(backend, plugin, 1, 0.05)  # start the zygotes, warm up
        print(
            f"# bench_tenant_cpu: {os.cpu_count()} cores; busy tenant {args.busy_runs} runs, quiet tenant 1, "
            f"{args.seconds:g} s each, at once"
        )
        for i in range(args.rounds):
            cpu = one_round(backend, plugin, args.busy_runs, args.seconds)
            share = cpu["quiet"] / (cpu["quiet"] + cpu["busy"])
            quiet_share.append(share)
            per_run.append((cpu["busy"] / args.busy_runs, cpu["quiet"]))
            print(
                f"round {i + 1}: busy tenant {cpu['busy']:7.0f} ms of CPU, quiet tenant "
                f"{cpu['quiet']:6.0f} ms: quiet's share {share:.2f}"
            )
    ratio = statistics.median(q / b for b, q in per_run)
    print()
    print(
        f"quiet tenant's share of the runs' CPU (median): {statistics.median(quiet_share):.2f} (equal shares: 0.50; "
        f"one per run: {1 / (args.busy_runs + 1):.2f}); its run's CPU / a busy run's: {ratio:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
