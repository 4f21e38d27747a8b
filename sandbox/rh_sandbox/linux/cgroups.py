"""Per-run cgroups (v1 hierarchies, as this kind of machine offers): the one reliable handle on a tree.

A double-forked ``setsid`` daemon escapes ``killpg`` and psutil's ``children()``; it cannot leave its
cgroup. Each run gets one cgroup in each of the memory, pids, cpuacct and freezer hierarchies (cpu too
when a CPU quota or a group is given). Killing is freeze, SIGKILL every member, lift the CPU quota,
thaw: a frozen fork bomb cannot fork while it is being killed.

In the cpu and pids hierarchies a run's cgroup sits in its group's (``rh-host/tenant-<group>/``). In
the cpu hierarchy, which holds that group's fork server too, the scheduler shares the CPU between
groups by weight first, then between each group's runs, so a group with many runs in flight does
not starve one with few. In the pids hierarchy the group's dir has a ``pids.max`` of its own (the
group's task total), so a group's runs together cannot take the host's last pids.

Several rh-host processes share these dirs. What each owns: the run cgroups it made (their names
start with its pid and start time), and one *pin* per group dir it uses (an empty cgroup named the
same way). A group's dir holding a pin cannot be removed (the kernel refuses ``rmdir`` of a cgroup
with children), so a process that joins or creates in a dir it has pinned never finds it gone; a
process removes only its own cgroups and pins, and a sweep those of processes that are gone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rh_sandbox.types import Limits, SandboxError

__all__ = [
    "CgroupV1",
    "RunCgroup",
    "RunCgroups",
    "cgroup_v1_controllers",
    "default_group_max_tasks",
    "group_dir_name",
    "owner_alive",
    "owner_of",
    "write_file",
]

_ROOT = Path("/sys/fs/cgroup")
_WANTED = ("memory", "pids", "cpuacct", "freezer", "cpu")
_PARENT = "rh-host"
_GROUP_CONTROLLER = "cpu"  # the hierarchy whose group dir a fork server's zygote joins (its forks: its weight)
# the hierarchies with a level per group: cpu (its weight, cpu.shares) and pids (its task total, pids.max)
_GROUP_CONTROLLERS = ("cpu", "pids")
_PIN = "pin"  # a pin's name: <pid>.<start>-pin-<random>
_GROUP_MAX_TASKS = 4096  # the default task total of one group, at most a quarter of the host's pid_max
# a group dir's name: the group's own name; the digest of one that is not a safe name (see group_dir_name)
_GROUP_DIR_PREFIXES = ("tenant-", "tenant=")
_SAFE_GROUP = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_T = TypeVar("_T")


def _writable_controller(name: str) -> bool:
    path = _ROOT / name
    # v1 hierarchies have a "tasks" file; the unified (v2) one does not
    return (path / "tasks").exists() and os.access(path, os.W_OK)


def cgroup_v1_controllers() -> list[str]:
    """The v1 controllers this process may create child cgroups in."""
    return [c for c in _WANTED if _writable_controller(c)]


def group_dir_name(group: str) -> str:
    """The cgroup dir of one group in the cpu and pids hierarchies: ``tenant-<group>`` when the group is
    a safe path component, else ``tenant=<digest>`` (a group is an opaque string). The ``tenant``
    prefixes are on-disk names that older rh-host processes on the same machine recognise: keep them."""
    if _SAFE_GROUP.fullmatch(group) and group not in (".", ".."):
        return f"tenant-{group}"
    return f"tenant={hashlib.sha256(group.encode()).hexdigest()[:32]}"


def default_group_max_tasks() -> int:
    """The default task total of one group: 4096, or a quarter of ``kernel.pid_max`` if that is less,
    so that a few groups at their totals still leave the host pids to fork."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return _GROUP_MAX_TASKS
    return max(1, min(_GROUP_MAX_TASKS, pid_max // 4))


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None if it
    is gone: with its pid, it names one process for good (a pid alone is reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat.rpartition(b")")[2].split()[19].decode()


@functools.cache
def owner_of(pid: int) -> str:
    return f"{pid}.{_start_time(pid)}"


def owner_alive(name: str) -> bool | None:
    """Whether the host process that made the cgroup ``name`` still runs; None: a name that carries
    no owner (made by an older rh-host)."""
    owner, sep, _ = name.partition("-")
    pid, dot, start = owner.partition(".")
    if not (sep and dot and pid.isdigit() and start.isdigit()):
        return None
    return _start_time(int(pid)) == start


def _has_subdirs(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return any(entry.is_dir() for entry in os.scandir(path))
    return False


def _in_made_dir(parent: Path, act: Callable[[], _T]) -> _T:
    """``act()`` on something in ``parent``, made first (and again if a sweep removed an emptied
    group dir in between)."""
    for _ in range(3):
        parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            return act()
    raise FileNotFoundError(f"{parent} keeps disappearing")


def _made(path: Path) -> Path:
    path.mkdir()
    return path


def write_file(path: Path, value: str) -> None:
    """One write(2) of ``value``: a cgroup file takes each write as one command."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


@dataclass
class RunCgroup:
    """One run's cgroups. ``close()`` kills whatever is left and removes them."""

    paths: dict[str, Path]
    owner_uid: int | None = None
    group: str | None = None  # the group whose dir holds it in the cpu hierarchy
    _closed: bool = field(default=False, repr=False)
    _limits: tuple = field(default=(), repr=False)  # what set_limits last wrote: skip rewriting it
    _files: dict[str, int] = field(default_factory=dict, repr=False)  # counters kept open, read with pread

    def _counter(self, controller: str, name: str) -> bytes:
        """A counter file's content. Its descriptor stays open: pread is ~1 us, an open-read-close of a
        cgroup file ~15 us, and a run reads three or four of them after its reply. (Not for
        ``cgroup.procs``: cgroup v1 lists its members as of the open.)"""
        key = f"{controller}/{name}"
        fd = self._files.get(key)
        if fd is None:
            if self._closed:
                raise OSError(f"cgroup {self.paths[controller]} was removed")
            fd = os.open(self.paths[controller] / name, os.O_RDONLY | os.O_CLOEXEC)
            if self._files.setdefault(key, fd) != fd:  # another thread opened it meanwhile
                os.close(fd)
                fd = self._files[key]
        return os.pread(fd, 4096, 0)

    @property
    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in self.paths.values()]

    def set_limits(
        self, *, memory_mb: int | None, max_processes: int | None, cpu_quota_cores: float | None = None
    ) -> None:
        """(Re)set the limits; the fork server sets them when a pre-joined cgroup is claimed by a run."""
        wanted = (memory_mb, max_processes, cpu_quota_cores)
        if wanted == self._limits:
            return  # each write to a cgroup file costs ~0.1-0.2 ms on the hot path
        self._limits = ()
        paths = self.paths
        if memory_mb and "memory" in paths:
            limit = str(memory_mb * 1024 * 1024)
            memsw = paths["memory"] / "memory.memsw.limit_in_bytes"
            with contextlib.suppress(OSError):  # raising: memsw first (it may never be below the limit)
                write_file(memsw, limit)
            write_file(paths["memory"] / "memory.limit_in_bytes", limit)
            with contextlib.suppress(OSError):  # lowering: memsw after; swap accounting may be off
                write_file(memsw, limit)
        if max_processes and "pids" in paths:
            write_file(paths["pids"] / "pids.max", str(max_processes))
        if cpu_quota_cores and "cpu" in paths:
            write_file(paths["cpu"] / "cpu.cfs_period_us", "100000")
            write_file(paths["cpu"] / "cpu.cfs_quota_us", str(int(cpu_quota_cores * 100000)))
        self._limits = wanted

    def reset_usage(self) -> None:
        """Zero the peak-memory and CPU counters (what a waiting child used is not the run's)."""
        if "memory" in self.paths:
            write_file(self.paths["memory"] / "memory.max_usage_in_bytes", "0")
        if "cpuacct" in self.paths:
            write_file(self.paths["cpuacct"] / "cpuacct.usage", "0")

    def open_procs(self) -> list[int]:
        """Write-only fds of every ``cgroup.procs``: a sandboxed guest that sees no ``/sys`` joins by
        writing "0" to them (the kernel checks the opener's credentials, not the writer's)."""
        fds: list[int] = []
        try:
            for path in self.paths.values():
                fds.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def add(self, pid: int) -> None:
        for path in self.paths.values():
            write_file(path / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.paths.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return found

    def _counter_int(self, controller: str, name: str) -> int:
        try:
            return int(self._counter(controller, name).split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def _counter_field(self, controller: str, name: str, field_name: bytes) -> int:
        """The value of one ``key value`` line of a counter file (0 when absent or unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            for line in self._counter(controller, name).splitlines():
                key, _, value = line.partition(b" ")
                if key == field_name:
                    return int(value)
        return 0

    def cpu_ms(self) -> float:
        if "cpuacct" in self.paths:
            return self._counter_int("cpuacct", "cpuacct.usage") / 1e6
        return 0.0

    def peak_memory_kb(self) -> int:
        if "memory" in self.paths:
            return self._counter_int("memory", "memory.max_usage_in_bytes") // 1024
        return 0

    def oom_killed(self) -> bool:
        return "memory" in self.paths and self._counter_field("memory", "memory.oom_control", b"oom_kill") > 0

    def pids_limited(self) -> bool:
        """Whether a fork was refused because pids.max was reached."""
        return "pids" in self.paths and self._counter_field("pids", "pids.events", b"max") > 0

    @property
    def can_freeze(self) -> bool:
        return "freezer" in self.paths

    @property
    def reusable(self) -> bool:
        """Whether :meth:`reset_usage` clears everything a run measured, so another run may use it."""
        return True

    def freezer_state(self, state: bytes | None = None) -> bytes:
        """Write ``state`` (b"FROZEN" or b"THAWED") to ``freezer.state`` when given; return what it
        reads (b"FREEZING": a task not yet at a point where it can stop). OSError: the cgroup is gone."""
        fd = os.open(self.paths["freezer"] / "freezer.state", os.O_RDWR | os.O_CLOEXEC)
        try:
            if state is not None:
                os.write(fd, state)
            return os.pread(fd, 64, 0).strip()
        finally:
            os.close(fd)

    def kill(self, timeout: float = 5.0) -> None:
        """Freeze, SIGKILL every member, lift the CPU quota, thaw; wait until empty."""
        if not self.pids():
            return  # the usual ending: the run's processes are gone already
        freezer = self.paths.get("freezer")
        if freezer is not None:
            with contextlib.suppress(OSError):
                write_file(freezer / "freezer.state", "FROZEN")
        deadline = time.monotonic() + timeout
        while True:
            members = self.pids()
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if "cpu" in self.paths:
                with contextlib.suppress(OSError):
                    write_file(self.paths["cpu"] / "cpu.cfs_quota_us", "-1")
                    self._limits = ()  # lifted: a reuse (the fork server's pool) must set it again
            if freezer is not None:
                with contextlib.suppress(OSError):
                    write_file(freezer / "freezer.state", "THAWED")
            if not members or time.monotonic() > deadline:
                return
            time.sleep(0.005)
            if not self.pids():
                return
            if freezer is not None:
                with contextlib.suppress(OSError):
                    write_file(freezer / "freezer.state", "FROZEN")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill()
        files, self._files = self._files, {}
        for fd in files.values():
            os.close(fd)
        for path in self.paths.values():
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


class RunCgroups:
    """What both cgroup versions (:class:`CgroupV1`, ``CgroupV2``) offer a runner: a cgroup per run."""

    @property
    def available(self) -> bool:
        raise NotImplementedError

    def create(
        self,
        *,
        memory_mb: int | None,
        max_processes: int | None,
        cpu_quota_cores: float | None = None,
        owner_uid: int | None = None,
        group: str | None = None,
    ) -> RunCgroup:
        raise NotImplementedError

    def for_run(
        self, limits: Limits, cpu_quota_cores: float | None = None, *, group: str | None = None
    ) -> RunCgroup | None:
        """The cgroup one run's limits ask for, or None where the machine offers none."""
        if not self.available:
            return None
        try:
            return self.create(
                memory_mb=limits.memory_mb,
                max_processes=limits.max_processes,
                cpu_quota_cores=cpu_quota_cores,
                group=group,
            )
        except OSError as exc:
            raise SandboxError(f"cannot create a cgroup for the run: {exc}") from exc


class CgroupV1(RunCgroups):
    """Creates per-run cgroups under ``/sys/fs/cgroup/<controller>/rh-host/``."""

    def __init__(self, controllers: list[str] | None = None, *, group_max_tasks: int | None = None) -> None:
        """``group_max_tasks``: the ``pids.max`` of each group's dir in the pids hierarchy, the most
        tasks all of one group's runs may hold together (default :func:`default_group_max_tasks`).
        Written whenever this object first uses a group's dir: processes sharing a machine should
        be given the same value (the last one written holds)."""
        self.controllers = cgroup_v1_controllers() if controllers is None else controllers
        if group_max_tasks is None:
            group_max_tasks = default_group_max_tasks()
        if group_max_tasks < 1:
            raise ValueError(f"group_max_tasks must be at least 1, not {group_max_tasks}")
        self.group_max_tasks = group_max_tasks
        self._pins: dict[Path, Path] = {}  # group dir: this object's pin in it (see the module docstring)
        self._pin_lock = threading.Lock()

    @property
    def available(self) -> bool:
        return {"pids", "freezer"} <= set(self.controllers)

    @property
    def version(self) -> int:
        return 1

    @property
    def can_freeze(self) -> bool:
        """Whether run cgroups can be frozen (a waiting child that ran plugin code stays stopped)."""
        return "freezer" in self.controllers

    def sweep_stale(self, min_age_s: float = 60.0) -> int:
        """Remove the empty run cgroups of host processes that are gone: what a host killed by SIGKILL left.

        A cgroup's name starts with its maker's pid and start time; one whose maker still runs is
        never touched, however long it has been empty (a fork server keeps emptied cgroups for reuse).
        A name without a maker (an older rh-host's) goes once empty for ``min_age_s``. A group's dir
        goes once it holds neither cgroups nor processes: a live process's pin is a cgroup, so a dir
        some process uses stays (:meth:`create` makes it again when needed).
        """
        removed = 0
        for controller in self.controllers:
            parent = _ROOT / controller / _PARENT
            removed += self._sweep(parent, min_age_s)
            with contextlib.suppress(OSError):
                for entry in os.scandir(parent):
                    if entry.is_dir() and entry.name.startswith(_GROUP_DIR_PREFIXES):
                        removed += self._sweep(Path(entry.path), min_age_s)
                        with contextlib.suppress(OSError):
                            os.rmdir(entry.path)  # refused (EBUSY) while it has cgroups or members
        return removed

    @staticmethod
    def _sweep(parent: Path, min_age_s: float) -> int:
        removed = 0
        now = time.time()
        with contextlib.suppress(OSError):
            for entry in os.scandir(parent):
                if not entry.is_dir() or entry.name.startswith(_GROUP_DIR_PREFIXES):
                    continue
                alive = owner_alive(entry.name)
                if alive or (alive is None and now - entry.stat().st_mtime < min_age_s):
                    continue
                with contextlib.suppress(OSError):
                    os.rmdir(entry.path)  # refused (EBUSY) while it has members
                    removed += 1
        return removed

    def _in_group_dir(self, controller: str, group: str, act: Callable[[Path], _T]) -> _T:
        """``act(dir)`` on ``group``'s dir in ``controller``'s hierarchy, pinned first: made if need
        be, with an empty cgroup of this object's in it that keeps any other process's sweep or
        close from removing it (``rmdir`` of a cgroup with children fails) until
        :meth:`remove_group_dirs`. In the pids hierarchy, pinning also sets the group's task total."""
        path = _ROOT / controller / _PARENT / group_dir_name(group)
        with self._pin_lock:
            for attempt in range(2):
                if path not in self._pins:
                    self._pins[path] = self._pin(controller, path)
                try:
                    return act(path)
                except FileNotFoundError:
                    if attempt:
                        raise
                    del self._pins[path]  # the pin was removed from outside (an operator): pin again
        raise AssertionError("unreachable")

    def _pin(self, controller: str, path: Path) -> Path:
        """Make this object's pin in the group dir ``path`` (and the dir if need be)."""
        pin = path / f"{owner_of(os.getpid())}-{_PIN}-{uuid.uuid4().hex[:12]}"
        _in_made_dir(path, pin.mkdir)
        if controller == "pids":
            try:
                write_file(path / "pids.max", str(self.group_max_tasks))
            except OSError:
                pin.rmdir()
                raise
        return pin

    def _mkdir(self, controller: str, name: str, group: str | None) -> Path:
        """Make ``name`` under ``rh-host/`` (under its group's dir in the cpu and pids hierarchies)."""
        if group is not None and controller in _GROUP_CONTROLLERS:
            return self._in_group_dir(controller, group, lambda parent: _made(parent / name))
        parent = _ROOT / controller / _PARENT
        path = parent / name
        _in_made_dir(parent, path.mkdir)
        return path

    def group_procs(self, group: str) -> int | None:
        """A write-only fd of the ``cgroup.procs`` of ``group``'s dir in the cpu hierarchy, which a
        process of that group's sandbox joins by writing "0" (as run cgroups are joined: see
        :meth:`RunCgroup.open_procs`); None where this machine offers no cpu hierarchy. The dir stays
        pinned until :meth:`remove_group_dirs`, so a join through the fd never meets a removed dir."""
        if _GROUP_CONTROLLER not in self.controllers:
            return None
        return self._in_group_dir(
            _GROUP_CONTROLLER, group, lambda path: os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        )

    def remove_group_dirs(self, timeout_s: float = 1.0) -> None:
        """Unpin the group dirs this object used and remove those left empty: a closing backend's
        zygotes may take a moment to exit. One that holds cgroups (another backend's runs or pin) stays."""
        with self._pin_lock:
            pins, self._pins = self._pins, {}
        for pin in pins.values():
            with contextlib.suppress(OSError):
                os.rmdir(pin)  # empty: nothing ever joins a pin
        pending = sorted(pins)
        deadline = time.monotonic() + timeout_s
        while pending:
            exiting = []
            for path in pending:
                try:
                    os.rmdir(path)
                except OSError as exc:  # gone already, or EBUSY: cgroups or processes in it
                    if not isinstance(exc, FileNotFoundError) and not _has_subdirs(path):
                        exiting.append(path)
            if not exiting or time.monotonic() > deadline:
                return
            time.sleep(0.01)
            pending = exiting

    def create(
        self,
        *,
        memory_mb: int | None,
        max_processes: int | None,
        cpu_quota_cores: float | None = None,
        owner_uid: int | None = None,
        group: str | None = None,
    ) -> RunCgroup:
        """A run's cgroups; with ``group``, in the cpu and pids hierarchies under that group's dirs
        (in cpu even without a CPU quota, so that the run counts against its group's weight; in pids
        its tasks count against the group's total as well as against ``max_processes``)."""
        name = f"{owner_of(os.getpid())}-{uuid.uuid4().hex[:12]}"
        paths: dict[str, Path] = {}
        try:
            for controller in self.controllers:
                if controller == _GROUP_CONTROLLER and cpu_quota_cores is None and group is None:
                    continue
                paths[controller] = self._mkdir(controller, name, group)
            cgroup = RunCgroup(paths, owner_uid, group)
            cgroup.set_limits(memory_mb=memory_mb, max_processes=max_processes, cpu_quota_cores=cpu_quota_cores)
            if owner_uid is not None:
                for path in paths.values():
                    os.chown(path / "cgroup.procs", owner_uid, -1)
        except OSError:
            RunCgroup(paths).close()
            raise
        return cgroup
