"""A level per tenant in the cpu and pids hierarchies: every sandboxed process of a tenant counts
against its weight, every run's task against its task total.

The fairness this buys (a tenant with three runs in flight no longer gets three times the CPU of one
with one) is measured by bench/bench_tenant_cpu.py; these tests check where each process is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rh_sandbox.linux.cgroups import CgroupV1, group_dir_name
from rh_sandbox.linux.uids import default_uids
from rh_sandbox.python.forkserver import ForkServerBackend, run_cgroups
from rh_sandbox.python.process import ProcessBackend
from rh_sandbox.python.strict import StrictProcessBackend
from rh_sandbox.types import Limits, RunStatus
from tests.sandbox.conftest import make_runner

CPU = Path("/sys/fs/cgroup/cpu/rh-host")

WHERE = """
from rh_sdk import ResultHandler


class Where(ResultHandler):
    def handle(self, batch_id, results, metadata):
        where = {}
        for line in open("/proc/self/cgroup").read().splitlines():
            _, controllers, path = line.split(":", 2)
            where.update(dict.fromkeys(controllers.split(","), path))
        return where
"""


@pytest.fixture(scope="module")
def needs_cpu_hierarchy() -> None:
    if "cpu" not in CgroupV1().controllers or not CgroupV1().available:
        pytest.skip("no writable cgroup v1 cpu, pids and freezer hierarchies on this machine")


def where_plugin(root: Path) -> Path:
    plugin = root / "where"
    plugin.mkdir(mode=0o755)
    (plugin / "where.py").write_text(WHERE)
    os.chmod(plugin / "where.py", 0o644)
    return plugin


def test_a_groups_dir_name_is_the_group_when_safe_and_a_digest_otherwise() -> None:
    assert group_dir_name("acme-1.prod_eu") == "tenant-acme-1.prod_eu"
    hashed = {group_dir_name(group) for group in ("a/b", "..", ".", "x" * 65, "über", "a b", "")}
    assert len(hashed) == 7  # distinct groups, distinct dirs
    assert all(name.startswith("tenant=") and "/" not in name and len(name) == 39 for name in hashed)
    assert group_dir_name("a/b") == group_dir_name("a/b")  # stable: the same tenant, the same dir


def _check_runs_in_tenant_dirs(run: Callable, plugin: Path) -> None:
    for group in ("acme", "other tenant/x"):
        result = run(plugin, "where:Where", group=group)
        assert result.status.value == "ok", result.error
        where = result.reply.output
        run_name = where["pids"].rpartition("/")[2]
        assert where["memory"].endswith(f"/rh-host/{run_name}")  # the other hierarchies stay flat
        for controller in ("cpu", "pids"):
            assert where[controller].endswith(f"/rh-host/{group_dir_name(group)}/{run_name}")


@pytest.mark.usefixtures("needs_strict", "needs_cpu_hierarchy")
def test_fork_server_runs_and_zygotes_are_in_their_tenants_dir(world_dir: Path) -> None:
    plugin = where_plugin(world_dir)
    uids = default_uids()
    with ForkServerBackend(prefork=1) as backend:
        _check_runs_in_tenant_dirs(make_runner(backend), plugin)
        for group in ("acme", "other tenant/x"):  # the zygote's forks count against its tenant too
            members = (CPU / group_dir_name(group) / "cgroup.procs").read_text().split()
            assert members
            for pid in members:
                status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
                assert status["Uid"].split()[0] == str(uids.uid_for(group))
            assert any(b"_rh_zygote.py" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in members)
    assert not (CPU / "tenant-acme").exists()  # removed with the backend's last zygote


@pytest.mark.usefixtures("needs_cpu_hierarchy")
@pytest.mark.parametrize("cold", [ProcessBackend, StrictProcessBackend], ids=["basic", "strict"])
def test_cold_runs_are_in_their_tenants_dir(
    cold: type[ProcessBackend], world_dir: Path, request: pytest.FixtureRequest
) -> None:
    if cold is StrictProcessBackend:
        request.getfixturevalue("needs_strict")
    backend = cold()
    try:
        _check_runs_in_tenant_dirs(make_runner(backend), where_plugin(world_dir))
    finally:
        backend.close()
    assert not (CPU / "tenant-acme").exists()  # removed when the backend closed


@pytest.mark.usefixtures("needs_cpu_hierarchy")
def test_a_sweep_removes_a_gone_hosts_runs_in_tenant_dirs_and_the_emptied_dirs() -> None:
    made = subprocess.run(
        [sys.executable, "-c", "from rh_sandbox.linux.cgroups import CgroupV1\n"
         "print(CgroupV1().create(memory_mb=64, max_processes=8, group='swept').paths['cpu'])"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    left = Path(made.stdout.strip())  # its maker exited without removing it
    assert left.parent == CPU / "tenant-swept" and left.is_dir()
    busy = CPU / "tenant-busy"
    busy.mkdir(exist_ok=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        CgroupV1().sweep_stale(min_age_s=3600)
        assert not left.exists() and not left.parent.exists()
        assert busy.is_dir()  # a process in it: a live tenant's
    finally:
        sleeper.kill()
        sleeper.wait()
    deadline = time.monotonic() + 5
    while busy.exists() and time.monotonic() < deadline:  # the sleeper's exit leaves the cgroup shortly
        CgroupV1().sweep_stale()
        time.sleep(0.01)
    assert not busy.exists()


@pytest.mark.usefixtures("needs_strict", "needs_cpu_hierarchy")
def test_emptied_cgroups_are_pooled_per_tenant_and_the_fullest_pool_gives_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fork server reuses emptied run cgroups, now each in its tenant's dir: a pooled cgroup goes to
    its own tenant's next run, and a full pool drops from the tenant with the most (one that stopped
    running must not keep the others making cgroups)."""
    monkeypatch.setattr(run_cgroups, "_POOL_MAX", 3)
    with ForkServerBackend(prefork=0) as backend:
        made = {
            group: [backend.cgroups.create(memory_mb=64, max_processes=8, group=group) for _ in range(n)]
            for group, n in (("quiet", 3), ("busy", 2))
        }
        for cgroup in made["quiet"] + made["busy"]:
            backend._run_cgroups.recycle(cgroup)
        q1, q2, q3 = made["quiet"]
        assert not q1.paths["cpu"].exists() and not q2.paths["cpu"].exists()  # the oldest of the fullest
        taken = [backend._run_cgroups.pooled("busy"), backend._run_cgroups.pooled("busy")]
        assert set(map(id, taken)) == set(map(id, made["busy"]))
        assert backend._run_cgroups.pooled("busy") is None  # never another tenant's
        assert backend._run_cgroups.pooled("quiet") is q3 and q3.paths["cpu"].parent.name == "tenant-quiet"
        for cgroup in [*taken, q3]:
            cgroup.close()
    assert not (CPU / "tenant-quiet").exists() and not (CPU / "tenant-busy").exists()


