"""Per-run cgroups on the unified hierarchy (cgroup v2), with the interface of :mod:`.cgroups` (v1).

cgroup v2 allows processes only in leaves once a cgroup hands controllers to its children ("no
internal processes"), so every process sits in a leaf of a subtree that one host process owns alone::

    /sys/fs/cgroup/rh-host/                      shared by every rh-host process; never removed
      <pid>.<start>-<random>/                    one host process's subtree (its pid and start time)
        tenant-<group>/                          cpu.weight (the group's CPU share), pids.max (its task total)
          zygotes/                               the group's fork servers (a leaf)
          run-<random>/                          one run: memory.max, memory.swap.max 0, pids.max, cpu.max
        run-<random>/                            a run without a group

Controllers are enabled on the way down (``cgroup.subtree_control``). A process writes only inside its
own subtree (and enables controllers in ``rh-host/`` and its parent); a sweep removes (after
``cgroup.kill``) only the subtrees of processes that are gone. A process's backends share its
subtree: a group's dir is removed when the last backend that used it closes. Killing a run is one
write to ``cgroup.kill``, which reaches a double-forked ``setsid`` daemon as well.

As root, ``rh-host/`` is made at the hierarchy's root. A non-root process whose own cgroup was
delegated to it (systemd ``Delegate=yes``: the dir and its ``cgroup.procs`` and
``cgroup.subtree_control`` owned by its uid) moves itself into ``<own cgroup>/supervisor/`` and makes
``rh-host/`` beside it, writing nothing above its own cgroup.

``memory.peak`` cannot be reset before Linux 6.12 (there, per open file): a run cgroup whose peak
cannot be reset is not reused.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rh_sandbox.linux.cgroups import (
    RunCgroup,
    RunCgroups,
    default_group_max_tasks,
    group_dir_name,
    owner_alive,
    owner_of,
    write_file,
)

__all__ = ["CgroupV2", "RunCgroupV2", "cgroup_v2_root"]

_ROOT = Path("/sys/fs/cgroup")
_PARENT = "rh-host"
_WANTED = ("memory", "pids", "cpu")
_ZYGOTES = "zygotes"
_SUPERVISOR = "supervisor"  # in a delegated cgroup, the leaf the host process moves itself into
_CPU_PERIOD_US = 100_000
_GROUP_CPU_WEIGHT = 100  # every group the same share of the CPU (the kernel's default weight)


def cgroup_v2_root() -> Path | None:
    """``/sys/fs/cgroup`` when it is the unified hierarchy (a cgroup-v2-only machine), else None."""
    # on a v1 (or hybrid) machine /sys/fs/cgroup is a tmpfs holding the hierarchies' mount points
    return _ROOT if (_ROOT / "cgroup.controllers").exists() else None


def _own_cgroup(root: Path) -> Path:
    """This process's cgroup, as a dir of the hierarchy mounted at ``root``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return root / line[3:].strip().strip("/")
    return root


def _delegated(path: Path) -> bool:
    """Whether this process may manage the cgroup at ``path``: what systemd's ``Delegate=yes`` (or a
    chown of the dir and of its ``cgroup.procs`` and ``cgroup.subtree_control``) gives a service."""
    return all(os.access(p, os.W_OK) for p in (path, path / "cgroup.procs", path / "cgroup.subtree_control"))


def _base(root: Path) -> Path:
    """Where ``rh-host/`` goes: the hierarchy's root for root, else this process's own cgroup when it
    was delegated (the parent of the leaf the process moved itself into, see CgroupV2)."""
    if os.geteuid() == 0 and os.access(root, os.W_OK):
        return root
    own = _own_cgroup(root)
    if own.name == _SUPERVISOR and own.parent != root and _delegated(own.parent):
        return own.parent
    return own if own != root and _delegated(own) else root


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _field(text: bytes, name: bytes) -> int:
    """The value of the ``name value`` line of a flat-keyed cgroup file (0 when absent)."""
    for line in text.splitlines():
        key, _, value = line.partition(b" ")
        if key == name:
            with contextlib.suppress(ValueError):
                return int(value)
    return 0


