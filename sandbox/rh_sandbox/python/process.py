"""The process backend: each Python handler run in its own short-lived, limited subprocess.

Steps per run, in order: scratch dir, cgroup (when the machine offers one), spawn the guest (clean
environment, own session, scratch as cwd; the boot script joins the cgroup and applies rlimits before
any plugin code), exchange stdin/stdout/stderr under caps and a deadline, kill the whole tree, measure,
classify. No Python runs between fork and exec, so concurrent runs from threads are safe.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from rh_sandbox._pump import exchange
from rh_sandbox.classify import run_result
from rh_sandbox.errors import SandboxError
from rh_sandbox.linux.cgroup_backends import Cgroups, machine_cgroups
from rh_sandbox.linux.cgroups import RunCgroup
from rh_sandbox.linux.layout import sandbox_environment
from rh_sandbox.python.runtime import GUEST_FLAGS, GuestRuntime
from rh_sandbox.types import IsolationLevel, Limits, RunResult, RunSpec

if TYPE_CHECKING:
    from rh_sandbox.egress.run import RunEgress

__all__ = ["ProcessBackend", "guest_rlimits"]

_MIB = 1024 * 1024


def guest_rlimits(limits: Limits, *, nproc: int | None = None) -> dict[str, tuple[int, int]]:
    """rlimits the boot script applies; CPU soft limit sends SIGXCPU, the hard one SIGKILL a second later."""
    cpu = max(1, math.ceil(limits.cpu_seconds))
    rlimits = {
        "as": (limits.memory_mb * _MIB, limits.memory_mb * _MIB),
        "cpu": (cpu, cpu + 1),
        "nofile": (limits.max_open_files, limits.max_open_files),
        "fsize": (limits.scratch_mb * _MIB, limits.scratch_mb * _MIB),
        "core": (0, 0),
    }
    if nproc is not None:
        rlimits["nproc"] = (nproc, nproc)
    return rlimits


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its rusage is collected by wait4 later)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class ProcessBackend:
    """Runs Python handlers in subprocesses at the ``basic`` isolation level.

    Kills whole process trees through a per-run cgroup when the machine offers one; otherwise
    through the session and psutil's view of descendants (a double-forked daemon can then escape:
    ``rh-host doctor`` says so, and the strict level closes that gap with a PID namespace).
    """

    isolation = IsolationLevel.BASIC
    cpu_quota_cores: float | None = None  # the strict level caps each run at one core

    def __init__(
        self,
        runtime: GuestRuntime | None = None,
        scratch_root: Path | None = None,
        cgroups: Cgroups | None = None,
        *,
        group_max_tasks: int | None = None,
    ) -> None:
        """``group_max_tasks``: the most tasks one group's runs may hold together, when no
        ``cgroups`` is given (see :mod:`rh_sandbox.linux.cgroup_backends`)."""
        self.runtime = runtime or GuestRuntime.prepare()
        self.scratch_root = scratch_root
        self.cgroups = cgroups if cgroups is not None else machine_cgroups(group_max_tasks=group_max_tasks)

    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        if spec.runtime != "python":
            raise SandboxError(f"ProcessBackend runs python handlers, not {spec.runtime!r}")
        limits = spec.limits
        scratch = tempfile.mkdtemp(prefix="rh-run-", dir=self.scratch_root)
        cgroup = self._cgroup(limits, spec.group)
        try:
            return self._run(spec, payload, scratch, cgroup)
        finally:
            if cgroup is not None:
                cgroup.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        """Nothing warm to stop: every run's processes are gone when ``run`` returns. The groups'
        dirs in the cpu hierarchy go, when no other backend's runs are in them."""
        self.cgroups.remove_group_dirs()

    def _cgroup(self, limits: Limits, group: str) -> RunCgroup | None:
        return self.cgroups.for_run(limits, self.cpu_quota_cores, group=group)

    def _argv(self, spec: RunSpec, cgroup: RunCgroup | None) -> list[str]:
        nproc = None
        if cgroup is None and os.geteuid() != 0:
            nproc = (
                len(psutil.pids()) + spec.limits.max_processes
            )  # RLIMIT_NPROC counts the uid's processes: every one bounds it
        args = {
            "site": str(self.runtime.site),
            "plugin_dir": str(Path(spec.plugin_dir).resolve()),
            "entry": spec.entry,
            "encoding": spec.encoding,
            "rlimits": guest_rlimits(spec.limits, nproc=nproc),
            "cgroup_procs": cgroup.procs_files if cgroup else [],
        }
        return [self.runtime.interpreter, *GUEST_FLAGS, str(self.runtime.boot), json.dumps(args)]

    def _launch(
        self, spec: RunSpec, scratch: str, cgroup: RunCgroup | None, egress: RunEgress | None = None
    ) -> subprocess.Popen[bytes]:
        """Start the guest; subclasses wrap the same boot script in a stronger sandbox (and wire
        ``egress`` in: the basic level has the host's network and never gets one)."""
        return subprocess.Popen(
            self._argv(spec, cgroup),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=scratch,
            env=sandbox_environment(scratch),
            start_new_session=True,
            close_fds=True,
        )

    def _adopt(self, proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
        """Put the child in the run's cgroup from outside too: the boot script joins as well, and
        whoever is first wins."""
        if cgroup is not None:
            with contextlib.suppress(OSError):
                cgroup.add(proc.pid)

    def _exit_code(self, returncode: int | None) -> int | None:
        """The guest's own exit code (subclasses undo a wrapper's encoding of signals)."""
        return returncode

    def _isolation(self, cgroup: RunCgroup | None) -> str:
        return self.isolation.value + ("+cgroup" if cgroup is not None else "")

    def _run(
        self, spec: RunSpec, payload: bytes, scratch: str, cgroup: RunCgroup | None, egress: RunEgress | None = None
    ) -> RunResult:
        limits = spec.limits
        started = time.monotonic()
        try:
            proc = self._launch(spec, scratch, cgroup, egress)
        except OSError as exc:
            raise SandboxError(f"cannot start the guest interpreter: {exc}") from exc
        self._adopt(proc, cgroup)
        assert proc.stdout is not None and proc.stderr is not None
        cpu_limit_ms = limits.cpu_seconds * 1000

        def over_cpu() -> bool:  # the whole tree's CPU time, not only the direct child's rlimit
            return cgroup is not None and cgroup.cpu_ms() > cpu_limit_ms

        try:
            io = exchange(
                stdin=proc.stdin,
                stdout=proc.stdout,
                stderr=proc.stderr,
                payload=payload,
                deadline=started + limits.wall_seconds,
                max_stdout=limits.max_output_kb * 1024,
                max_stderr=limits.max_log_kb * 1024,
                exited=lambda: _exited(proc.pid),
                over_cpu=over_cpu,
                over_processes=lambda: cgroup is not None and cgroup.pids_limited(),
                started=started,
            )
        finally:
            descendants = self._kill_tree(proc, cgroup)
            proc.stdout.close()
            proc.stderr.close()
        returncode, rusage = self._reap(proc)
        returncode = self._exit_code(returncode)
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.wait(timeout=1)
        cpu_ms = (rusage.ru_utime + rusage.ru_stime) * 1000 if rusage else 0.0
        peak_kb = rusage.ru_maxrss if rusage else 0
        oom = False
        if cgroup is not None:
            cpu_ms = max(cpu_ms, cgroup.cpu_ms())
            # not ru_maxrss: a child spawned from the host inherits the host's RSS high-water mark
            peak_kb = cgroup.peak_memory_kb()
            oom = cgroup.oom_killed()
        return run_result(
            spec,
            io,
            returncode=returncode,
            cpu_ms=cpu_ms,
            peak_kb=peak_kb,
            oom_killed=oom,
            isolation=self._isolation(cgroup),
        )

    def _kill_tree(self, proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> list[psutil.Process]:
        """Kill the child and everything it started; return descendants to reap."""
        if cgroup is not None:
            cgroup.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)  # not proc.kill(): it would reap and lose the rusage
            return []
        try:
            descendants = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)  # not proc.kill(): it would reap and lose the rusage
        return descendants

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> tuple[int | None, object | None]:
        try:
            _, status, rusage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            proc.wait()
            return proc.returncode, None
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, rusage
