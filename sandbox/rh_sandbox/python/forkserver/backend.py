"""The fork server backend: a run leases its group's server, claims a waiting child, runs in it and
lets it go; the parts each own their state (see the package's docstring)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from rh_sandbox.linux.cgroup_backends import Cgroups, machine_cgroups
from rh_sandbox.linux.confinement import Confinement
from rh_sandbox.linux.layout import landlock_rules
from rh_sandbox.linux.uids import SandboxUids, default_uids
from rh_sandbox.python.forkserver.child import Child, Preload
from rh_sandbox.python.forkserver.plugin_dirs import PluginDir, PluginDirs, entry_signature
from rh_sandbox.python.forkserver.pool import WaitingChildren
from rh_sandbox.python.forkserver.run import ChildRun
from rh_sandbox.python.forkserver.run_cgroups import RunCgroups, thaw
from rh_sandbox.python.forkserver.servers import Groups, Server
from rh_sandbox.python.forkserver.upkeep import Upkeep
from rh_sandbox.python.forkserver.zygote import Zygote
from rh_sandbox.python.runtime import GuestRuntime
from rh_sandbox.types import IsolationLevel, Limits, RunResult, RunSpec, RunStatus, SandboxError

__all__ = ["ForkServerBackend"]

_log = logging.getLogger("rh.sandbox")
_PRELOADABLE = (RunStatus.OK, RunStatus.FAILED, RunStatus.SKIPPED)  # runs that ended by themselves


class ForkServerBackend:
    """Strict isolation at warm-start cost. ``prefork`` children wait ready in each zygote, each
    already in its own cgroups; ``prefork=0`` forks and joins per request (slower: cgroup v1
    migration can wait for an RCU grace period). For each of the ``preload`` plugins of a group
    most recently run with success, ``prefork`` more children wait with that plugin imported and
    its Landlock rules applied (``preload=0``: none), and with heap warmed for a run the size of
    that plugin's last one: under that run's rlimits and cgroup limits from before the import,
    frozen while they wait, charged to the run that takes them (only where cgroups have a freezer)."""

    isolation = IsolationLevel.STRICT

    def __init__(
        self,
        runtime: GuestRuntime | None = None,
        cgroups: Cgroups | None = None,
        *,
        prefork: int = 1,
        confinement: Confinement | None = None,
        cpu_quota_cores: float | None = 1.0,
        max_plugin_dirs: int = 64,
        preload: int = 4,
        uids: SandboxUids | None = None,
        group_max_tasks: int | None = None,  # pids.max of each group's dir (None: the backend's default)
    ) -> None:
        self.runtime = runtime or GuestRuntime.prepare()
        self.cgroups = cgroups if cgroups is not None else machine_cgroups(group_max_tasks=group_max_tasks)
        if self.cgroups.available:
            self.cgroups.sweep_stale()
        self.confinement = confinement or Confinement.detect(self.runtime)
        self.prefork = prefork
        self.cpu_quota_cores = cpu_quota_cores
        self.max_plugin_dirs = max_plugin_dirs
        self.preload = preload
        self.uids = uids or default_uids()  # each group's zygote and children run as the group's own uid
        self._can_freeze = self.cgroups.available and self.cgroups.can_freeze
        self._plugin_dirs = PluginDirs(self.runtime.interpreter)
        self._run_cgroups = RunCgroups(self.cgroups, cpu_quota_cores)
        self._upkeep = Upkeep(self._run_cgroups)
        self._groups = Groups(self._start_server)
        # Zygotes are started from this one long-lived thread: bwrap --die-with-parent ties the
        # sandbox to the *thread* that forked it (PR_SET_PDEATHSIG), so a zygote started from a
        # caller's short-lived worker thread would be SIGKILLed when that thread ends.
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rh-zygote-starter")

    # ---- Backend --------------------------------------------------------------------------
    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        if spec.runtime != "python":
            raise SandboxError(f"ForkServerBackend runs python handlers, not {spec.runtime!r}")
        plugin_dir = self._plugin_dirs.check(spec.plugin_dir)
        for attempt in range(2):
            server = self._groups.acquire(spec.group, plugin_dir)
            try:
                return self._run(server, plugin_dir, spec, payload)
            except BrokenPipeError:
                if attempt:
                    raise SandboxError(f"fork server keeps failing; stderr: {server.zygote.stderr_tail()}") from None
                _log.warning("fork server of group %r lost a child or exited; retrying the run", spec.group)
            finally:
                self._groups.release(server)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop every zygote and remove every cgroup this backend made. A second call does nothing."""
        servers = self._groups.close()
        self._upkeep.close()  # releases the children of ended runs
        for server in servers:
            server.stop()
        self._run_cgroups.close()
        self._starter.shutdown(wait=True)
        self._plugin_dirs.close()

    def __enter__(self) -> ForkServerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def zygote_count(self) -> int:
        """Running zygotes (for tests and metrics)."""
        return self._groups.running()

    # ---- servers --------------------------------------------------------------------------
    def _start_server(self, group: str, plugin_dir: PluginDir, old: Server | None) -> Server:
        """A new server for ``group`` binding the live dirs of ``old`` plus ``plugin_dir``, its plugin's
        bytecode written meanwhile, its first children on their way."""
        kept = [d for d in (old.zygote.plugin_dirs if old else []) if d != plugin_dir and d.still_there()]
        dirs = [*kept[-(self.max_plugin_dirs - 1) :], plugin_dir] if self.max_plugin_dirs > 1 else [plugin_dir]
        compiling = self._plugin_dirs.compile_once(plugin_dir)
        server = Server(group, self._start_zygote(dirs, group), WaitingChildren(self.prefork, self.preload))
        self._plugin_dirs.await_compiled(compiling)
        self._upkeep.top_up(server)  # the first runs of a new zygote find children on their way
        return server

    def _start_zygote(self, dirs: list[PluginDir], group: str) -> Zygote:
        """Start one from the starter thread (see docs/isolation.md on ``--die-with-parent``), in its
        group's cgroup of the cpu hierarchy where the machine has one: what it forks is the group's."""
        cgroup_fd = None
        if self.cgroups.available:
            try:
                cgroup_fd = self.cgroups.group_procs(group)
            except OSError as exc:
                raise SandboxError(f"cannot create the cgroup of group {group!r}: {exc}") from exc
        try:
            uid = self.uids.uid_for(group)
            start = self._starter.submit(
                Zygote, self.runtime, self.confinement, dirs, uid, group=group, cgroup_fd=cgroup_fd
            )
            return start.result()
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)

    # ---- one run --------------------------------------------------------------------------
    def _run(self, server: Server, plugin_dir: PluginDir, spec: RunSpec, payload: bytes) -> RunResult:
        inside = server.zygote.inside_path(plugin_dir)
        if inside is None:
            raise SandboxError("plugin dir is not bound in the fork server")  # acquire guarantees it
        preload = self._preload_key(server, plugin_dir, inside, spec)
        child = self._claim(server, spec.limits, preload)
        try:
            landlock = preload.landlock if preload is not None else self._landlock(inside)
            suffix = self.confinement.suffix(child.cgroup is not None)
            isolation = self.isolation.value + suffix + "+forkserver"
            run = ChildRun(server.zygote, child, spec, inside=inside, landlock=landlock, isolation=isolation)
            result = run.run(payload)
        finally:
            self._upkeep.let_go(child)
        if preload is not None and result.status in _PRELOADABLE:
            self._ran(server, preload, len(payload))
        return result

    def _claim(self, server: Server, limits: Limits, preload: Preload | None) -> Child:
        """A waiting child (see :meth:`WaitingChildren.claim`) in a cgroup set to this run's limits,
        else one forked now."""
        claim = server.children.claim(limits.scratch_mb, preload)
        self._upkeep.arm(server)  # what the claim took is armed again
        for stale in claim.stale:
            self._upkeep.discard(server.zygote, stale)
        child = claim.child
        if child is not None and child.cgroup is not None:
            try:
                if child.preload is not None:
                    thaw(child.cgroup)  # it waited frozen; what its import used is this run's
                # a child for any run that had not said it waits: its counters hold its cgroup's last run
                reset = child.preload is None and not claim.was_ready
                self._run_cgroups.fit(child.cgroup, limits, reset=reset)
            except OSError:  # e.g. its waiting child already uses more than this run's memory limit
                self._upkeep.discard(server.zygote, child)
                child = None
        if child is None:
            child = server.zygote.spawn(self._run_cgroups.for_run(server.group, limits), limits.scratch_mb)
        return child

    def _preload_key(self, server: Server, plugin_dir: PluginDir, inside: str, spec: RunSpec) -> Preload | None:
        """The run's plugin as children armed for it know it; None when it is not to be preloaded:
        plugin code runs in a waiting child only under its run's limits and frozen, so only where run
        cgroups have a freezer."""
        if self.preload <= 0 or self.prefork <= 0 or not self._can_freeze:
            return None
        if not server.children.preloadable(inside, spec.entry):
            return None
        signature = entry_signature(plugin_dir.path, spec.entry)
        if signature is None:
            return None
        return Preload(inside, spec.entry, self._landlock(inside), signature, spec.limits)

    def _landlock(self, inside: str) -> tuple[tuple[str, int], ...]:
        """A run's Landlock rules (none without Landlock), as its request and a Preload carry them."""
        return tuple(landlock_rules(inside)) if self.confinement.landlock_abi else ()

    def _ran(self, server: Server, preload: Preload, size: int) -> None:
        """A run of ``preload``'s plugin (an invocation of ``size`` bytes) ended by itself: keep
        children armed for it; kill those of a plugin it pushed out of the group's warm ones."""
        rearm, stale = server.children.ran(preload, size)
        if rearm:
            self._upkeep.arm(server)
        for child in stale:
            self._upkeep.discard(server.zygote, child)
