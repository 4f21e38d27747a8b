"""Warm strict dispatch: a fork server per group (tenant), one forked child per invocation.

Steps per run: find (or start) the group's zygote with the plugin dir bound; create the run's
cgroup and open its ``cgroup.procs`` files; make the stdio pipes; hand the guest ends and the
cgroup fds to the zygote; exchange stdin/stdout/stderr under caps and a deadline (the same pump as
the cold path); kill what is left (cgroup freeze-kill, and the run's PID namespace through the
zygote); measure; classify with the same rules as the cold path.

Plugin dirs: a zygote's mount namespace is fixed when it starts, so the plugin dirs of its group are
bound read-only then (``/plugins/<n>``). A run whose dir is not bound (a new plugin, a new version
in a new dir, or a dir replaced by a new inode) starts a new zygote for the group binding the union
of the live dirs; the old one finishes its runs and stops. Files changed in place are seen at once
(a bind is a live view), and the zygote never imports plugin code, so every invocation loads the
current code (a child armed for a plugin imported it before its request, and checks the files it
loaded again at the request: see ``docs/isolation.md``).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import select
import signal
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import msgspec

from rh_sandbox._pump import Exchange, exchange
from rh_sandbox.bytecode import precompile
from rh_sandbox.cgroups import CgroupV1, RunCgroup
from rh_sandbox.classify import bounded_reply, run_result
from rh_sandbox.confinement import Confinement
from rh_sandbox.decoded import DecodedTooLarge
from rh_sandbox.layout import landlock_rules
from rh_sandbox.process import guest_rlimits
from rh_sandbox.runtime import GuestRuntime
from rh_sandbox.strict import require_sandbox_readable
from rh_sandbox.types import IsolationLevel, Limits, RunResult, RunSpec, RunStatus, SandboxError
from rh_sandbox.uids import SandboxUids, default_uids, processes_of_uid
from rh_sandbox.zygote import Child, PluginDir, Preload, Zygote
from rh_sdk.protocol import Encoding, Reply

__all__ = ["ForkServerBackend"]

_log = logging.getLogger("rh.sandbox")
_EXIT_GRACE_S = 2.0  # after the pipes close, how long the zygote may take to report the child's end
_COMPILE_WAIT_S = 5.0  # how long a new plugin dir's first run waits for its bytecode
_MEMFD_MIN_BYTES = 1 << 16  # invocations from this size go in a memfd, not a pipe
_FIRST_CHECK_S = 0.01  # the pump's first CPU and process-count checks come after this, not at once
_ARM_TIMEOUT_S = 5.0  # how long an armed child may take to confine itself and say it waits
_PRELOAD_TIMEOUT_S = 0.5  # ... and one that imports its plugin first (slower: that plugin is not preloaded)
# A child armed for a plugin warms Python heap for its run's objects: decoding a msgpack invocation
# takes ~4 bytes of heap per byte (1,000 chat completions: 0.55 MB -> ~2.1 MB). Small runs need none;
# the cap bounds what an idle child holds (a run with a lower memory limit discards such a child).
_HEAP_PER_INVOCATION_BYTE = 4
_HEAP_WARM_MIN = 1 << 20
_HEAP_WARM_MAX = 16 << 20
# Emptied run cgroups kept for reuse, at most: a cgroup is made only when none is pooled, so the pool
# settles at the most that were in use at once and a steady load makes none (cgroup v1: making and
# removing one costs ~0.65 ms of CPU here, a seventh of a whole pre-forked run)
_POOL_MAX = 64
_MEMO_MAX = 4096  # plugin dirs remembered as checked readable, or as compiled
_PRELOADABLE = (RunStatus.OK, RunStatus.FAILED, RunStatus.SKIPPED)  # runs that ended by themselves


def _grow_pipe(fd: int, size_bytes: int) -> None:
    """Let a big payload go in one write instead of 64 KiB ping-pongs with the guest."""
    if size_bytes > 65536:
        with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(size_bytes, 1 << 20))


class _Group:
    """One group's current zygote, and the lock that serialises replacing it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.zygote: Zygote | None = None


