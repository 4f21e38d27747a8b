"""Which cgroup backend this machine gets: v2 where ``/sys/fs/cgroup`` is the unified hierarchy,
else v1 (whose ``available`` is False where no writable v1 hierarchies are mounted either)."""

from __future__ import annotations

from rh_sandbox.linux.cgroups import CgroupV1
from rh_sandbox.linux.cgroups_v2 import CgroupV2, cgroup_v2_root

__all__ = ["Cgroups", "machine_cgroups"]

Cgroups = CgroupV1 | CgroupV2


def machine_cgroups(*, group_max_tasks: int | None = None, v1_controllers: list[str] | None = None) -> Cgroups:
    """The backend for this machine; ``v1_controllers``: on a v1 machine, only these hierarchies
    (default: every writable one rh-host uses)."""
    root = cgroup_v2_root()
    if root is not None:
        return CgroupV2(root, group_max_tasks=group_max_tasks)
    return CgroupV1(v1_controllers, group_max_tasks=group_max_tasks)