def _wait_empty(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if _field((path / "cgroup.events").read_bytes(), b"populated") == 0:
                return True
        except FileNotFoundError:
            return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


@dataclass
class RunCgroupV2(RunCgroup):
    """One run's leaf cgroup (``paths == {"unified": <dir>}``). ``close()`` kills and removes it."""

    _cpu_base_usec: int = field(default=0, repr=False)  # cpu.stat usage_usec at the last reset_usage
    _peak_fd: int | None = field(default=None, repr=False)  # memory.peak opened read-write (Linux 6.12+)
    _peak_opened: bool = field(default=False, repr=False)  # _resettable_peak tried to open it

    @property
    def path(self) -> Path:
        return self.paths["unified"]

    def set_limits(
        self, *, memory_mb: int | None, max_processes: int | None, cpu_quota_cores: float | None = None
    ) -> None:
        wanted = (memory_mb, max_processes, cpu_quota_cores)
        if wanted == self._limits:
            return
        self._limits = ()
        if memory_mb:
            limit = memory_mb * 1024 * 1024
            # v1 refuses a limit below what is in use; v2 would OOM-kill the waiting child instead
            if self._counter_int("unified", "memory.current") > limit:
                raise OSError(16, f"{self.path} uses more than {memory_mb} MB already")
            write_file(self.path / "memory.max", str(limit))
            with contextlib.suppress(OSError):  # absent without swap accounting: nothing to swap to
                write_file(self.path / "memory.swap.max", "0")
        if max_processes:
            write_file(self.path / "pids.max", str(max_processes))
        if cpu_quota_cores:
            write_file(self.path / "cpu.max", f"{int(cpu_quota_cores * _CPU_PERIOD_US)} {_CPU_PERIOD_US}")
        self._limits = wanted

    def _resettable_peak(self) -> int | None:
        """``memory.peak`` opened read-write, whose peak a write resets for reads through it (Linux
        6.12+; opening it so reset it once); None before (root may open it for writing, but a write
        fails: its peak is the cgroup's whole life's)."""
        if not self._peak_opened and not self._closed:
            self._peak_opened = True
            with contextlib.suppress(OSError):
                fd = os.open(self.path / "memory.peak", os.O_RDWR | os.O_CLOEXEC)
                try:
                    os.write(fd, b"reset\n")
                except OSError:
                    os.close(fd)
                    raise
                self._peak_fd = fd
        return self._peak_fd

    def reset_usage(self) -> None:
        self._cpu_base_usec = self._usage_usec()
        peak = self._resettable_peak()
        if peak is not None:
            os.write(peak, b"reset\n")

    @property
    def reusable(self) -> bool:
        return self._resettable_peak() is not None

    def _usage_usec(self) -> int:
        try:
            return _field(self._counter("unified", "cpu.stat"), b"usage_usec")
        except OSError:
            return 0

    def cpu_ms(self) -> float:
        return max(0, self._usage_usec() - self._cpu_base_usec) / 1000

    def peak_memory_kb(self) -> int:
        if self._peak_fd is not None:
            with contextlib.suppress(OSError, ValueError):
                return int(os.pread(self._peak_fd, 64, 0)) // 1024
        return self._counter_int("unified", "memory.peak") // 1024

    def oom_killed(self) -> bool:
        with contextlib.suppress(OSError):
            return _field(self._counter("unified", "memory.events"), b"oom_kill") > 0
        return False

    def pids_limited(self) -> bool:
        with contextlib.suppress(OSError):
            return _field(self._counter("unified", "pids.events"), b"max") > 0
        return False

    @property
    def can_freeze(self) -> bool:
        return True

    def freezer_state(self, state: bytes | None = None) -> bytes:
        """As v1's: b"FROZEN"/b"THAWED" written as ``cgroup.freeze`` 1/0; read from ``cgroup.events``."""
        if state is not None:
            write_file(self.path / "cgroup.freeze", "1" if state == b"FROZEN" else "0")
        if _field((self.path / "cgroup.events").read_bytes(), b"frozen"):
            return b"FROZEN"
        return b"FREEZING" if (self.path / "cgroup.freeze").read_bytes().strip() == b"1" else b"THAWED"

    def kill(self, timeout: float = 5.0) -> None:
        """``cgroup.kill`` (every member, however it forked or detached), the CPU quota lifted so the
        dying exit at once; wait until empty. Without ``cgroup.kill`` (before Linux 5.14): SIGKILL
        every member until none is left."""
        if not self.pids():
            return
        with contextlib.suppress(OSError):
            write_file(self.path / "cpu.max", "max")
            self._limits = ()  # a reuse sets the quota again
        try:
            write_file(self.path / "cgroup.kill", "1")
        except FileNotFoundError:
            deadline = time.monotonic() + timeout
            while (members := self.pids()) and time.monotonic() < deadline:
                for pid in members:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.005)
            return
        except OSError:
            return  # removed meanwhile
        _wait_empty(self.path, timeout)

    def close(self) -> None:
        if not self._closed and self._peak_fd is not None:
            os.close(self._peak_fd)
            self._peak_fd = None
        super().close()


