"""Inside the test VM (tests/vm/test-cgroup-v2.sh): the guest is the machine the other modules there
are meant for, so that their passing says something about cgroup v2. Skipped outside the VM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rh_sandbox.linux.cgroup_backends import machine_cgroups

pytestmark = pytest.mark.skipif("RH_VM_SCRATCH" not in os.environ, reason="runs inside tests/vm/vmrun only")


def test_cgroup2_is_the_only_hierarchy_and_rh_host_uses_it() -> None:
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    assert [m[1] for m in mounts if m[2] == "cgroup2"] == ["/sys/fs/cgroup"]
    assert not [m for m in mounts if m[2] == "cgroup"]  # no v1 hierarchy
    cgroups = machine_cgroups()
    assert cgroups.version == 2 and cgroups.available
    assert os.geteuid() == 0
