"""The strict level, cold: one setpriv + bubblewrap sandbox per run, around the same boot script.

Steps per run: cgroup (memory, pids, cpu quota, cpuacct, freezer), open its ``cgroup.procs`` files
for the guest to join through (the guest sees no ``/sys``), build the argv (the drop to the group's
own uid, namespaces, read-only system/runtime/plugin, bounded ``/tmp``), start it; inside, the boot
script joins the cgroups, applies rlimits, Landlock and seccomp, then runs the handler. Used when no
warm fork server is wanted, and as the reference the fork server must match.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from rh_sandbox.egress.run import EgressSettings, RunEgress, run_with_egress
from rh_sandbox.errors import SandboxError
from rh_sandbox.guest.confine import READ
from rh_sandbox.linux.bwrap import bwrap_exit_code, start_sandboxed, strict_command
from rh_sandbox.linux.cgroup_backends import Cgroups
from rh_sandbox.linux.cgroups import RunCgroup
from rh_sandbox.linux.confinement import Confinement
from rh_sandbox.linux.layout import PLUGIN_MOUNT, RUNTIME_MOUNT, landlock_rules, sandbox_environment
from rh_sandbox.linux.uids import SandboxUids, default_uids, processes_of_uid
from rh_sandbox.python.process import ProcessBackend, _exited, guest_rlimits
from rh_sandbox.python.runtime import GUEST_FLAGS, GuestRuntime, readable_by_others
from rh_sandbox.types import IsolationLevel, RunResult, RunSpec

__all__ = ["StrictProcessBackend", "bwrap_exit_code", "require_sandbox_readable"]

_BWRAP_EXIT_S = 2.0  # after the guest is killed, how long bwrap may take to notice and exit


def require_sandbox_readable(plugin_dir: str) -> str:
    """The plugin dir's real path, or SandboxError: the sandbox uid must be able to read it
    (bwrap binds it as that uid; a dir under /root or mode 0700 is invisible to it)."""
    path = Path(plugin_dir).resolve()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SandboxError(f"plugin dir {plugin_dir!r} is not readable: {exc}") from exc
    if not (readable_by_others(path) and mode & stat.S_IXOTH):
        raise SandboxError(
            f"plugin dir {str(path)!r} must be readable by the sandbox uids: "
            "make it and its files world-readable and every parent directory world-searchable"
        )
    return str(path)


class StrictProcessBackend(ProcessBackend):
    """Python handlers in a fresh strict sandbox per run (about 50 ms a run: see the fork server)."""

    isolation = IsolationLevel.STRICT

    def __init__(
        self,
        runtime: GuestRuntime | None = None,
        cgroups: Cgroups | None = None,
        *,
        confinement: Confinement | None = None,
        cpu_quota_cores: float | None = 1.0,
        egress: EgressSettings | None = None,
        uids: SandboxUids | None = None,
        group_max_tasks: int | None = None,
    ) -> None:
        super().__init__(runtime=runtime, cgroups=cgroups, group_max_tasks=group_max_tasks)
        self.uids = uids or default_uids()  # each group's runs as its own uid (the fork server's for it)
        self.egress = egress or EgressSettings()  # the default permits no grant
        self.confinement = confinement or Confinement.detect(self.runtime)
        if self.cgroups.available:
            self.cgroups.sweep_stale()
        self.cpu_quota_cores = cpu_quota_cores

    def _boot_args(
        self, spec: RunSpec, cgroup_fds: list[int], cgroup: RunCgroup | None, egress: RunEgress | None
    ) -> dict:
        nproc = None
        if cgroup is None:  # no pids cgroup: RLIMIT_NPROC, counted over every process of the group's uid
            nproc = processes_of_uid(self.uids.uid_for(spec.group)) + spec.limits.max_processes
        rules = landlock_rules(PLUGIN_MOUNT)
        if egress is not None:
            rules.append(("/etc", READ))  # the generated hosts and nsswitch.conf, the CA certificates
        args = {
            "site": f"{RUNTIME_MOUNT}/site",
            "plugin_dir": PLUGIN_MOUNT,
            "entry": spec.entry,
            "encoding": spec.encoding,
            "rlimits": guest_rlimits(spec.limits, nproc=nproc),
            "cgroup_fds": cgroup_fds,
            **self.confinement.boot_args(rules, egress.ports if egress is not None else None),
        }
        if egress is not None:
            args["egress"] = egress.forwarder_config
        return args

    def _run(
        self, spec: RunSpec, payload: bytes, scratch: str, cgroup: RunCgroup | None, egress: RunEgress | None = None
    ) -> RunResult:
        """A run with network grants gets its own egress broker for exactly its duration."""
        if not spec.allowed_hosts:
            return super()._run(spec, payload, scratch, cgroup)
        peer_check = (lambda pid: pid in cgroup.pids()) if cgroup is not None else None
        return run_with_egress(
            spec.allowed_hosts,
            self.egress,
            peer_check,
            self._isolation(cgroup),
            lambda egress: super(StrictProcessBackend, self)._run(spec, payload, scratch, cgroup, egress),
        )

    def _launch(
        self, spec: RunSpec, scratch: str, cgroup: RunCgroup | None, egress: RunEgress | None = None
    ) -> subprocess.Popen[bytes]:
        plugin_dir = require_sandbox_readable(spec.plugin_dir)
        cgroup_fds = cgroup.open_procs() if cgroup is not None else []
        try:
            guest = [self.runtime.interpreter, *GUEST_FLAGS, f"{RUNTIME_MOUNT}/site/_rh_boot.py"]
            argv = strict_command(
                [*guest, json.dumps(self._boot_args(spec, cgroup_fds, cgroup, egress))],
                uid=self.uids.uid_for(spec.group),
                ro_binds=[
                    (str(self.runtime.root), RUNTIME_MOUNT),
                    (plugin_dir, PLUGIN_MOUNT),
                    *(egress.ro_binds if egress is not None else []),
                ],
                binds=egress.binds if egress is not None else (),
                scratch_mb=spec.limits.scratch_mb,
                env=sandbox_environment(),
                interpreter=self.runtime.interpreter,
                # granted ports below 1024 are bound on the sandbox's own lo; the boot script drops the cap
                cap_add=["CAP_NET_BIND_SERVICE"] if egress is not None else (),
                disable_userns=egress is None,
            )
            pipe = subprocess.PIPE
            return start_sandboxed(argv, stdin=pipe, stdout=pipe, stderr=pipe, pass_fds=cgroup_fds)
        finally:
            for fd in cgroup_fds:
                os.close(fd)

    def _exit_code(self, returncode: int | None) -> int | None:
        return bwrap_exit_code(returncode)

    def _adopt(self, proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> None:
        """Leave bwrap itself out of the cgroup: the guest joins before any plugin code runs."""

    def _kill_tree(self, proc: subprocess.Popen[bytes], cgroup: RunCgroup | None) -> list:
        """Kill the guest's tree, then let bwrap exit by itself: killing the outer bwrap first would
        orphan its namespace's init, which then lingers as a zombie of the host's PID 1."""
        if cgroup is not None:
            cgroup.kill()
            deadline = time.monotonic() + _BWRAP_EXIT_S
            while time.monotonic() < deadline and not _exited(proc.pid):
                time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)  # no cgroup, or bwrap hangs: --die-with-parent ends the rest
        return []

    def _isolation(self, cgroup: RunCgroup | None) -> str:
        return self.isolation.value + self.confinement.suffix(cgroup is not None)