def _remove_tree(path: Path, timeout_s: float = 2.0) -> int:
    """Kill everything in the cgroup tree at ``path`` and remove its cgroups, leaves first."""
    with contextlib.suppress(OSError):
        write_file(path / "cgroup.kill", "1")
    _wait_empty(path, timeout_s)
    removed = 0
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda entry: -entry[0].count("/")):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)
            removed += 1
    return removed


class _Subtree:
    """This process's subtree under ``rh-host/``, shared by its CgroupV2 objects (its Python and WASM
    backends): one dir per group, so that a group's CPU weight and task total cover all of them.
    ``users``: which objects use each dir made so far; a dir is removed when its last user lets go."""

    def __init__(self, parent: Path) -> None:
        self.home = parent / f"{owner_of(os.getpid())}-{uuid.uuid4().hex[:12]}"
        self.lock = threading.Lock()
        self.users: dict[Path, set[int]] = {}


_SUBTREES: dict[tuple[Path, int], _Subtree] = {}
_SUBTREES_LOCK = threading.Lock()


def _subtree(parent: Path) -> _Subtree:
    with _SUBTREES_LOCK:
        key = (parent, os.getpid())  # a forked child is another process: it gets a subtree of its own
        if key not in _SUBTREES:
            _SUBTREES[key] = _Subtree(parent)
        return _SUBTREES[key]