STORM = """
import os
import time

from rh_sdk import ResultHandler


class Storm(ResultHandler):
    def handle(self, batch_id, results, metadata):
        for _ in range(self.config["forks"]):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            time.sleep(self.config["pause"])
        time.sleep(self.config["hold"])
        return {"forked": self.config["forks"]}
"""


@pytest.mark.usefixtures("needs_strict", "needs_cpu_hierarchy")
def test_a_tenants_runs_together_stop_at_its_task_total_while_another_tenant_forks(world_dir: Path) -> None:
    """Three runs of one tenant, each forking 24 tasks (within its own max_processes of 32), hold 75
    together without a total; with a total of 40 they stop there, and another tenant's run, forking
    too, succeeds meanwhile."""
    plugin = world_dir / "storm"
    plugin.mkdir(mode=0o755)
    (plugin / "storm.py").write_text(STORM)
    os.chmod(plugin / "storm.py", 0o644)
    limits = Limits(wall_seconds=30, max_processes=32)
    storm = {"forks": 24, "pause": 0.02, "hold": 1.0}
    pids = Path("/sys/fs/cgroup/pids/rh-host") / group_dir_name("stormer")
    with ForkServerBackend(prefork=3, group_max_tasks=40) as backend:
        run = make_runner(backend)
        with ThreadPoolExecutor(4) as pool:
            storms = [pool.submit(run, plugin, "storm:Storm", storm, limits=limits, group="stormer") for _ in range(3)]
            time.sleep(0.3)  # the storm is on
            quiet = run(plugin, "storm:Storm", {"forks": 5, "pause": 0, "hold": 0}, limits=limits, group="quiet")
            results = [future.result(timeout=60) for future in storms]
        assert quiet.status is RunStatus.OK, quiet.error
        assert (pids / "pids.max").read_text().strip() == "40"
        assert int((pids / "pids.peak").read_text()) <= 40
        refused = [r for r in results if r.status is RunStatus.CRASHED and "process limit" in (r.error or "")]
        assert refused, [(r.status, r.error) for r in results]  # the total, not any run's own limit, refused


@pytest.mark.usefixtures("needs_cpu_hierarchy")
def test_a_tenant_dir_removed_from_outside_is_made_and_pinned_again() -> None:
    """An operator's clean-up removed a tenant's dirs, pin and all: the next run's cgroup makes them
    again, with a pin, instead of failing."""
    cgroups = CgroupV1()
    cgroups.create(memory_mb=64, max_processes=8, group="cleaned").close()
    dirs = [Path("/sys/fs/cgroup", controller, "rh-host", "tenant-cleaned") for controller in ("cpu", "pids")]
    for tenant in dirs:
        pins = [entry for entry in tenant.iterdir() if entry.is_dir()]
        assert [pin.name.split("-")[1] for pin in pins] == ["pin"]
        pins[0].rmdir()
        tenant.rmdir()
    run = cgroups.create(memory_mb=64, max_processes=8, group="cleaned")
    try:
        for controller, tenant in zip(("cpu", "pids"), dirs, strict=True):
            assert run.paths[controller].parent == tenant
            assert sum(1 for entry in tenant.iterdir() if entry.is_dir() and "-pin-" in entry.name) == 1
    finally:
        run.close()
        cgroups.remove_group_dirs()
    assert not any(tenant.exists() for tenant in dirs)


@pytest.mark.usefixtures("needs_cpu_hierarchy")
def test_a_killed_runs_cgroup_gets_its_cpu_quota_back_when_reused() -> None:
    """Killing lifts the CPU quota (the dying exit at once); a pooled cgroup set to the same limits
    again must get the quota back, not keep running without one."""
    cgroups = CgroupV1()
    run = cgroups.create(memory_mb=64, max_processes=8, cpu_quota_cores=0.5, group="requota")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        run.add(sleeper.pid)
        run.kill()
        assert (run.paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "-1"
        run.set_limits(memory_mb=64, max_processes=8, cpu_quota_cores=0.5)
        assert (run.paths["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
    finally:
        sleeper.wait()
        run.close()
        cgroups.remove_group_dirs()