class ForkServerBackend:
    """Strict isolation at warm-start cost. ``prefork`` children wait ready in each zygote, each
    already in its own cgroups; ``prefork=0`` forks and joins per request (slower: cgroup v1
    migration can wait for an RCU grace period). For each of the ``preload`` plugins of a group
    most recently run with success, ``prefork`` more children wait with that plugin imported and
    its Landlock rules applied (``preload=0``: none), and with heap warmed for a run the size of
    that plugin's last one."""

    isolation = IsolationLevel.STRICT

    def __init__(
        self,
        runtime: GuestRuntime | None = None,
        cgroups: CgroupV1 | None = None,
        *,
        prefork: int = 1,
        confinement: Confinement | None = None,
        cpu_quota_cores: float | None = 1.0,
        max_plugin_dirs: int = 64,
        preload: int = 4,
        uids: SandboxUids | None = None,
    ) -> None:
        self.runtime = runtime or GuestRuntime.prepare()
        self.cgroups = cgroups if cgroups is not None else CgroupV1()
        if self.cgroups.available:
            self.cgroups.sweep_stale()
        self.confinement = confinement or Confinement.detect(self.runtime)
        self.prefork = prefork
        self.cpu_quota_cores = cpu_quota_cores
        self.max_plugin_dirs = max_plugin_dirs
        self.preload = preload
        self.uids = uids or default_uids()  # each group's zygote and children run as the group's own uid
        self._groups: dict[str, _Group] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._retired: list[Zygote] = []
        # background upkeep: arm zygotes with waiting children, offer each to runs once it says it
        # waits, recycle the cgroups of ended runs. One thread, woken through a pipe.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._to_arm: list[Zygote] = []
        self._arming: dict[Child, Zygote] = {}  # in their zygote's ``armed``, not yet said they wait
        self._to_release: list[Child] = []  # ended runs' children: close, recycle their cgroups
        # emptied run cgroups whose counters can be reset, per tenant (in its dir of the cpu hierarchy)
        self._pool: dict[str | None, list[RunCgroup]] = {}
        self._upkeep = threading.Thread(target=self._upkeep_loop, name="rh-forkserver-upkeep", daemon=True)
        self._upkeep.start()
        # Zygotes are started from this one long-lived thread: bwrap --die-with-parent ties the
        # sandbox to the *thread* that forked it (PR_SET_PDEATHSIG), so a zygote started from a
        # caller's short-lived worker thread would be SIGKILLed when that thread ends.
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rh-zygote-starter")
        self._compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rh-bytecode")
        self._compiled: set[PluginDir] = set()  # plugin dirs whose bytecode was written (or tried)
        self._readable: set[PluginDir] = set()  # plugin dirs found readable by the sandbox uid

    # ---- Backend --------------------------------------------------------------------------
    def run(self, spec: RunSpec, payload: bytes) -> RunResult:
        if spec.runtime != "python":
            raise SandboxError(f"ForkServerBackend runs python handlers, not {spec.runtime!r}")
        plugin_dir = self._plugin_dir(spec.plugin_dir)
        for attempt in range(2):
            zygote = self._acquire(spec.group, plugin_dir)
            try:
                return self._run(zygote, plugin_dir, spec, payload)
            except BrokenPipeError:
                if attempt:
                    raise SandboxError(f"fork server keeps failing; stderr: {zygote.stderr_tail()}") from None
                _log.warning("fork server of group %r lost a child or exited; retrying the run", spec.group)
            finally:
                self._done_with(zygote)
        raise AssertionError("unreachable")

    def _plugin_dir(self, path: str) -> PluginDir:
        """The run's plugin dir (resolved and stat'ed each run: a dir replaced at the same path, or a
        re-pointed symlink, is a new one). Whether uid 65534 can read it is checked once per dir:
        that walk stats every parent, ~0.1 ms that every run of the dir would otherwise pay."""
        try:
            plugin_dir = PluginDir.of(path)
        except OSError as exc:
            raise SandboxError(f"plugin dir {path!r} is not readable: {exc}") from exc
        if plugin_dir not in self._readable:
            require_sandbox_readable(plugin_dir.path)
            with self._lock:
                _remember(self._readable, plugin_dir)
        return plugin_dir

    def close(self) -> None:
        with self._lock:
            self._closed = True
            groups, self._groups = list(self._groups.values()), {}
            retired, self._retired = self._retired, []
        self._wake()
        self._upkeep.join()
        for zygote in [g.zygote for g in groups if g.zygote is not None] + retired:
            self._stop(zygote)
        with self._lock:
            ended, self._to_release = self._to_release, []
            pooled = [c for cgroups in self._pool.values() for c in cgroups]
            self._pool = {}
        for child in ended:
            self._release(child)  # the pool is closed: this removes their cgroups
        for cgroup in pooled:
            cgroup.close()
        self.cgroups.remove_tenant_dirs()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._starter.shutdown(wait=True)
        self._compiler.shutdown(wait=True, cancel_futures=True)

    def _stop(self, zygote: Zygote) -> None:
        """Stop a zygote (its waiting children die with its sandbox) and remove their cgroups."""
        zygote.close()
        with self._lock:
            armed, zygote.armed = list(zygote.armed), deque()
            for child in armed:
                self._arming.pop(child, None)
        for child in armed:
            child.close()
            if child.cgroup is not None:
                child.cgroup.close()

    def __enter__(self) -> ForkServerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def zygote_count(self) -> int:
        """Running zygotes (for tests and metrics)."""
        with self._lock:
            return sum(1 for g in self._groups.values() if g.zygote is not None and g.zygote.alive())

    # ---- zygotes --------------------------------------------------------------------------
    def _acquire(self, group_name: str, plugin_dir: PluginDir) -> Zygote:
        with self._lock:
            if self._closed:
                raise SandboxError("backend is closed")
            group = self._groups.setdefault(group_name, _Group())
        with group.lock:
            zygote = group.zygote
            if zygote is None or not zygote.alive() or zygote.inside_path(plugin_dir) is None:
                group.zygote = self._replace(zygote, plugin_dir, group_name)
                zygote = group.zygote
            with self._lock:
                zygote.active += 1
            return zygote

    def _replace(self, old: Zygote | None, plugin_dir: PluginDir, group_name: str) -> Zygote:
        """A new zygote binding the live dirs of the old one plus ``plugin_dir``; retire the old."""
        dirs = [d for d in (old.plugin_dirs if old else []) if d != plugin_dir and d.still_there()]
        dirs = [*dirs[-(self.max_plugin_dirs - 1) :], plugin_dir] if self.max_plugin_dirs > 1 else [plugin_dir]
        compiling = None
        if plugin_dir not in self._compiled:  # the plugin's bytecode, written while the zygote starts
            _remember(self._compiled, plugin_dir)
            compiling = self._compiler.submit(precompile, plugin_dir.path, self.runtime.interpreter)
        zygote = self._start_zygote(dirs, group_name)
        if compiling is not None:
            with contextlib.suppress(Exception):  # not done (a big vendor dir): later runs get it
                compiling.result(timeout=_COMPILE_WAIT_S)
        self._top_up(zygote)  # the first runs of a new zygote find children on their way
        if old is not None:
            with self._lock:
                old.retired = True
                idle = old.active == 0
                if not idle:
                    self._retired.append(old)
            if idle:
                self._stop(old)
        return zygote

    def _start_zygote(self, dirs: list[PluginDir], group_name: str) -> Zygote:
        """Start one from the starter thread (see docs/isolation.md on ``--die-with-parent``), in its
        tenant's cgroup of the cpu hierarchy where the machine has one: what it forks is the tenant's."""
        cgroup_fd = None
        if self.cgroups.available:
            try:
                cgroup_fd = self.cgroups.tenant_procs(group_name)
            except OSError as exc:
                raise SandboxError(f"cannot create the cgroup of group {group_name!r}: {exc}") from exc
        try:
            uid = self.uids.uid_for(group_name)
            start = functools.partial(Zygote, group=group_name, cgroup_fd=cgroup_fd)
            return self._starter.submit(start, self.runtime, self.confinement, dirs, uid).result()
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)

    def _done_with(self, zygote: Zygote) -> None:
        with self._lock:
            zygote.active -= 1
            stop = zygote.retired and zygote.active == 0
            if stop and zygote in self._retired:
                self._retired.remove(zygote)
        if stop:
            self._stop(zygote)

    # ---- armed children: forked ahead, waiting in their own cgroups -------------------------
    def _top_up(self, zygote: Zygote) -> None:
        """Fork what ``zygote`` lacks of waiting children (see :meth:`_missing`), without waiting for
        them: they confine themselves in parallel, and the upkeep loop offers each to runs once it
        says it waits (:meth:`_promote`). Until then a run may still take a generic one."""
        while not zygote.dead:
            with self._lock:
                preload = self._missing(zygote)
                if preload is False or self._closed or zygote.retired:
                    break
                scratch_mb = zygote.scratch_mb
                heap_bytes = zygote.warm.get(preload, 0) if preload is not None else 0
            try:
                cgroup = self._pooled(zygote.group) or self._cgroup(Limits(), zygote.group)
                child = self._spawn(zygote, cgroup, scratch_mb, preload=preload, heap_bytes=heap_bytes)
            except OSError:
                break
            child.deadline = time.monotonic() + (_ARM_TIMEOUT_S if preload is None else _PRELOAD_TIMEOUT_S)
            with self._lock:
                kept = not (zygote.dead or self._closed)
                if kept:
                    zygote.armed.append(child)
                    self._arming[child] = zygote
            if not kept:
                self._discard(zygote, child)
                break
        self._wake()  # the upkeep loop watches the new children (this may be a run's thread)

    def _promote(self, zygote: Zygote, child: Child) -> None:
        """An arming child said it waits, or its time is up: reset its cgroup's counters (what its
        set-up used is not the run's) and offer it to runs as ready, or discard it. A child armed for
        a plugin that never said it waits (its import raised, hung or was slow): that plugin is not
        preloaded again."""
        with self._lock:
            self._arming.pop(child, None)
            if child not in zygote.armed:
                return  # a run took it meanwhile, or it was discarded
            zygote.armed.remove(child)  # ours now: no run takes it while its counters are reset
        ready = child.await_ready(0)
        if ready and child.cgroup is not None:
            try:
                child.cgroup.reset_usage()
            except OSError:
                ready = False
        if not ready and child.preload is not None:
            self._unpreloadable(zygote, child.preload)
        with self._lock:
            kept = ready and not (zygote.dead or zygote.retired or self._closed)
            if kept:
                zygote.armed.append(child)
        if not kept:
            self._discard(zygote, child)

    def _missing(self, zygote: Zygote) -> Preload | bool | None:
        """What the next child to arm is for: a plugin (Preload), any run (None), or nothing (False:
        the group has ``prefork`` children waiting or arming for each). Called with the lock held."""
        if sum(1 for c in zygote.armed if c.preload is None) < self.prefork:
            return None
        for preload in zygote.warm:
            if sum(1 for c in zygote.armed if c.preload == preload) < self.prefork:
                return preload
        return False

    def _unpreloadable(self, zygote: Zygote, preload: Preload) -> None:
        with self._lock:
            zygote.warm.pop(preload, None)
            zygote.unpreloadable.add((preload.plugin_dir, preload.entry))

    def _preload_key(self, zygote: Zygote, plugin_dir: PluginDir, inside: str, entry: str) -> Preload | None:
        """The run's plugin as children armed for it know it; None when it is not to be preloaded."""
        if self.preload <= 0 or self.prefork <= 0 or (inside, entry) in zygote.unpreloadable:
            return None
        signature = _entry_signature(plugin_dir.path, entry)
        if signature is None:
            return None
        return Preload(inside, entry, self._landlock(inside), signature)

    def _landlock(self, inside: str) -> tuple[tuple[str, int], ...]:
        """A run's Landlock rules (none without Landlock), as its request and a Preload carry them."""
        return tuple(landlock_rules(inside)) if self.confinement.landlock_abi else ()

    def _ran(self, zygote: Zygote, preload: Preload | None, status: RunStatus, size: int) -> None:
        """A run of ``preload``'s plugin (an invocation of ``size`` bytes) ended: keep children armed
        for it if it ended by itself, with heap warmed for a run of that size; forget the group's
        least recent plugin beyond ``preload`` (its waiting children are killed)."""
        if preload is None or status not in _PRELOADABLE:
            return
        heap_bytes = _heap_to_warm(size)
        stale: list[Child] = []
        with self._lock:
            if zygote.retired or zygote.dead:
                return
            if preload in zygote.warm:  # the usual case: its children are re-armed since the claim
                zygote.warm[preload] = heap_bytes  # for children armed from now on
                zygote.warm.move_to_end(preload)
                return
            for known in [k for k in zygote.warm if k.same_plugin(preload)]:
                del zygote.warm[known]  # edited in place since: its children were discarded at claim
            zygote.warm[preload] = heap_bytes
            while len(zygote.warm) > self.preload:
                evicted, _ = zygote.warm.popitem(last=False)
                stale += [c for c in zygote.armed if c.preload == evicted]
            for child in stale:
                zygote.armed.remove(child)
                self._arming.pop(child, None)
            self._to_arm.append(zygote)
        self._wake()
        for child in stale:
            self._discard(zygote, child)

    def _spawn(
        self,
        zygote: Zygote,
        cgroup: RunCgroup | None,
        scratch_mb: int,
        *,
        preload: Preload | None = None,
        heap_bytes: int = 0,
    ) -> Child:
        try:
            return zygote.spawn(cgroup, scratch_mb, preload=preload, heap_bytes=heap_bytes)
        except OSError:
            if cgroup is not None:
                cgroup.close()
            raise

    def _claim(self, zygote: Zygote, limits: Limits, preload: Preload | None) -> Child:
        """A waiting child in a cgroup set to this run's limits: one armed with this run's plugin
        imported, else one armed for any run, else one for any run still confining itself (it is
        further along than a fork now; the request waits in its socket), else one forked now."""
        child = None
        with self._lock:
            # armed with an older state of this plugin (edited in place), or for another scratch size
            stale = [
                c
                for c in zygote.armed
                if c.preload is not None
                and preload is not None
                and c.preload.same_plugin(preload)
                and c.preload != preload
            ]
            fits = [c for c in zygote.armed if c.scratch_mb == limits.scratch_mb and c not in stale]
            ready = [c for c in fits if c.ready]
            child = next((c for c in ready if preload is not None and c.preload == preload), None)
            child = child or next((c for c in ready if c.preload is None), None)
            child = child or next((c for c in fits if c.preload is None), None)  # still arming
            if child is None:  # make room for children of this run's size
                stale += [c for c in zygote.armed if c.scratch_mb != limits.scratch_mb][:1]
            for c in [*stale, *([child] if child is not None else [])]:
                zygote.armed.remove(c)
                self._arming.pop(c, None)
            zygote.scratch_mb = limits.scratch_mb
            if not zygote.retired:
                self._to_arm.append(zygote)
        self._wake()
        for c in stale:
            self._discard(zygote, c)
        if child is not None and child.cgroup is not None:
            try:
                child.cgroup.set_limits(
                    memory_mb=limits.memory_mb,
                    max_processes=limits.max_processes,
                    cpu_quota_cores=self.cpu_quota_cores,
                )
                if not child.ready:  # its counters still hold the cgroup's previous run
                    child.cgroup.reset_usage()
            except OSError:  # e.g. its waiting child already uses more than this run's memory limit
                self._discard(zygote, child)
                child = None
        if child is None:
            cgroup = self._pooled(zygote.group)
            if cgroup is not None:
                try:
                    cgroup.set_limits(
                        memory_mb=limits.memory_mb,
                        max_processes=limits.max_processes,
                        cpu_quota_cores=self.cpu_quota_cores,
                    )
                    cgroup.reset_usage()
                except OSError:  # removed from outside while pooled: the run gets a new one
                    cgroup.close()
                    cgroup = None
            child = self._spawn(zygote, cgroup or self._cgroup(limits, zygote.group), limits.scratch_mb)
        return child

    def _discard(self, zygote: Zygote, child: Child) -> None:
        zygote.kill(child)
        self._let_go(child)

    def _let_go(self, child: Child) -> None:
        """Kill now whatever of the run is left (nothing may outlive ``run``); close the child's
        sockets and recycle its cgroup in the background, after the result is returned. An answered
        child was killed already: its end is awaited in the background."""
        if not child.answered and child.cgroup is not None and _occupied(child.cgroup):
            child.cgroup.kill()
        with self._lock:
            if not self._closed:
                self._to_release.append(child)
                self._wake()
                return
        self._release(child)

    def _release(self, child: Child, *, reaped: bool = False) -> None:
        """Close the child's sockets and recycle its cgroup. An answered child was SIGKILLed: its
        cgroup is reused only once the zygote has reaped it (``reaped``: the upkeep loop saw its status
        pipe readable) or it has been freeze-killed."""
        if child.answered and child.cgroup is not None and not (reaped or _readable(child.status_fd, _EXIT_GRACE_S)):
            child.cgroup.kill()  # SIGKILLed, yet not reaped in time: make sure before the cgroup is reused
        child.close()
        if child.cgroup is not None:
            self._recycle(child.cgroup)

    def _pooled(self, group: str) -> RunCgroup | None:
        with self._lock:
            pooled = self._pool.get(group)
            return pooled.pop() if pooled else None

    def _recycle(self, cgroup: RunCgroup) -> None:
        """Pool an emptied cgroup for the next armed child of its tenant, unless it carries events a
        reset cannot clear (an OOM kill, a refused fork): those are removed. Beyond ``_POOL_MAX`` in
        all, the oldest of the tenant with the most pooled goes (a tenant that stopped running does
        not keep the others' runs making cgroups)."""
        if _occupied(cgroup) or cgroup.oom_killed() or cgroup.pids_limited():
            cgroup.close()
            return
        with self._lock:
            if self._closed:
                evicted: RunCgroup | None = cgroup
            else:
                self._pool.setdefault(cgroup.tenant, []).append(cgroup)
                evicted = None
                if sum(map(len, self._pool.values())) > _POOL_MAX:
                    evicted = max(self._pool.values(), key=len).pop(0)
        if evicted is not None:
            evicted.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: it is awake already
            os.write(self._wake_w, b"w")

    def _upkeep_loop(self) -> None:
        """Arm zygotes that lack waiting children, offer arming children to runs as each says it
        waits, release ended runs' children (an answered one once the zygote has reaped it). Waits
        on all of these at once, so no child's set-up or end holds up another's."""
        exiting: dict[Child, float] = {}  # answered runs' children, SIGKILLed: release when reaped
        while True:
            with self._lock:
                if self._closed:
                    self._to_release += exiting  # close() waits for them
                    return
                to_arm, self._to_arm = self._to_arm, []
                ended, self._to_release = self._to_release, []
            try:
                self._upkeep_step(exiting, ended, to_arm)
            except Exception:  # a bug here must not end the upkeep: runs would fork on request forever
                _log.exception("fork server upkeep failed; going on")
                time.sleep(0.1)

    def _upkeep_step(self, exiting: dict[Child, float], ended: list[Child], to_arm: list[Zygote]) -> None:
        now = time.monotonic()
        for child in ended:
            if child.answered:
                exiting[child] = now + _EXIT_GRACE_S
            else:
                self._release(child)
        for zygote in dict.fromkeys(to_arm):
            try:
                self._top_up(zygote)
            except SandboxError as exc:
                _log.warning("cannot arm the fork server: %s", exc)
        with self._lock:
            arming = dict(self._arming)
        deadlines = [c.deadline for c in arming] + list(exiting.values())
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        try:
            watched = [self._wake_r, *(c.request for c in arming), *(c.status_fd for c in exiting)]
            readable = set(select.select(watched, [], [], timeout)[0])
        except (OSError, ValueError):  # a child closed meanwhile (its zygote stopped): forget it
            with self._lock:
                self._arming = {c: z for c, z in self._arming.items() if c in z.armed and c.request.fileno() >= 0}
            return
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        now = time.monotonic()
        for child, zygote in arming.items():
            if child.request in readable or now >= child.deadline:
                self._promote(zygote, child)
        for child, until in list(exiting.items()):
            if child.status_fd in readable or now >= until:
                del exiting[child]
                self._release(child, reaped=child.status_fd in readable)

    # ---- one run --------------------------------------------------------------------------
    def _cgroup(self, limits: Limits, group: str) -> RunCgroup | None:
        return self.cgroups.for_run(limits, self.cpu_quota_cores, tenant=group)

    def _request(
        self,
        spec: RunSpec,
        zygote: Zygote,
        inside: str,
        landlock: tuple[tuple[str, int], ...],
        cgroup: RunCgroup | None,
        size: int,
    ) -> dict:
        nproc = None if cgroup is not None else processes_of_uid(zygote.uid) + spec.limits.max_processes
        return {
            "entry": spec.entry,
            "plugin_dir": inside,
            "encoding": spec.encoding,
            "size": size,  # of the invocation on stdin: the child reads it into one buffer
            "rlimits": guest_rlimits(spec.limits, nproc=nproc),
            "landlock": landlock,
        }

    def _run(self, zygote: Zygote, plugin_dir: PluginDir, spec: RunSpec, payload: bytes) -> RunResult:
        limits = spec.limits
        inside = zygote.inside_path(plugin_dir)
        if inside is None:
            raise SandboxError("plugin dir is not bound in the fork server")  # _acquire guarantees it
        preload = self._preload_key(zygote, plugin_dir, inside, spec.entry)
        child = self._claim(zygote, limits, preload)
        try:
            started = time.monotonic()
            stdin_r, stdin_w = _invocation_input(payload)
            stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
            stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
            guest_fds = [stdin_r, stdout_w, stderr_w]
            try:
                rest = _prefill(stdin_w, payload) if stdin_w >= 0 else b""
                landlock = preload.landlock if preload is not None else self._landlock(inside)
                request = msgspec.json.encode(self._request(spec, zygote, inside, landlock, child.cgroup, len(payload)))
                socket.send_fds(child.request, [request], guest_fds)  # straight to the child
            except OSError:
                for fd in (stdin_w, stdout_r, stderr_r):
                    if fd >= 0:
                        os.close(fd)
                raise BrokenPipeError("the waiting child was gone") from None
            finally:
                for fd in guest_fds:
                    os.close(fd)
            if not rest and stdin_w >= 0:
                os.close(stdin_w)
            with (
                os.fdopen(stdin_w, "wb") if rest else contextlib.nullcontext() as stdin,
                os.fdopen(stdout_r, "rb") as out,
                os.fdopen(stderr_r, "rb") as err,
            ):
                cgroup = child.cgroup
                first_check = started + _FIRST_CHECK_S  # nothing to find at once (counters were reset)
                io = exchange(
                    stdin=stdin,
                    stdout=out,
                    stderr=err,
                    payload=rest,
                    deadline=started + limits.wall_seconds,
                    max_stdout=limits.max_output_kb * 1024,
                    max_stderr=limits.max_log_kb * 1024,
                    exited=lambda: _readable(child.status_fd, 0),
                    over_cpu=lambda: (
                        cgroup is not None
                        and time.monotonic() > first_check
                        and cgroup.cpu_ms() > limits.cpu_seconds * 1000
                    ),
                    over_processes=lambda: (
                        cgroup is not None and time.monotonic() > first_check and cgroup.pids_limited()
                    ),
                    started=started,
                )
            reply = self._answered(child, io, spec.encoding, limits.max_output_kb)
            if reply is not None:
                result = self._result(spec, io, 0, 0, child.cgroup, reply)
            else:
                code, maxrss_kb = self._finish(zygote, child, breached=io.breach is not None)
                result = self._result(spec, io, code, maxrss_kb, child.cgroup)
        finally:
            self._let_go(child)
        self._ran(zygote, preload, result.status, len(payload))
        return result

    def _answered(self, child: Child, io: Exchange, encoding: Encoding, max_output_kb: int) -> Reply | None:
        """The run's reply when the run is over without waiting for the child's exit: it wrote a whole
        reply and closed its stdio, within every limit. The child is SIGKILLed now (pid 1 of its PID
        namespace: everything it started dies with it); its teardown and reaping, ~1 ms of unmapping
        an address space, happen after the result is returned (:meth:`_release` waits for them
        before the cgroup is reused). None: wait for the exit code as usual (no reply, a breach, or a
        run without cgroups, whose usage only the reaper knows)."""
        if io.breach is not None or not io.stdout or child.cgroup is None:
            return None
        try:
            reply = bounded_reply(io.stdout, encoding, max_output_kb)
        except (msgspec.DecodeError, msgspec.ValidationError, DecodedTooLarge):
            return None  # a partial reply (how the child ended decides) or one over a decoded cap
        _kill_members(child.cgroup)  # synchronous: nothing of the run executes once we return
        child.answered = True
        return reply

    def _finish(self, zygote: Zygote, child: Child, *, breached: bool) -> tuple[int | None, int]:
        """The handler's exit code and peak RSS; kill whatever of the run is left."""
        if breached or not _readable(child.status_fd, _EXIT_GRACE_S):
            if child.cgroup is not None:
                child.cgroup.kill()
            zygote.kill(child)
            if not _readable(child.status_fd, _EXIT_GRACE_S):
                return None, 0
        try:
            data = os.read(child.status_fd, 64)
        except OSError:
            data = b""
        if not data:  # the zygote closed the pipe without a word: it (and its sandbox) is gone
            return -signal.SIGKILL, 0
        code, maxrss_kb = (int(x) for x in data.split())
        return code, maxrss_kb

    def _result(
        self,
        spec: RunSpec,
        io: Exchange,
        code: int | None,
        maxrss_kb: int,
        cgroup: RunCgroup | None,
        reply: Reply | None = None,
    ) -> RunResult:
        cpu_ms = cgroup.cpu_ms() if cgroup is not None else 0.0
        peak_kb = max(maxrss_kb, cgroup.peak_memory_kb() if cgroup is not None else 0)
        oom = cgroup is not None and cgroup.oom_killed()
        return run_result(
            spec,
            io,
            returncode=code,
            cpu_ms=cpu_ms,
            peak_kb=peak_kb,
            oom_killed=oom,
            isolation=self.isolation.value + self.confinement.suffix(cgroup is not None) + "+forkserver",
            reply=reply,
        )