class CgroupV2(RunCgroups):
    """Creates per-run cgroups in this process's subtree of ``/sys/fs/cgroup/rh-host/`` (see the
    module's docstring). The same interface as :class:`~rh_sandbox.linux.cgroups.CgroupV1`."""

    def __init__(self, root: Path | None = None, *, group_max_tasks: int | None = None) -> None:
        """``group_max_tasks``: the ``pids.max`` of each group's dir, the most tasks all of one group's
        runs in this process may hold together (default :func:`default_group_max_tasks`). Written
        whenever this object first uses a group's dir: the last one written holds."""
        self.root = root if root is not None else (cgroup_v2_root() or _ROOT)
        self.base = _base(self.root)
        self.delegated = self.base != self.root
        offered = _words(self.base / "cgroup.controllers")
        self.controllers = [c for c in _WANTED if c in offered]
        if group_max_tasks is None:
            group_max_tasks = default_group_max_tasks()
        if group_max_tasks < 1:
            raise ValueError(f"group_max_tasks must be at least 1, not {group_max_tasks}")
        self.group_max_tasks = group_max_tasks
        self.parent = self.base / _PARENT

    @property
    def home(self) -> Path:
        """This process's subtree."""
        return _subtree(self.parent).home

    @property
    def available(self) -> bool:
        """Whether runs can get cgroups here: memory and pids offered, and the hierarchy (as root) or
        this process's delegated cgroup writable."""
        return {"memory", "pids"} <= set(self.controllers) and os.access(self.base, os.W_OK)

    @property
    def version(self) -> int:
        return 2

    @property
    def can_freeze(self) -> bool:
        return True  # cgroup.freeze, in every cgroup but the root

    def _subtree_control(self, path: Path) -> None:
        enabled = set(_words(path / "cgroup.subtree_control"))
        missing = [c for c in self.controllers if c not in enabled]
        if missing:
            write_file(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))

    def _leave_base(self) -> None:
        """In a delegated cgroup, move this process into a leaf of it (``supervisor/``) and hand its
        controllers down: cgroup v2 lets a cgroup with processes of its own hand none down."""
        if _own_cgroup(self.root) == self.base:
            supervisor = self.base / _SUPERVISOR
            supervisor.mkdir(exist_ok=True)
            write_file(supervisor / "cgroup.procs", str(os.getpid()))
        try:
            self._subtree_control(self.base)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot enable {' '.join(self.controllers)} in {self.base} (other processes in it?): {exc}"
            ) from exc

    def _dir(self, tree: _Subtree, path: Path) -> Path:
        """``path`` in this process's subtree, made (with its parents) and set up, and used by this
        object from now on. Caller holds ``tree.lock``."""
        users = tree.users.get(path)
        if users is not None and id(self) in users:
            return path
        if path == tree.home:
            if self.delegated:
                self._leave_base()
            else:
                with contextlib.suppress(OSError):  # a container's root may not let us; then they are on
                    self._subtree_control(self.root)
            self.parent.mkdir(exist_ok=True)
            self._subtree_control(self.parent)
            path.mkdir(exist_ok=True)
            self._subtree_control(path)
        else:
            self._dir(tree, path.parent)
            path.mkdir(exist_ok=True)
            if path.parent == tree.home:  # a group's dir
                self._subtree_control(path)
                write_file(path / "pids.max", str(self.group_max_tasks))
                if "cpu" in self.controllers and users is None:
                    write_file(path / "cpu.weight", str(_GROUP_CPU_WEIGHT))
        tree.users.setdefault(path, set()).add(id(self))
        return path

    def _group_dir(self, group: str | None, leaf: str | None = None) -> Path:
        tree = _subtree(self.parent)
        path = tree.home if group is None else tree.home / group_dir_name(group)
        with tree.lock:
            return self._dir(tree, path / leaf if leaf else path)

    def sweep_stale(self, min_age_s: float = 60.0) -> int:
        """Kill and remove the subtrees of rh-host objects whose process is gone (what a host killed by
        SIGKILL left); one whose maker still runs is never touched. A subtree named without a maker
        (not rh-host's format) goes once it has been empty for ``min_age_s``."""
        removed = 0
        now = time.time()
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.parent):
                if not entry.is_dir():
                    continue
                alive = owner_alive(entry.name)
                if alive:
                    continue
                if alive is None:
                    populated = _field((Path(entry.path) / "cgroup.events").read_bytes(), b"populated")
                    if populated or now - entry.stat().st_mtime < min_age_s:
                        continue
                removed += _remove_tree(Path(entry.path))
        return removed

    def group_procs(self, group: str) -> int | None:
        """A write-only fd of the ``cgroup.procs`` of ``group``'s zygote leaf, which a fork server of
        that group joins by writing "0" (what it forks then counts against its group's CPU weight)."""
        leaf = self._group_dir(group, _ZYGOTES)
        return os.open(leaf / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)

    def remove_group_dirs(self, timeout_s: float = 1.0) -> None:
        """Stop using this process's subtree; remove the dirs no other object uses once their zygotes
        are gone (they may take a moment to exit). Dirs that still hold a run stay."""
        tree = _subtree(self.parent)
        with tree.lock:
            pending = []
            for path, users in list(tree.users.items()):
                users.discard(id(self))
                if not users:
                    del tree.users[path]
                    pending.append(path)
        pending.sort(key=lambda path: -len(path.parts))  # leaves first
        deadline = time.monotonic() + timeout_s
        while pending:
            busy = []
            with tree.lock:
                for path in pending:
                    if path in tree.users:
                        continue  # taken up again meanwhile
                    try:
                        os.rmdir(path)
                    except FileNotFoundError:
                        pass
                    except OSError:
                        busy.append(path)
            if not busy or time.monotonic() > deadline:
                return
            time.sleep(0.01)
            pending = busy

    def create(
        self,
        *,
        memory_mb: int | None,
        max_processes: int | None,
        cpu_quota_cores: float | None = None,
        owner_uid: int | None = None,
        group: str | None = None,
    ) -> RunCgroup:
        """A run's leaf cgroup, in ``group``'s dir when given (its tasks count against the group's total
        and its CPU against the group's weight)."""
        parent = self._group_dir(group)
        path = parent / f"run-{uuid.uuid4().hex[:12]}"
        cgroup = RunCgroupV2({"unified": path}, owner_uid, group)
        try:
            path.mkdir()
        except FileNotFoundError:  # removed from outside (an operator): set it up again
            tree = _subtree(self.parent)
            with tree.lock:
                tree.users.pop(parent, None)
            self._group_dir(group)
            path.mkdir()
        try:
            cgroup.set_limits(memory_mb=memory_mb, max_processes=max_processes, cpu_quota_cores=cpu_quota_cores)
            if owner_uid is not None:
                os.chown(path / "cgroup.procs", owner_uid, -1)
        except OSError:
            cgroup.close()
            raise
        return cgroup
