"""Run cgroups for a fork server's children: made per group, and emptied ones kept for reuse.

A cgroup is made only when none is pooled, so the pool settles at the most that were in use at once
and a steady load makes none (cgroup v1: making and removing one costs ~0.65 ms of CPU here, a
seventh of a whole pre-forked run)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

from rh_sandbox.linux.cgroup_backends import Cgroups
from rh_sandbox.linux.cgroups import RunCgroup
from rh_sandbox.types import Limits

__all__ = ["RunCgroups", "freeze", "kill_members", "occupied", "thaw"]

_POOL_MAX = 64  # emptied run cgroups kept for reuse, at most
_FREEZE_TIMEOUT_S = 0.5  # how long a waiting child's cgroup may take to freeze


class RunCgroups:
    """Takes and recycles the run cgroups of every group. Its lock guards the pool of emptied ones."""

    def __init__(self, cgroups: Cgroups, cpu_quota_cores: float | None) -> None:
        self.cgroups = cgroups
        self.cpu_quota_cores = cpu_quota_cores
        self._lock = threading.Lock()
        self._pool: dict[str | None, list[RunCgroup]] = {}  # per group (its dir of the cpu hierarchy)
        self._closed = False

    def for_arming(self, group: str) -> RunCgroup | None:
        """A cgroup for a child armed ahead of its run (its run's limits are set at claim)."""
        return self.pooled(group) or self.cgroups.for_run(Limits(), self.cpu_quota_cores, group=group)

    def for_run(self, group: str, limits: Limits) -> RunCgroup | None:
        """A cgroup set to ``limits`` with its counters reset, pooled or made now (None: no cgroups)."""
        cgroup = self.pooled(group)
        if cgroup is not None:
            try:
                self.fit(cgroup, limits, reset=True)
                return cgroup
            except OSError:  # removed from outside while pooled: the run gets a new one
                cgroup.close()
        return self.cgroups.for_run(limits, self.cpu_quota_cores, group=group)

    def fit(self, cgroup: RunCgroup, limits: Limits, *, reset: bool) -> None:
        """Set a claimed child's cgroup to its run's limits (raises OSError: e.g. its waiting child
        already uses more than this run's memory limit); ``reset``: its counters still hold its
        previous run's."""
        cgroup.set_limits(
            memory_mb=limits.memory_mb, max_processes=limits.max_processes, cpu_quota_cores=self.cpu_quota_cores
        )
        if reset:
            cgroup.reset_usage()

    def pooled(self, group: str) -> RunCgroup | None:
        with self._lock:
            pooled = self._pool.get(group)
            return pooled.pop() if pooled else None

    def recycle(self, cgroup: RunCgroup) -> None:
        """Pool an emptied cgroup for the next armed child of its group, unless it carries events a
        reset cannot clear (an OOM kill, a refused fork): those are removed. Beyond ``_POOL_MAX`` in
        all, the oldest of the group with the most pooled goes (a group that stopped running does
        not keep the others' runs making cgroups). Once closed, every cgroup is removed."""
        if occupied(cgroup) or cgroup.oom_killed() or cgroup.pids_limited() or not cgroup.reusable:
            cgroup.close()
            return
        with self._lock:
            if self._closed:
                evicted: RunCgroup | None = cgroup
            else:
                self._pool.setdefault(cgroup.group, []).append(cgroup)
                evicted = None
                if sum(map(len, self._pool.values())) > _POOL_MAX:
                    evicted = max(self._pool.values(), key=len).pop(0)
        if evicted is not None:
            evicted.close()

    def close(self) -> None:
        """Remove the pooled cgroups and the group dirs (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pooled = [c for cgroups in self._pool.values() for c in cgroups]
            self._pool = {}
        for cgroup in pooled:
            cgroup.close()
        self.cgroups.remove_group_dirs()

    def pooled_count(self) -> int:
        """Emptied cgroups waiting for reuse (for tests and metrics)."""
        with self._lock:
            return sum(map(len, self._pool.values()))


def _members(cgroup: RunCgroup) -> list[int] | None:
    """The processes in the run's cgroup, from one ``cgroup.procs`` (None: unreadable). One file is
    enough: the child joins all of the run's hierarchies before anything else, its descendants
    inherit them, and nothing else is ever put there."""
    try:
        with open(next(iter(cgroup.paths.values())) / "cgroup.procs", "rb") as procs:
            return [int(pid) for pid in procs.read().split()]
    except (OSError, StopIteration, ValueError):
        return None


def kill_members(cgroup: RunCgroup) -> None:
    """SIGKILL every process in the run's cgroup."""
    for pid in _members(cgroup) or []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def occupied(cgroup: RunCgroup) -> bool:
    """Whether any process is left in the run's cgroup (the usual answer is no: the child is pid 1 of
    its namespace, so its end took everything in it along); an unreadable cgroup counts as occupied."""
    return _members(cgroup) != []


def freeze(cgroup: RunCgroup) -> bool:
    """Freeze every process in the cgroup (a waiting child that ran plugin code: nothing of it runs
    until its run thaws it). False, thawed again, when it did not freeze in ``_FREEZE_TIMEOUT_S``
    or the cgroup has no freezer. Raises OSError when the cgroup is gone."""
    if not cgroup.can_freeze:
        return False
    deadline = time.monotonic() + _FREEZE_TIMEOUT_S
    state = cgroup.freezer_state(b"FROZEN")
    while state != b"FROZEN":  # FREEZING: a task not yet at a point where it can stop
        if time.monotonic() > deadline:
            thaw(cgroup)
            return False
        time.sleep(0.001)
        state = cgroup.freezer_state()
    return True


def thaw(cgroup: RunCgroup) -> None:
    """Let a frozen child run again (its run claimed it). Raises OSError when the cgroup is gone."""
    if cgroup.can_freeze:
        cgroup.freezer_state(b"THAWED")