def _remember(seen: set[PluginDir], plugin_dir: PluginDir) -> None:
    """Add to a per-dir memo, emptied when it reaches ``_MEMO_MAX`` (a host that sees ever new dirs
    redoes a check now and then rather than growing without bound)."""
    if len(seen) >= _MEMO_MAX:
        seen.clear()
    seen.add(plugin_dir)


def _heap_to_warm(invocation_bytes: int) -> int:
    """How much heap a child armed for a plugin warms, after a run of that plugin this size: what
    decoding such an invocation takes, none below a megabyte, at most ``_HEAP_WARM_MAX``."""
    heap = invocation_bytes * _HEAP_PER_INVOCATION_BYTE
    return 0 if heap < _HEAP_WARM_MIN else min(heap, _HEAP_WARM_MAX)


def _invocation_input(payload: bytes) -> tuple[int, int]:
    """The child's stdin and our writing end (-1: none). A big invocation goes in a sealed memfd
    that the child maps instead of copying it out of a pipe; a small one in a pipe, written now."""
    if len(payload) >= _MEMFD_MIN_BYTES:
        with contextlib.suppress(OSError):
            fd = os.memfd_create("rh-invocation", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.lseek(fd, 0, os.SEEK_SET)
                seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)  # the child cannot change what the host wrote
                return fd, -1
            except OSError:
                os.close(fd)
                raise
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    os.set_blocking(read_end, True)
    _grow_pipe(write_end, len(payload))
    return read_end, write_end


