"""Several rh-host processes on one machine: none removes what another uses.

Each process owns the run cgroups it made and one pin per tenant dir it uses (see
:mod:`rh_sandbox.linux.cgroups`). Before pins, one process's sweep or close removed a tenant dir another
process's zygote was about to join: the zygote's join failed with ENODEV, a "sandbox fault" (22 of
30 runs here with two fork-server loops). The loops are real processes, each making, using and
closing a backend per run, as ``rh-host run``, ``plugin test`` and ``doctor`` do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rh_sandbox.linux.cgroups import CgroupV1, group_dir_name
from tests.sandbox.conftest import copy_plugin

LOOP = Path(__file__).parent / "side_by_side" / "backend_loop.py"
RUNS = 12


@pytest.fixture(scope="module")
def needs_tenant_dirs() -> None:
    if not {"cpu", "pids"} <= set(CgroupV1().controllers) or not CgroupV1().available:
        pytest.skip("no writable cgroup v1 cpu, pids and freezer hierarchies on this machine")


@pytest.mark.usefixtures("needs_strict", "needs_tenant_dirs")
@pytest.mark.parametrize("other", ["forkserver", "strict"])
def test_two_hosts_side_by_side_never_remove_each_others_tenant_dirs(other: str, world_dir: Path) -> None:
    plugin = copy_plugin("good", world_dir / "good")
    group = f"side-by-side-{os.getpid()}"  # one tenant, run by both processes
    loops = [
        subprocess.Popen(
            [sys.executable, str(LOOP), str(plugin), group, str(RUNS), kind],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for kind in ("forkserver", other)
    ]
    reports = []
    for loop in loops:
        out, err = loop.communicate(timeout=300)
        assert loop.returncode == 0, err[-2000:]
        reports.append(json.loads(out))
    for report in reports:
        assert report["errors"] == []
        assert report["statuses"] == {"ok": RUNS}
    for controller in ("cpu", "pids"):  # the last one out removed the tenant's dirs
        assert not (Path("/sys/fs/cgroup") / controller / "rh-host" / group_dir_name(group)).exists()


@pytest.mark.usefixtures("needs_tenant_dirs")
def test_a_tenant_dir_another_process_pinned_survives_this_ones_sweep_and_close() -> None:
    group = f"pinned-{os.getpid()}"
    pinner = subprocess.Popen(
        [sys.executable, "-c", "import os, sys\nfrom rh_sandbox.linux.cgroups import CgroupV1\n"
         f"fd = CgroupV1().group_procs({group!r})\nprint('pinned', flush=True)\nsys.stdin.read()\n"
         "os.write(fd, b'0')\nprint('joined', flush=True)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert pinner.stdout is not None and pinner.stdout.readline() == "pinned\n"
        mine = CgroupV1()
        mine.create(memory_mb=64, max_processes=8, group=group).close()
        mine.remove_group_dirs()  # this process's close
        CgroupV1().sweep_stale(min_age_s=0)  # and a sweep
        tenant = Path("/sys/fs/cgroup/cpu/rh-host") / group_dir_name(group)
        assert tenant.is_dir()
        out, _ = pinner.communicate("", timeout=30)  # the pinner's join, after both
        assert pinner.returncode == 0 and out == "joined\n"
    finally:
        if pinner.poll() is None:
            pinner.kill()
        pinner.wait()
    CgroupV1().sweep_stale()  # the pinner is gone: its pin and the emptied dir go
    assert not tenant.exists()
