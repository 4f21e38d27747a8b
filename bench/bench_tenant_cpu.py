"""How the CPU is shared between tenants when one has more runs in flight than another.

    .venv/bin/python bench/bench_tenant_cpu.py                # ~25 s on 2 cores
    .venv/bin/python bench/bench_tenant_cpu.py --rounds 5 --seconds 3

Tenant "busy" starts ``--busy-runs`` CPU-bound runs (each spins for ``--seconds``) and tenant "quiet"
one, all at once, through one fork server (strict, each run capped at one core). Two cgroup layouts,
alternated round by round in the same process:

  per tenant  what rh-host does: in the cpu hierarchy each run's cgroup is in its tenant's dir
              (``rh-host/tenant-<group>/``), so the scheduler splits the CPU between tenants first
  flat        every run's cgroup directly under ``rh-host/`` (the layout before): each run weighs
              the same, so a tenant's share grows with the number of its runs in flight

Each run's CPU is its cgroup's ``cpuacct.usage``. On 2 cores, with 3 busy runs and 1 quiet: per tenant,
the quiet tenant should get about a core (half the machine); flat, about a quarter of the runs' CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from rh_sandbox.cgroups import CgroupV1, RunCgroup
from rh_sandbox.python.forkserver import ForkServerBackend
from rh_sandbox.types import Limits, RunResult, RunSpec, RunStatus
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


class FlatCgroups(CgroupV1):
    """The layout before tenants had a level in the cpu hierarchy: every run's cgroup under rh-host/."""

    def create(self, **kwargs: object) -> RunCgroup:  # type: ignore[override]
        kwargs["tenant"] = None
        return super().create(**kwargs)  # type: ignore[arg-type]

    def tenant_procs(self, tenant: str) -> int | None:
        return None


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
    if not CgroupV1().available or "cpu" not in CgroupV1().controllers:
        print("this machine offers no writable cgroup v1 cpu, pids and freezer hierarchies: nothing to compare")
        return 1
    root = Path(tempfile.mkdtemp(prefix="rh-bench-tenant-"))
    os.chmod(root, 0o755)
    plugin = root / "burn"
    plugin.mkdir(mode=0o755)
    (plugin / "burn.py").write_text(BURN)
    os.chmod(plugin / "burn.py", 0o644)

    layouts = {"per tenant": CgroupV1, "flat": FlatCgroups}
    backends = {name: ForkServerBackend(prefork=1, cgroups=make()) for name, make in layouts.items()}
    quiet_share: dict[str, list[float]] = {name: [] for name in layouts}
    per_run: dict[str, list[tuple[float, float]]] = {name: [] for name in layouts}
    try:
        for backend in backends.values():  # start the zygotes, warm up
            one_round(backend, plugin, 1, 0.05)
        print(
            f"# bench_tenant_cpu: {os.cpu_count()} cores; busy tenant {args.busy_runs} runs, quiet tenant 1, "
            f"{args.seconds:g} s each, at once"
        )
        for i in range(args.rounds):
            for name, backend in backends.items():
                cpu = one_round(backend, plugin, args.busy_runs, args.seconds)
                share = cpu["quiet"] / (cpu["quiet"] + cpu["busy"])
                quiet_share[name].append(share)
                per_run[name].append((cpu["busy"] / args.busy_runs, cpu["quiet"]))
                print(
                    f"round {i + 1}, {name:10s}: busy tenant {cpu['busy']:7.0f} ms of CPU, quiet tenant "
                    f"{cpu['quiet']:6.0f} ms: quiet's share {share:.2f}"
                )
    finally:
        for backend in backends.values():
            backend.close()
    fair = 1 / 2
    print()
    print("layout      quiet tenant's share of the runs' CPU (median)   its run's CPU / a busy run's")
    for name in layouts:
        ratio = statistics.median(q / b for b, q in per_run[name])
        print(
            f"{name:10s}  {statistics.median(quiet_share[name]):.2f} (equal shares: {fair:.2f}; "
            f"one per run: {1 / (args.busy_runs + 1):.2f}){'':8s}{ratio:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
