"""WASM workers at the strict level: each group's workers as its own uid, inside bubblewrap, confined.

wasmtime is the guest's first wall; this is the second, for the day a guest gets out of it. A worker
runs as its group's uid (the one its Python runs get, see :mod:`rh_sandbox.linux.uids`) in a sandbox that
holds: ``/usr`` and ``/rh`` (a runtime dir of Python, wasmtime, msgspec, the SDK and rh_sandbox
itself, copied world-readable, as the Python guests' runtime is) read-only; the group's own
compiled-module cache read-write at ``/cache``; the egress run root read-only (each run's broker
socket appears there while the run lasts) and the CA certificates; a bounded ``/tmp`` as cwd. No
network, no other group's files, no host socket. Before it starts a thread or reads a byte from the
host, the worker joins a cgroup of its own (pids, memory, freezer, cpu) and applies Landlock and the
seccomp filter to itself.

The compiled-module cache is per group because deserializing trusts it: a group that could write a
file another group's worker loads would run native code there.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import msgspec
import wasmtime

import rh_sandbox
import rh_sdk
from rh_sandbox.egress.run import CA_CERTIFICATES, default_run_root
from rh_sandbox.linux.bwrap import strict_command
from rh_sandbox.linux.cgroup_backends import Cgroups, machine_cgroups
from rh_sandbox.linux.cgroups import cgroup_v1_controllers
from rh_sandbox.linux.confinement import Confinement
from rh_sandbox.linux.layout import RUNTIME_MOUNT, SCRATCH, landlock_rules, worker_environment
from rh_sandbox.linux.uids import SandboxUids, default_uids
from rh_sandbox.python.runtime import build_site, default_runtime_root, find_interpreter, package_dir, site_digest
from rh_sandbox.types import IsolationLevel, SandboxError
from rh_sandbox.wasm._pool import WorkerCommand

__all__ = ["CACHE_MOUNT", "StrictWorkers", "WorkerRuntime"]

CACHE_MOUNT = "/cache"
_SCRATCH_MB = 160  # the guests' stdout and stderr files: at most 64 MiB each (the worker's RLIMIT_FSIZE)
# A worker's cgroup: its data limit, plus its scratch tmpfs (charged to the cgroup that writes it), plus
# what is not data (the interpreter's and wasmtime's code, stacks, page tables: ~40 MiB measured).
_UNCOUNTED_MB = 128
# Threads count as tasks: the main thread, the wall clock's, the CPU clock's and wasmtime's tokio runtime
# (a worker thread per CPU: 5 threads in all on 2 CPUs). Nothing may fork.
_MAX_TASKS = 16 + 2 * (os.cpu_count() or 1)
# Joining costs a few ms per hierarchy (cgroup v1 attach waits for an RCU grace period), so only those
# with a use: cpu without a quota (one guest at a time, on one thread), in its group's dir, so that
# the worker's CPU counts against its group's weight; no cpuacct (the worker measures its runs).
_WORKER_CONTROLLERS = ("memory", "pids", "freezer", "cpu")
# -I -S: nothing of the interpreter's own site-packages; the runtime's site dir only
_LAUNCHER = (
    f"import sys; sys.path.insert(0, {RUNTIME_MOUNT + '/site'!r}); "
    "from rh_sandbox.wasm._worker import main; sys.exit(main(sys.argv[1:]))"
)


@functools.cache
def _runtime_packages() -> tuple[tuple[Path, ...], str]:
    """The packages a worker imports, and their digest (memoised: wasmtime alone is 30 MB to hash)."""
    wasmtime_dist = Path(str(importlib.metadata.distribution("wasmtime")._path))  # type: ignore[attr-defined]
    packages = (package_dir(rh_sandbox), package_dir(rh_sdk), package_dir(msgspec), package_dir(wasmtime))
    # engine_fingerprint() reads wasmtime's version from its metadata
    packages += (wasmtime_dist,) if wasmtime_dist.is_dir() else ()
    return packages, site_digest(list(packages), [])


@dataclass(frozen=True)
class WorkerRuntime:
    """The interpreter and the read-only runtime dir (bound as ``/rh``) a sandboxed worker runs from."""

    interpreter: str
    root: Path

    @classmethod
    def prepare(cls, root: Path | None = None, interpreter: str | None = None) -> WorkerRuntime:
        packages, digest = _runtime_packages()
        target = (root or default_runtime_root()) / f"wasm-{digest}"
        build_site(target, list(packages), {}, bytecode=True)  # the worker's uid cannot write pyc files
        return cls(interpreter=interpreter or find_interpreter(), root=target)


def _require_reachable(path: Path, what: str) -> None:
    """bwrap binds as the group's uid: every dir on the way must be searchable by any uid."""
    for directory in [path, *path.parents]:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise SandboxError(
                f"{what} {path}: the sandbox uids cannot reach it ({directory} is not searchable by others); "
                "choose a dir whose parents are all o+x"
            )