def _prefill(fd: int, payload: bytes) -> bytes:
    """Write what fits of ``payload`` into the (non-blocking) pipe now; return the rest."""
    try:
        return payload[os.write(fd, payload) :] if payload else payload
    except BlockingIOError:
        return payload


def _entry_signature(plugin_dir: str, entry: str) -> tuple[int, ...] | None:
    """The stat of the plugin dir and of the entry's module file (two stats, ~10 us): what an edit
    in place changes (ctime: even a tool that restores the mtime changes it). None when the module
    is not a file there (the run's import will say why). The child checks every module it imported
    early again before it uses them (:meth:`rh_sdk.runner.Guest.run`)."""
    base = os.path.join(plugin_dir, *entry.partition(":")[0].split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        try:
            module, directory = os.stat(path), os.stat(plugin_dir)
        except OSError:
            continue
        return (directory.st_mtime_ns, directory.st_ctime_ns, module.st_ino, module.st_size, module.st_ctime_ns)
    return None


def _members(cgroup: RunCgroup) -> list[int] | None:
    """The processes in the run's cgroup, from one ``cgroup.procs`` (None: unreadable). One file is
    enough: the child joins all of the run's hierarchies before anything else, its descendants
    inherit them, and nothing else is ever put there."""
    try:
        with open(next(iter(cgroup.paths.values())) / "cgroup.procs", "rb") as procs:
            return [int(pid) for pid in procs.read().split()]
    except (OSError, StopIteration, ValueError):
        return None


def _kill_members(cgroup: RunCgroup) -> None:
    """SIGKILL every process in the run's cgroup."""
    for pid in _members(cgroup) or []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _occupied(cgroup: RunCgroup) -> bool:
    """Whether any process is left in the run's cgroup (the usual answer is no: the child is pid 1 of
    its namespace, so its end took everything in it along); an unreadable cgroup counts as occupied."""
    return _members(cgroup) != []


def _readable(fd: int, timeout_s: float) -> bool:
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
    except (OSError, ValueError):
        return True
    return bool(ready)
