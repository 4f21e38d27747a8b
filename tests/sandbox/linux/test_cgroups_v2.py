"""The cgroup v2 backend on a cgroup-v2-only machine (run in the VM: tests/vm/vmrun, as root).

The layout keeps processes in leaves only, limits land in the run's own files, a whole tree (a setsid
daemon too) dies with its run, and one process never touches another live process's subtree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rh_sandbox.linux.cgroup_backends import machine_cgroups
from rh_sandbox.linux.cgroups import group_dir_name
from rh_sandbox.linux.cgroups_v2 import CgroupV2, RunCgroupV2, _remove_tree, cgroup_v2_root

pytestmark = pytest.mark.skipif(
    cgroup_v2_root() is None or os.geteuid() != 0, reason="needs a cgroup-v2-only machine, as root (tests/vm/vmrun)"
)


@pytest.fixture
def cgroups() -> Iterator[CgroupV2]:
    made = machine_cgroups()
    assert isinstance(made, CgroupV2) and made.available
    yield made
    made.remove_group_dirs()


def _join(path: Path) -> str:
    """A shell prefix that moves the shell into the cgroup at ``path`` first."""
    return f"echo $$ > {path}/cgroup.procs; "


def _gone(pid: int) -> bool:
    """Whether the process is dead (gone, or a zombie its new parent has yet to reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _wait(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_runs_and_zygotes_sit_in_leaves_under_their_groups_dir(cgroups: CgroupV2) -> None:
    run = cgroups.create(memory_mb=64, max_processes=8, cpu_quota_cores=0.5, group="acme")
    try:
        assert isinstance(run, RunCgroupV2)
        group_dir = cgroups.home / group_dir_name("acme")
        assert run.path.parent == group_dir and cgroups.home.parent == Path("/sys/fs/cgroup/rh-host")
        for level in (cgroups.home.parent, cgroups.home, group_dir):  # controllers handed down
            assert {"memory", "pids", "cpu"} <= set((level / "cgroup.subtree_control").read_text().split())
        assert (group_dir / "pids.max").read_text().strip() == str(cgroups.group_max_tasks)
        assert (run.path / "memory.max").read_text().strip() == str(64 << 20)
        assert (run.path / "memory.swap.max").read_text().strip() == "0"
        assert (run.path / "pids.max").read_text().strip() == "8"
        assert (run.path / "cpu.max").read_text().strip() == "50000 100000"
        fd = cgroups.group_procs("acme")
        try:
            zygote = subprocess.Popen(["sleep", "30"], pass_fds=[fd], preexec_fn=lambda: os.write(fd, b"0"))
        finally:
            os.close(fd)
        try:
            assert (group_dir / "cgroup.procs").read_text() == ""  # no internal processes
            assert f"/{group_dir_name('acme')}/zygotes" in Path(f"/proc/{zygote.pid}/cgroup").read_text()
        finally:
            zygote.kill()
            zygote.wait()
    finally:
        run.close()
    assert not run.path.exists()


def test_a_setsid_daemon_dies_with_its_run(cgroups: CgroupV2) -> None:
    run = cgroups.create(memory_mb=64, max_processes=8, group="daemons")
    daemon = subprocess.run(
        ["sh", "-c", _join(run.path) + "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    pid = int(daemon.stdout)
    assert pid in run.pids()
    run.close()
    assert _wait(lambda: _gone(pid))
    assert not run.path.exists()


def test_oom_and_refused_forks_are_counted_per_run(cgroups: CgroupV2) -> None:
    run = cgroups.create(memory_mb=32, max_processes=4, group="hogs")
    try:
        run.reset_usage()
        hog = subprocess.run(["sh", "-c", _join(run.path) + f"exec {sys.executable} -c 'b\"x\" * (96 << 20)'"])
        assert hog.returncode == -signal.SIGKILL or hog.returncode == 128 + signal.SIGKILL
        assert run.oom_killed() and not run.pids_limited()
        assert run.peak_memory_kb() >= 30 * 1024
        assert run.cpu_ms() > 0
        subprocess.run(
            ["sh", "-c", _join(run.path) + "for i in 1 2 3 4 5 6; do sleep 2 & done; wait"], stderr=subprocess.DEVNULL
        )
        assert run.pids_limited()
    finally:
        run.close()


def test_a_new_limit_below_what_a_waiting_child_uses_is_refused_not_an_oom_kill(cgroups: CgroupV2) -> None:
    run = cgroups.create(memory_mb=256, max_processes=8, group="waiting")
    child = subprocess.Popen(
        [
            "sh",
            "-c",
            _join(run.path) + f"exec {sys.executable} -c 'x = b\"x\" * (64 << 20); import time; time.sleep(30)'",
        ]
    )
    try:
        assert _wait(lambda: run._counter_int("unified", "memory.current") > 60 << 20)
        with pytest.raises(OSError):
            run.set_limits(memory_mb=32, max_processes=8)
        assert child.poll() is None and not run.oom_killed()
    finally:
        run.close()
        child.wait()


def test_freeze_and_thaw(cgroups: CgroupV2) -> None:
    run = cgroups.create(memory_mb=64, max_processes=8, group="frozen")
    sleeper = subprocess.Popen(["sh", "-c", _join(run.path) + "exec sleep 30"])
    try:
        assert _wait(lambda: sleeper.pid in run.pids())
        run.freezer_state(b"FROZEN")
        assert _wait(lambda: run.freezer_state() == b"FROZEN")
        run.freezer_state(b"THAWED")
        assert run.freezer_state() == b"THAWED"
    finally:
        run.close()
        sleeper.wait()


def test_a_sweep_removes_a_dead_processs_subtree_and_never_a_live_ones(cgroups: CgroupV2) -> None:
    maker = [sys.executable, "-c", "from rh_sandbox.linux.cgroup_backends import machine_cgroups\n"
             "print(machine_cgroups().create(memory_mb=64, max_processes=8, group='swept').path)"]  # fmt: skip
    dead_run = Path(subprocess.run(maker, capture_output=True, text=True, check=True).stdout.strip())
    dead_home = dead_run.parent.parent
    assert dead_home.exists() and dead_home != cgroups.home
    live = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom rh_sandbox.linux.cgroup_backends import machine_cgroups\n"
         "c = machine_cgroups()\nprint(c.create(memory_mb=64, max_processes=8, group='live').path, flush=True)\n"
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert live.stdout is not None
        live_run = Path(live.stdout.readline().strip())
        mine = cgroups.create(memory_mb=64, max_processes=8, group="mine")
        assert cgroups.sweep_stale() >= 1
        assert not dead_home.exists()
        assert live_run.exists() and mine.path.exists()
        mine.close()
    finally:
        assert live.stdin is not None
        live.stdin.close()
        live.wait()
    cgroups.sweep_stale()
    assert not live_run.parent.parent.exists()


def test_backends_of_one_process_share_its_groups_dirs(cgroups: CgroupV2) -> None:
    other = CgroupV2(group_max_tasks=77)
    mine = cgroups.create(memory_mb=64, max_processes=8, group="shared")
    theirs = other.create(memory_mb=64, max_processes=8, group="shared")
    try:
        assert mine.path.parent == theirs.path.parent
        assert (theirs.path.parent / "pids.max").read_text().strip() == "77"  # the last one written holds
        other.remove_group_dirs()
        assert mine.path.parent.exists()  # still used by `cgroups`
    finally:
        mine.close()
        theirs.close()
    cgroups.remove_group_dirs()
    assert not mine.path.parent.exists()


def test_a_killed_runs_cgroup_gets_its_cpu_quota_back_when_reused(cgroups: CgroupV2) -> None:
    run = cgroups.create(memory_mb=64, max_processes=8, cpu_quota_cores=0.5, group="requota")
    sleeper = subprocess.Popen(["sh", "-c", _join(run.path) + "exec sleep 30"])
    try:
        assert _wait(lambda: sleeper.pid in run.pids())
        run.kill()
        assert (run.path / "cpu.max").read_text().split()[0] == "max"  # lifted while the tree died
        run.set_limits(memory_mb=64, max_processes=8, cpu_quota_cores=0.5)
        assert (run.path / "cpu.max").read_text().strip() == "50000 100000"
    finally:
        sleeper.wait()
        run.close()


def test_a_cgroup_whose_peak_cannot_be_reset_is_not_reused(cgroups: CgroupV2) -> None:
    run = cgroups.create(memory_mb=64, max_processes=8, group="peaks")
    try:
        resettable = tuple(int(part) for part in os.uname().release.split(".")[:2]) >= (6, 12)
        assert run.reusable is resettable  # before Linux 6.12 memory.peak is read-only
    finally:
        run.close()


_DELEGATED_SERVICE = """
import subprocess
from rh_sandbox.linux.cgroup_backends import machine_cgroups
cgroups = machine_cgroups()
assert cgroups.available and cgroups.delegated, (cgroups.base, cgroups.controllers)
run = cgroups.create(memory_mb=32, max_processes=8, cpu_quota_cores=0.5, group="svc")
daemon = subprocess.run(
    ["sh", "-c", f"echo $$ > {run.path}/cgroup.procs; setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
    capture_output=True, text=True, check=True,
)
print(run.path, daemon.stdout.strip(), (run.path / "memory.max").read_text().strip(), flush=True)
run.close()
cgroups.remove_group_dirs()
"""


def test_a_non_root_service_uses_only_the_cgroup_delegated_to_it() -> None:
    """As systemd's Delegate=yes gives a service: its cgroup, owned by its uid. rh-host moves itself
    into a leaf of it, makes its subtree there (nothing above it), and cgroup.kill still ends a daemon."""
    delegated = Path("/sys/fs/cgroup") / f"delegated-{os.getpid()}"
    delegated.mkdir()
    try:
        for path in (
            delegated,
            *(delegated / name for name in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads")),
        ):
            os.chown(path, 65534, 65534)
        service = subprocess.run(
            ["sh", "-c", 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"', "sh", str(delegated),
             "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", _DELEGATED_SERVICE],
            capture_output=True, text=True, env={**os.environ, "HOME": "/tmp"}, timeout=120,
        )  # fmt: skip
        assert service.returncode == 0, service.stderr
        run_path, daemon_pid, memory_max = service.stdout.split()
        assert Path(run_path).is_relative_to(delegated / "rh-host")
        assert memory_max == str(32 << 20)
        assert _wait(lambda: _gone(int(daemon_pid)))
        assert (delegated / "supervisor").is_dir()  # where the service moved itself
    finally:
        _remove_tree(delegated)
    assert not delegated.exists()