class StrictWorkers:
    """Builds the command of each sandboxed worker (the ``sandbox`` of :class:`WasmBackend`).

    cache_dir: the root of the groups' compiled-module caches (``<cache_dir>/<group digest>``, each
    owned by its group's uid, mode 0700); None: every worker compiles its modules itself.
    egress_root: where runs' egress brokers put their sockets (bound read-only); None: the default.
    cgroups: where each worker gets a cgroup of its own, joined before it reads a byte from the host;
    None: the v1 memory, pids, freezer and cpu hierarchies, where the machine offers them (cpu and
    pids: in the group's dir, see :mod:`rh_sandbox.linux.cgroups`), or the unified hierarchy on a
    cgroup-v2 machine (:mod:`rh_sandbox.linux.cgroups_v2`).
    group_max_tasks: without ``cgroups``, the task total of each group's dir in the pids hierarchy
    (None: :func:`~rh_sandbox.linux.cgroups.default_group_max_tasks`); a worker's tasks count against it.
    """

    sandboxed = True

    def __init__(
        self,
        runtime: WorkerRuntime | None = None,
        *,
        uids: SandboxUids | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        egress_root: Path | None = None,
        data_mb: int = 4096,
        confinement: Confinement | None = None,
        cgroups: Cgroups | None = None,
        group_max_tasks: int | None = None,
    ) -> None:
        self.runtime = runtime or WorkerRuntime.prepare()
        if cgroups is None:
            controllers = [c for c in cgroup_v1_controllers() if c in _WORKER_CONTROLLERS]
            cgroups = machine_cgroups(group_max_tasks=group_max_tasks, v1_controllers=controllers)
        self.cgroups = cgroups if cgroups.available else None
        if self.cgroups is not None:
            self.cgroups.sweep_stale()  # what a host killed by SIGKILL left
        self.uids = uids or default_uids()
        self.confinement = confinement or Confinement.detect(self.runtime)
        self._cache_root = Path(cache_dir).resolve() if cache_dir is not None else None
        if self._cache_root is not None:
            self._cache_root.mkdir(parents=True, exist_ok=True)
            os.chmod(self._cache_root, 0o711)  # a group's uid may reach its own dir, not list the others
            _require_reachable(self._cache_root, "wasm cache dir")
        self._egress_root = (egress_root or default_run_root()).resolve()
        self._egress_root.mkdir(parents=True, exist_ok=True, mode=0o711)
        _require_reachable(self._egress_root, "egress run root")
        self._data_mb = data_mb
        self._lock = threading.Lock()

    @property
    def isolation(self) -> str:
        """The ``isolation`` of the runs: strict, and the in-sandbox confinement that applied."""
        return IsolationLevel.STRICT.value + self.confinement.suffix(self.cgroups is not None)

    def launch(self, group: str, info_fd: int | None, *, check_mb: int | None = None) -> WorkerCommand:
        """One worker of ``group``: its command, the ``cgroup.procs`` fds it joins its cgroup by and that
        cgroup. bwrap writes the worker's pid (as the host sees it) to ``info_fd``."""
        launch = WorkerCommand([])
        try:
            if self.cgroups is not None:
                memory_mb = (check_mb or self._data_mb) + _SCRATCH_MB + _UNCOUNTED_MB
                launch.cgroup = self.cgroups.create(memory_mb=memory_mb, max_processes=_MAX_TASKS, group=group)
                launch.pass_fds = tuple(launch.cgroup.open_procs())
            launch.argv = self.command(group, info_fd, check_mb=check_mb, cgroup_fds=launch.pass_fds)
        except OSError as exc:  # a cgroup or the group's cache dir
            launch.discard()
            raise SandboxError(f"cannot prepare a wasm worker of {group}: {exc}") from exc
        except BaseException:
            launch.discard()
            raise
        return launch

    def close(self) -> None:
        """Remove the groups' dirs in the cpu hierarchy, once their workers are gone."""
        if self.cgroups is not None:
            self.cgroups.remove_group_dirs()

    def command(
        self, group: str, info_fd: int | None, *, check_mb: int | None = None, cgroup_fds: tuple[int, ...] = ()
    ) -> list[str]:
        """The argv of one worker of ``group``; bwrap writes the worker's pid (as the host sees it) to
        ``info_fd``; the worker joins its cgroup through ``cgroup_fds``. With ``check_mb``: a one-shot
        module check under that many MiB of data, which gets neither the compiled-module cache (it
        compiles one module, to refuse or to forget it) nor the egress run root."""
        uid = self.uids.uid_for(group)
        ro_binds = [(str(self.runtime.root), RUNTIME_MOUNT)]
        if check_mb is None:  # a check has no network: nothing of the egress brokers
            ro_binds.append((str(self._egress_root), str(self._egress_root)))
            if os.path.isdir(CA_CERTIFICATES):  # TLS of granted https requests
                ro_binds.append((CA_CERTIFICATES, CA_CERTIFICATES))
        binds = []
        data_mb = check_mb or self._data_mb
        worker = [self.runtime.interpreter, "-I", "-S", "-c", _LAUNCHER, "--data-mb", str(data_mb)]
        cached = self._cache_root is not None and check_mb is None
        if cached:
            binds.append((str(self._group_cache(group, uid)), CACHE_MOUNT))
            worker += ["--cache-dir", CACHE_MOUNT]
        if check_mb is not None:
            worker.append("--validate")
        worker += ["--confine", json.dumps({**self._confine_args(cached), "cgroup_fds": list(cgroup_fds)})]
        argv = strict_command(
            worker,
            uid=uid,
            ro_binds=ro_binds,
            binds=binds,
            scratch_mb=_SCRATCH_MB,
            env=worker_environment(SCRATCH),
            interpreter=self.runtime.interpreter,
        )
        # bwrap's options, before its "--". The worker is pid 1 of its namespace, not the child of
        # bwrap's reaper: bwrap exits before its reaper is reaped, which would orphan the reaper to the
        # host's init. The worker starts no process, so it has nothing to reap.
        at = argv.index("--unshare-all")
        argv[at:at] = ["--as-pid-1", *(["--info-fd", str(info_fd)] if info_fd is not None else [])]
        return argv

    def _confine_args(self, cached: bool) -> dict:
        rules = landlock_rules(read=(CA_CERTIFICATES,), full=(CACHE_MOUNT,) if cached else ())
        return self.confinement.boot_args(rules)

    def _group_cache(self, group: str, uid: int) -> Path:
        """``group``'s cache dir, owned by its uid. A dir owned by any other uid (the group's uid
        changed since) is emptied first: nothing another uid wrote is ever loaded."""
        assert self._cache_root is not None
        path = self._cache_root / hashlib.sha256(group.encode()).hexdigest()[:32]
        with self._lock:
            try:
                owner = path.lstat().st_uid
            except FileNotFoundError:
                owner = None
            if owner is not None and (owner != uid or not path.is_dir() or path.is_symlink()):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                owner = None
            if owner is None:
                path.mkdir(mode=0o700)
                os.chown(path, uid, uid)
        return path
